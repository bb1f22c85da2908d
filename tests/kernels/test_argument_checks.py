"""Every wrapper checks its arguments with the shared helpers of _common.pxi,
so every message has one form: "<operation>: <argument> <what is wrong>, got ..."."""
import numpy as np
import pytest

from fastnet import _kernels as K

F = np.ones((2, 3), np.float32)
W = np.ones(6, np.float32)
Q = np.ones((1, 2, 1, 4), np.float32)

WRONG_DTYPE = [
    ("softmax", lambda bad: K.softmax(bad), "x"),
    ("softmax_backward", lambda bad: K.softmax_backward(F, bad), "dy"),
    ("softmax_cross_entropy", lambda bad: K.softmax_cross_entropy(bad, [0, 1]), "logits"),
    ("mse", lambda bad: K.mse(bad, F), "pred"),
    ("bce_with_logits", lambda bad: K.bce_with_logits(F, bad), "target"),
    ("sum_squares", lambda bad: K.sum_squares(bad), "x"),
    ("sgd_step", lambda bad: K.sgd_step(bad.reshape(-1), W, lr=0.1), "w"),
    ("adam_step", lambda bad: K.adam_step(W.copy(), W, bad.reshape(-1), W.copy(), step=1), "m"),
    ("layer_norm", lambda bad: K.layer_norm(bad, np.ones(3, np.float32), np.zeros(3, np.float32)), "x"),
    ("attention", lambda bad: K.attention(Q, bad.reshape(1, 2, 1, 3), Q), "k"),
    ("dropout", lambda bad: K.dropout(bad, 0.5, 1), "x"),
    ("add", lambda bad: K.add(F, bad), "b"),
    ("to_bf16", lambda bad: K.to_bf16(bad), "x"),
    ("quantize_rows", lambda bad: K.quantize_rows(bad), "x"),
]


@pytest.mark.parametrize("op, call, name", WRONG_DTYPE, ids=[c[0] for c in WRONG_DTYPE])
def test_a_wrong_dtype_names_the_operation_and_the_argument(op, call, name):
    with pytest.raises(TypeError) as info:
        call(np.ones((2, 3), np.float16))
    message = str(info.value)
    assert message.startswith(f"{op}: {name} "), message
    assert "float16" in message


MISMATCHED = [
    ("softmax_backward", lambda: K.softmax_backward(F, F.astype(np.float64)),
     "dy has dtype float64 but y has dtype float32"),
    ("mse", lambda: K.mse(F, np.ones((3, 2), np.float32)), "target has shape (3, 2) but pred has shape (2, 3)"),
    ("sgd_step", lambda: K.sgd_step(W.copy(), W.astype(np.float64), lr=0.1),
     "g has dtype float64 but w has dtype float32"),
    ("add", lambda: K.add(F, F.astype(np.float64)), "b has dtype float64 but a has dtype float32"),
]


@pytest.mark.parametrize("op, call, text", MISMATCHED, ids=[c[0] for c in MISMATCHED])
def test_mismatched_arguments_say_which_and_how(op, call, text):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert str(info.value) == f"{op}: {text}; they must match"


def test_optimizer_buffers_that_share_memory_are_refused():
    w = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="^adam_step: w and m share memory"):
        K.adam_step(w, np.ones(8, np.float32), w, np.zeros(8, np.float32), step=1)


def test_add_into_a_partly_overlapping_buffer_copies_first():
    buf = np.arange(10, dtype=np.float32)
    a, b = buf[:8], buf[1:9]
    want = a + b
    K.add_(a, b)
    np.testing.assert_array_equal(a, want)
