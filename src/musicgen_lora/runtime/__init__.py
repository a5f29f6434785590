"""Process-level tuning (the allocator) and faster CPU kernels, each behind one guarded door."""
