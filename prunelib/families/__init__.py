"""prunelib.families."""
