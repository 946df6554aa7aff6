"""prunelib.families.sew."""
