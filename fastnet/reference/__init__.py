"""Pure-NumPy reference of every kernel in `fastnet.ops`, forward and backward.

Same names and signatures as `fastnet.ops`; slow, simple, and trusted: the
tests compare the compiled kernels against these functions.
"""
from fastnet.reference.transformer import *  # noqa: E402,F401,F403
