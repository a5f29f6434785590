"""Measured evaluation: per-clip audio metrics, flags, set-level style distances, the metrics CLI."""
