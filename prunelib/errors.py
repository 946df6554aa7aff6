"""Exceptions shared by every stage."""


class Unsupported(Exception):
    """A family or model cannot do what was asked (structured pruning, ONNX, a precision); the message says why."""
