"""prunelib.storage.lab."""
