"""prunelib.families.mlp."""
