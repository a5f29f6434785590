"""Use what you trained: generate audio from an adapter (or the base model), any length."""
