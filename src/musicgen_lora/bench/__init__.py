"""`make bench`: benchmarks, never imported by the pipeline."""
