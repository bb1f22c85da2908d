"""Pure-NumPy reference of every kernel in `fastnet.ops`, forward and backward.

Same names and signatures as `fastnet.ops`; slow, simple, and trusted: the
tests compare the compiled kernels against these functions.
"""
