"""prunelib.pruning.criteria."""
