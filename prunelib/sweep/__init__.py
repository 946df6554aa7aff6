"""prunelib.sweep."""
