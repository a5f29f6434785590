"""`make bench` (`python -m bench`): benchmarks, outside the package and never imported by it."""
