"""Deployment: turning a pruned model into something a device runs (ExecuTorch programs)."""
