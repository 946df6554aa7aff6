"""prunelib.families.cnn."""
