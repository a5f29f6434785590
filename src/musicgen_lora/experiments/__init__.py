"""The reference trials as tagged DVC experiments, and their cross-trial report."""
