"""Tests of the keyword-spotting family (DS-CNN on FSDD)."""
