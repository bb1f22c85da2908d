"""Kernel inputs an attacker or a careless pipeline sends: NaN where the fast
paths used to drop it, read-only, misaligned and big-endian arrays, outputs
that overlap, and the small inconsistencies between entry points.

Each test guards one defect of the hardening issue and runs on every CPU path
this machine has; under scripts/sanitize.sh UBSan also checks that no
misaligned pointer reaches C.
"""
import numpy as np
import pytest

import fastnet as fn
from fastnet import ops
from fastnet import reference as ref

RNG = np.random.default_rng(13)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def read_only(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def from_buffer(a):
    """A read-only array over immutable bytes, as np.frombuffer gives."""
    a = np.ascontiguousarray(a)
    return np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)


def misaligned(a):
    """The same values one byte off their natural alignment (bytes, int8, have none to miss)."""
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize == 1:
        return a
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = np.ndarray(a.shape, a.dtype, buffer=buf, offset=1)
    m[...] = a
    assert not m.flags.aligned
    return m


def big_endian(a):
    return np.asarray(a).astype(np.asarray(a).dtype.newbyteorder(">"))


# ---- NaN in attention: same answer on every path as the reference ---------------

def _nan_case(where, index, tq=5, tk=20):
    rng = np.random.default_rng(index)
    q, dout = (rng.standard_normal((2, tq, 2, 8)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((2, tk, 2, 8)).astype(np.float32) for _ in range(2))
    arrays = {"q": q, "k": k, "v": v, "dout": dout}
    arrays[where][(1, index, 0, 3)] = np.nan
    return q, k, v, dout


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("where", ["q", "k", "v", "dout"])
def test_attention_nan_in_gives_nan_out_like_the_reference(cpu_path, where, causal):
    mask = np.zeros((2, 20), dtype=bool)
    mask[1, -3:] = True
    for index in (0, 2, 4) if where in ("q", "dout") else (0, 7, 15, 18, 19):
        q, k, v, dout = _nan_case(where, index)
        out, probs = ops.attention(q, k, v, key_padding_mask=mask, causal=causal)
        want_out, want_probs = ref.attention(q, k, v, key_padding_mask=mask, causal=causal)
        np.testing.assert_allclose(out, want_out, rtol=2e-4, atol=2e-5, equal_nan=True)
        np.testing.assert_allclose(probs, want_probs, rtol=2e-4, atol=2e-5, equal_nan=True)
        grads = ops.attention_backward(dout, q, k, v, probs)
        want = ref.attention_backward(dout, q, k, v, want_probs)
        for name, got, expected in zip(("dq", "dk", "dv"), grads, want):
            np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4, equal_nan=True,
                                       err_msg=f"{name}, NaN in {where}[1, {index}]")


def test_attention_nan_key_of_the_issue_is_nan_on_every_path(cpu_path):
    q, k, v = f32(1, 2, 1, 4), f32(1, 3, 1, 4), f32(1, 3, 1, 4)
    k[0, 1, 0, 0] = np.nan
    out, probs = ops.attention(q, k, v)
    assert np.isnan(out).all() and np.isnan(probs).all()
    q[0, 0, 0, 0] = np.nan  # a NaN query never comes out as zeros
    assert np.isnan(ops.attention(q, f32(1, 3, 1, 4), v)[0][0, 0]).all()


def test_attention_nan_behind_a_mask_stays_out(cpu_path):
    q, k, v = f32(1, 3, 1, 8), f32(1, 9, 1, 8), f32(1, 9, 1, 8)
    mask = np.zeros((1, 9), dtype=bool)
    mask[0, 4] = True
    clean = ops.attention(q, k, v, key_padding_mask=mask)
    k[0, 4], v[0, 4] = np.nan, np.nan
    np.testing.assert_array_equal(ops.attention(q, k, v, key_padding_mask=mask)[0], clean[0])
    np.testing.assert_allclose(ref.attention(q, k, v, key_padding_mask=mask)[0], clean[0], rtol=1e-5, atol=1e-6)


# ---- read-only, misaligned and big-endian inputs ------------------------------

