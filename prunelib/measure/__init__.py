"""Measuring: the state of the machine around a timed run (clock, temperature, throttling)."""
