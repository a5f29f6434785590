"""Static HTML pages to listen to a run's audio, and to trials side by side, that open from disk."""
