"""prunelib.plugin."""