def _kernel_calls():
    x, y, w, b = f32(4, 8), f32(4, 8), f32(8, 5), f32(5)
    labels = np.array([0, 1, 2, 3])
    q, k, v, dout = f32(2, 3, 2, 4), f32(2, 5, 2, 4), f32(2, 5, 2, 4), f32(2, 3, 2, 4)
    probs = ops.attention(q, k, v)[1]
    gamma, beta = f32(8), f32(8)
    _, mean, rstd = ops.layer_norm(x, gamma, beta)
    g, flat = f32(10), f32(10)
    zeros = np.zeros(10, np.float32)
    q8, w_scale = ops.quantize_columns(w)
    packed = ops.pack_int8(q8)
    return {
        "matmul": (ops.matmul, (x, w)),
        "dense": (lambda *a: ops.dense(*a, activation="relu"), (x, w, b)),
        "dense_backward": (ops.dense_backward, (x, w, ops.dense(x, w, b), f32(4, 5))),
        "activation": (lambda a: ops.activation(a, "gelu"), (x,)),
        "activation_backward": (lambda d, a: ops.activation_backward("gelu", d, x=a), (y, x)),
        "softmax": (ops.softmax, (x,)),
        "softmax_backward": (ops.softmax_backward, (ops.softmax(x), y)),
        "softmax_cross_entropy": (ops.softmax_cross_entropy, (x, labels)),
        "mse": (ops.mse, (x, y)),
        "bce_with_logits": (ops.bce_with_logits, (x, (y > 0).astype(np.float32))),
        "sum_squares": (ops.sum_squares, (x,)),
        "sgd_step gradient": (lambda grad: ops.sgd_step(flat.copy(), grad, lr=0.1), (g,)),
        "adam_step gradient": (lambda grad: ops.adam_step(flat.copy(), grad, zeros.copy(), zeros.copy(), step=1),
                               (g,)),
        "attention": (ops.attention, (q, k, v)),
        "attention_backward": (ops.attention_backward, (dout, q, k, v, probs)),
        "embedding": (ops.embedding, (np.array([[0, 1], [2, 3]]), f32(6, 4))),
        "embedding_backward": (lambda i, d: ops.embedding_backward(i, d, 6),
                               (np.array([[0, 1], [2, 3]]), f32(2, 2, 4))),
        "layer_norm": (ops.layer_norm, (x, gamma, beta)),
        "layer_norm_backward": (ops.layer_norm_backward, (y, x, gamma, mean, rstd)),
        "dropout": (lambda a: ops.dropout(a, 0.5, 1), (x,)),
        "add": (ops.add, (x, y)),
        "to_bf16": (ops.to_bf16, (x,)),
        "from_bf16": (ops.from_bf16, (ops.to_bf16(x),)),
        "round_bf16": (ops.round_bf16, (x,)),
        "quantize_rows": (ops.quantize_rows, (x,)),
        "quantize_columns": (ops.quantize_columns, (w,)),
        "pack_int8": (lambda q: (ops.pack_int8(q).data, ops.pack_int8(q).colsum), (q8,)),
        "matmul_int8": (lambda a: ops.matmul_int8(a, packed), (ops.quantize_rows(x)[0],)),
        "dense_int8": (lambda a, s, bias: ops.dense_int8(a, packed, s, bias), (x, w_scale, b)),
    }


def _same_results(got, want, name):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=name)


@pytest.mark.parametrize("make", [read_only, from_buffer], ids=["setflags", "frombuffer"])
def test_kernels_read_read_only_inputs(cpu_path, make):
    for name, (kernel, args) in _kernel_calls().items():
        _same_results(kernel(*[make(a) for a in args]), kernel(*args), name)


def test_kernels_copy_misaligned_inputs(cpu_path):
    for name, (kernel, args) in _kernel_calls().items():
        _same_results(kernel(*[misaligned(a) for a in args]), kernel(*args), name)


def test_kernels_refuse_misaligned_outputs_they_write_in_place():
    x = f32(3, 4)
    with pytest.raises(ValueError, match="aligned"):
        ops.activation(x, "relu", out=misaligned(x))
    with pytest.raises(ValueError, match="aligned"):
        ops.add_(misaligned(x), x)
    with pytest.raises(ValueError, match="aligned"):
        ops.sgd_step(misaligned(f32(5)), f32(5), lr=0.1)


def test_kernels_convert_big_endian_inputs(cpu_path):
    for name, (kernel, args) in _kernel_calls().items():
        _same_results(kernel(*[big_endian(a) for a in args]), kernel(*args), name)


