"""MusicGen knowledge in one place: loading, the delay pattern and loss, LoRA, the token-shard format."""
