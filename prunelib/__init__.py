"""prunelib: a pruning laboratory for small neural networks on edge devices."""

__version__ = "0.1.0"
