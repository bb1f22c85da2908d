"""Pure-NumPy reference of every kernel in `fastnet.ops`, forward and backward.

Same names and signatures as `fastnet.ops`; slow, simple, and trusted: the
tests compare the compiled kernels against these functions (and check that
every public op has its twin here).
"""
from fastnet.reference import core, transformer
from fastnet.reference.core import *  # noqa: F403
from fastnet.reference.transformer import *  # noqa: F403

__all__ = [*core.__all__, *transformer.__all__]
