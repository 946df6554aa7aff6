"""prunelib.cli.main."""
