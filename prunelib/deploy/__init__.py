"""prunelib.deploy."""
