# The compiled core's Python face. The C API is declared once, in _capi.pxd.
# Each included file wraps one area of csrc/:
# it checks dtype, shape, contiguity and aliasing, allocates outputs, releases
# the GIL around the C call, and turns an fn_status into a Python exception.
from fastnet._capi cimport *

include "_common.pxi"
include "_gemm.pxi"
include "_elementwise.pxi"
include "_transformer.pxi"
include "_lowp.pxi"
include "_decoding.pxi"
