"""prunelib.results."""
