"""What every command shares: the typed params loader, atomic files, audio I/O, run provenance, errors."""
