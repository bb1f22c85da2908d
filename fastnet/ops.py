"""The public kernel functions: what users and layers call.

Each function checks its inputs, runs the C kernel with the GIL released on
`fastnet.get_num_threads()` threads, and returns NumPy arrays. float32 is the
fast path; float64 runs a plain path used for gradient checks.
`fastnet.reference` holds a pure-NumPy twin of every function here.

The activations come from one table in C (csrc/activations.h): ACTIVATIONS,
`activation_info` and the per-name functions (`relu`, `sigmoid`, ...) below
are all built from it, so a new activation needs no edit here.
"""
from typing import Callable, NamedTuple, Optional

import numpy as np

from fastnet._kernels import ACTIVATIONS  # name -> C code, with the identity's aliases
from fastnet._kernels import activation_backward_reads as _backward_reads
from fastnet._kernels import activation_table as _activation_table

__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "ActivationInfo", "activation_info"]


# ---- the activation registry (csrc/activations.h) ----------------------------

class ActivationInfo(NamedTuple):
    """One row of the C activation table.

    grad says what the derivative is computed from: "x" (the input, e.g.
    gelu), "y" (the output, or x: sigmoid, tanh), "sign" (the sign of x, which
    y shares unless a negative alpha flips it: relu, leaky_relu), "dy"
    (nothing else: identity) or "undefined" (no gradient: step).
    """

    name: str
    code: int
    grad: str
    has_param: bool  # alpha means something (leaky_relu's slope)
    doc: str

    @property
    def has_gradient(self) -> bool:
        return self.grad != "undefined"

    def backward_reads(self, *, x: bool, y: bool, alpha: float = 0.01) -> Optional[str]:
        """What the backward reads when the caller kept x and/or y: "x", "y",
        "dy" (dy alone), or None when it cannot run with those."""
        return _backward_reads(self.name, x, y, alpha)

    def needs_input(self, alpha: float = 0.01) -> bool:
        """True when the backward needs the forward input (the
        pre-activation): the output alone does not give the derivative."""
        return self.has_gradient and self.backward_reads(x=False, y=True, alpha=alpha) is None


_INFO = {row[0]: ActivationInfo(*row) for row in _activation_table()}
ACTIVATION_NAMES = tuple(_INFO)  # canonical names, in C code order


def activation_info(name: Optional[str]) -> ActivationInfo:
    """The table row of activation `name` ('linear' and None are the identity)."""
    code = ACTIVATIONS.get(name) if isinstance(name, (str, type(None))) else None
    if code is None:
        names = ", ".join(repr(k) for k in ACTIVATIONS if k is not None)
        raise ValueError(f"unknown activation {name!r}; choose from {names}")
    return _INFO[ACTIVATION_NAMES[code]]


# ---- dense algebra: matmul and the fused dense layer (_gemm.pxi) ----------
from fastnet._kernels import (  # noqa: E402
    PackedWeights,
    dense,
    dense_backward,
    dense_packed,
    matmul,
    pack_weights,
    transpose,
)

__all__ += ["matmul", "dense", "dense_backward", "transpose", "pack_weights", "PackedWeights", "dense_packed"]

# ---- bfloat16 conversions and int8 inference (_lowp.pxi) -------------------
from fastnet._kernels import (  # noqa: E402
    PackedInt8,
    dense_int8,
    from_bf16,
    matmul_int8,
    pack_int8,
    quantize_columns,
    quantize_rows,
    round_bf16,
    to_bf16,
)

__all__ += ["to_bf16", "from_bf16", "round_bf16",
            "quantize_rows", "quantize_columns", "pack_int8", "PackedInt8", "matmul_int8", "dense_int8"]



# ---- activations, losses, optimizer steps (_elementwise.pxi) --------------
from fastnet._kernels import (  # noqa: E402
    activation,
    activation_backward,
    adam_step,
    adamw_step,
    bce_with_logits,
    mse,
    scale_,
    sgd_step,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
    sum_squares,
)

__all__ += [
    "activation", "activation_backward",
    "softmax", "softmax_backward", "softmax_cross_entropy", "mse", "bce_with_logits",
    "sgd_step", "adam_step", "adamw_step", "sum_squares", "scale_",
]


def _activation_function(info: ActivationInfo) -> Callable[..., np.ndarray]:
    """ops.<name>(x), or ops.<name>(x, alpha=0.01) for an activation with a parameter."""
    name = info.name
    if info.has_param:
        def function(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
            return activation(x, name, alpha)
    else:
        def function(x: np.ndarray) -> np.ndarray:
            return activation(x, name)
    function.__name__ = function.__qualname__ = name
    function.__module__ = __name__
    function.__doc__ = info.doc
    return function


# relu, sigmoid, tanh, gelu, leaky_relu, step, identity, ...: one per table row.
for _info in _INFO.values():
    globals()[_info.name] = _activation_function(_info)
    __all__.append(_info.name)
del _info



# ---- transformer kernels (_transformer.pxi) --------------------------------
from fastnet._kernels import (  # noqa: E402
    add,
    add_,
    attention,
    attention_backward,
    dropout,
    dropout_backward,
    embedding,
    embedding_backward,
    layer_norm,
    layer_norm_backward,
)

__all__ += [
    "embedding", "embedding_backward", "layer_norm", "layer_norm_backward",
    "attention", "attention_backward", "dropout", "dropout_backward", "add", "add_",
]



# ---- a decoder's inference step in one call (_decoding.pxi) -----------------
from fastnet._kernels import DecoderLayerStep, DecoderStep, beam_candidates  # noqa: E402

__all__ += ["DecoderLayerStep", "DecoderStep", "beam_candidates"]
