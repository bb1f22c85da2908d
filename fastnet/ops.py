"""The public kernel functions: what users and layers call.

Each function checks its inputs, runs the C kernel with the GIL released on
`fastnet.get_num_threads()` threads, and returns NumPy arrays. float32 is the
fast path; float64 runs a plain path used for gradient checks.
`fastnet.reference` holds a pure-NumPy twin of every function here.
"""
from fastnet._kernels import ACTIVATIONS  # noqa: F401

__all__ = ["ACTIVATIONS"]


# ---- dense algebra: matmul and the fused dense layer (_gemm.pxi) ----------
from fastnet._kernels import dense, dense_backward, matmul  # noqa: E402

__all__ += ["matmul", "dense", "dense_backward"]

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
    gelu,
    leaky_relu,
    mse,
    relu,
    scale_,
    sgd_step,
    sigmoid,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
    step,
    sum_squares,
    tanh,
)

__all__ += [
    "activation", "activation_backward", "relu", "sigmoid", "tanh", "gelu", "leaky_relu", "step",
    "softmax", "softmax_backward", "softmax_cross_entropy", "mse", "bce_with_logits",
    "sgd_step", "adam_step", "adamw_step", "sum_squares", "scale_",
]



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



