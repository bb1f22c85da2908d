"""Argument checks shared across the package, each written once with one message format.

A count (epochs, a batch size, a layer width, a beam) is a whole number >= 1:
Python ints and NumPy integers pass; bools, floats (even 3.0) and strings do
not, so a mistyped argument is an error naming it rather than a silent cast.
"""
import numbers
from typing import Optional


def positive_int(value: object, what: str, allow_none: bool = False) -> Optional[int]:
    """`value` as an int if it is a whole number >= 1 (None passes when allow_none), else ValueError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        also = " or None" if allow_none else ""
        raise ValueError(f"{what} must be a positive integer{also}, got {value!r}")
    return int(value)
