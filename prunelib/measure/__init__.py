"""prunelib.measure."""