def test_network_reads_read_only_and_frombuffer_data():
    X, y = f32(16, 4), np.arange(16) % 3
    for make in (read_only, from_buffer):
        net = fn.Network([fn.Dense(4, 8, activation="relu"), fn.Dense(8, 3)], seed=0)
        Xr, yr = make(X), make(y)
        net.fit(Xr, yr, epochs=1, batch_size=4, verbose=0)
        net.train_on_batch(Xr, yr)
        assert set(net.evaluate(Xr, yr)) >= {"loss", "accuracy"}
        np.testing.assert_array_equal(net.predict(Xr), net.predict(X))


# ---- overlapping outputs ---------------------------------------------------------

def test_attention_backward_refuses_outputs_that_overlap_each_other():
    q, k, v, dout = f32(1, 3, 2, 4), f32(1, 3, 2, 4), f32(1, 3, 2, 4), f32(1, 3, 2, 4)
    probs = ops.attention(q, k, v)[1]
    shared = np.empty_like(k)
    with pytest.raises(ValueError, match="dk and dv share memory"):
        ops.attention_backward(dout, q, k, v, probs, dk=shared, dv=shared)
    with pytest.raises(ValueError, match="dq and dk share memory"):
        ops.attention_backward(dout, q, k, v, probs, dq=shared, dk=shared)
    # Interleaved slices of one fused gradient do not share an element: allowed.
    fused = np.empty((1, 3, 3, 2, 4), np.float32)
    dq, dk, dv = ops.attention_backward(dout, q, k, v, probs, fused[:, :, 0], fused[:, :, 1], fused[:, :, 2])
    for got, want in zip((dq, dk, dv), ops.attention_backward(dout, q, k, v, probs)):
        np.testing.assert_array_equal(got, want)


# ---- small inconsistencies ---------------------------------------------------------

def test_dense_refuses_nan_alpha_like_activation():
    x, w = f32(2, 3), f32(3, 2)
    for call in (lambda: ops.dense(x, w, activation="leaky_relu", alpha=float("nan")),
                 lambda: ops.dense_backward(x, w, ops.dense(x, w), f32(2, 2), activation="leaky_relu",
                                            alpha=float("nan")),
                 lambda: ops.activation(x, "leaky_relu", alpha=float("nan"))):
        with pytest.raises(ValueError, match="alpha must be finite"):
            call()


def test_train_on_batch_refuses_the_ignore_index_label_like_fit():
    net = fn.Network([fn.Dense(2, 3)], seed=0)
    X, y = np.ones((2, 2), np.float32), np.array([0, -100])
    with pytest.raises(ValueError, match="label -100"):
        net.fit(X, y, verbose=0)
    with pytest.raises(ValueError, match="label -100"):
        net.train_on_batch(X, y)


def test_huge_uint64_label_is_reported_as_its_value():
    net = fn.Network([fn.Dense(2, 3)], seed=0)
    y = np.array([0, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(ValueError, match="label 18446744073709551615"):
        net.train_on_batch(np.ones((2, 2), np.float32), y)


def test_finite_value_too_large_for_float32_is_reported_as_overflow():
    net = fn.Network([fn.Dense(2, 1)], loss="mse", seed=0)
    with pytest.raises(ValueError, match=r"1e\+39 at row 0, column 1, a finite value too large for float32"):
        net.predict(np.array([[0.0, 1e39]]))
    with pytest.raises(ValueError, match="too large for float32"):
        net.fit(np.ones((2, 2)), np.array([1.0, 1e39]), verbose=0)
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.predict(np.array([[0.0, np.inf]]))


def test_reference_handles_attention_without_keys_and_zero_width_embeddings():
    q, k = np.ones((1, 2, 1, 4)), np.ones((1, 0, 1, 4))
    out, probs = ref.attention(q, k, k)
    assert out.shape == (1, 2, 1, 4) and not out.any() and probs.shape == (1, 1, 2, 0)
    np.testing.assert_array_equal(out, ops.attention(q, k, k)[0])
    dtable = ref.embedding_backward(np.array([[0, 1]]), np.ones((1, 2, 0)), 3)
    assert dtable.shape == (3, 0)
    assert ops.embedding_backward(np.array([[0, 1]]), np.ones((1, 2, 0)), 3).shape == (3, 0)
