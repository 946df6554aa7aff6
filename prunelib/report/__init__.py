"""prunelib.report.writer."""
