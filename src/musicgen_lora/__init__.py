"""LoRA fine-tuning of MusicGen as a reproducible DVC pipeline (see dvc.yaml and README.md)."""
