"""The embedded tiny MusicGen and the demo corpus: builders, never imported by the pipeline."""
