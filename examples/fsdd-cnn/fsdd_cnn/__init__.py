"""fsdd_cnn: an example prunelib family (a small CNN on spoken digits), registered by entry point."""
