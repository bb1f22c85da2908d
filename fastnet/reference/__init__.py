"""Pure-NumPy reference of every kernel in `fastnet.ops`, forward and backward.

Same names and signatures as `fastnet.ops`; slow, simple, and trusted: the
tests compare the compiled kernels against these functions.
"""
from fastnet.reference.core import *  # noqa: F401,F403
from fastnet.reference.core import __all__ as _core_all

__all__ = list(_core_all)

from fastnet.reference.transformer import *  # noqa: E402,F401,F403
from fastnet.reference.transformer import __all__ as _transformer_all  # noqa: E402

__all__ += _transformer_all
