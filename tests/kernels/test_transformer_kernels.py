"""Transformer kernels (embedding, layer norm, attention, dropout, residual add)
against the NumPy reference, finite differences, masks, threads and bad input."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import numerical_gradient_in_place

# cpu_path is a parametrised fixture: hypothesis runs inside each parameter.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = [np.float32, np.float64]


def tol(dtype, scale=1.0):
    return dict(rtol=2e-4 * scale, atol=2e-5 * scale) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


# ---- attention ------------------------------------------------------------------

@st.composite
def attention_case(draw):
    batch = draw(st.integers(1, 3))
    tq = draw(st.integers(1, 9))
    tk = draw(st.integers(1, 9))
    heads = draw(st.integers(1, 3))
    dh = draw(st.sampled_from([1, 3, 4, 7, 8, 16, 17, 32, 33]))
    causal = draw(st.booleans())
    padded = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    return batch, tq, tk, heads, dh, causal, padded, seed


def make_qkv(batch, tq, tk, heads, dh, dtype, seed, padded=False):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, tq, heads, dh)).astype(dtype)
    k = rng.standard_normal((batch, tk, heads, dh)).astype(dtype)
    v = rng.standard_normal((batch, tk, heads, dh)).astype(dtype)
    mask = None
    if padded:
        # Each batch row keeps a random-length prefix; length 0 pads every key.
        lengths = rng.integers(0, tk + 1, size=batch)
        mask = np.arange(tk)[None, :] >= lengths[:, None]
    return q, k, v, mask


@fixture_ok
@given(case=attention_case(), dtype=st.sampled_from(DTYPES))
def test_attention_matches_reference(cpu_path, case, dtype):
    batch, tq, tk, heads, dh, causal, padded, seed = case
    q, k, v, mask = make_qkv(batch, tq, tk, heads, dh, dtype, seed, padded)
    out, probs = ops.attention(q, k, v, key_padding_mask=mask, causal=causal)
    rout, rprobs = ref.attention(q, k, v, key_padding_mask=mask, causal=causal)
    assert out.shape == (batch, tq, heads, dh) and probs.shape == (batch, heads, tq, tk)
    assert out.dtype == dtype and probs.dtype == dtype
    assert np.isfinite(out).all() and np.isfinite(probs).all()
    np.testing.assert_allclose(probs, rprobs, **tol(dtype))
    np.testing.assert_allclose(out, rout, **tol(dtype, 2))

    dout = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(dtype)
    grads = ops.attention_backward(dout, q, k, v, probs)
    rgrads = ref.attention_backward(dout, q, k, v, rprobs)
    for name, g, r in zip("qkv", grads, rgrads):
        assert g.shape == r.shape and g.dtype == dtype, name
        np.testing.assert_allclose(g, r, **tol(dtype, 5), err_msg=f"d{name}")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(3, 3), (2, 5), (4, 2), (1, 4)])
def test_attention_backward_matches_finite_differences(tq, tk, causal):
    q, k, v, mask = make_qkv(2, tq, tk, 2, 3, np.float64, seed=tq * 10 + tk, padded=False)
    mask = np.zeros((2, tk), dtype=bool)
    mask[1, -1] = True
    w = np.random.default_rng(7).standard_normal((2, tq, 2, 3))

    def loss():
        return float((ref.attention(q, k, v, key_padding_mask=mask, causal=causal)[0] * w).sum())

    out, probs = ops.attention(q, k, v, key_padding_mask=mask, causal=causal)
    dq, dk, dv = ops.attention_backward(w, q, k, v, probs)
    for name, x, g in (("q", q, dq), ("k", k, dk), ("v", v, dv)):
        np.testing.assert_allclose(g, numerical_gradient_in_place(loss, x), rtol=1e-6, atol=1e-8, err_msg=name)


def test_attention_padding_really_masks(cpu_path):
    q, k, v, _ = make_qkv(2, 4, 6, 2, 8, np.float32, seed=3)
    mask = np.zeros((2, 6), dtype=bool)
    mask[0, 4:] = True
    mask[1, 1] = True
    out, probs = ops.attention(q, k, v, key_padding_mask=mask)
    assert (probs[0, :, :, 4:] == 0).all() and (probs[1, :, :, 1] == 0).all()
    k2, v2 = k.copy(), v.copy()
    k2[0, 4:] = 1e3
    v2[0, 4:] = -1e3
    k2[1, 1] = 7.0
    v2[1, 1] = np.nan
    out2, probs2 = ops.attention(q, k2, v2, key_padding_mask=mask)
    assert np.array_equal(out, out2) and np.array_equal(probs, probs2)


def test_attention_causal_really_masks(cpu_path):
    q, k, v, _ = make_qkv(2, 5, 5, 2, 8, np.float32, seed=4)
    out, probs = ops.attention(q, k, v, causal=True)
    assert (np.triu(np.ones((5, 5)), 1)[None, None] * probs == 0).all()
    # A change at the last time step must not reach any earlier query.
    q2, k2, v2 = q.copy(), k.copy(), v.copy()
    q2[:, -1], k2[:, -1], v2[:, -1] = 5.0, -3.0, 9.0
    out2, probs2 = ops.attention(q2, k2, v2, causal=True)
    assert np.array_equal(out[:, :-1], out2[:, :-1])
    assert not np.array_equal(out[:, -1], out2[:, -1])


def test_attention_single_query_with_cache_sees_every_key(cpu_path):
    q, k, v, _ = make_qkv(2, 1, 6, 2, 8, np.float32, seed=5)
    out, probs = ops.attention(q, k, v, causal=True)
    assert (probs > 0).all()
    full_out, _ = ops.attention(q, k, v, causal=False)
    np.testing.assert_array_equal(out, full_out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_fully_masked_row_gives_zeros(cpu_path, dtype):
    q, k, v, _ = make_qkv(2, 3, 4, 2, 5, dtype, seed=6)
    mask = np.zeros((2, 4), dtype=bool)
    mask[1] = True
    out, probs = ops.attention(q, k, v, key_padding_mask=mask)
    assert (out[1] == 0).all() and (probs[1] == 0).all()
    assert np.isfinite(out).all() and (probs[0].sum(axis=-1) > 0.99).all()
    # Causal with more queries than keys: the first queries see nothing.
    out, probs = ops.attention(q, k[:, :2], v[:, :2], causal=True)
    assert (out[:, 0] == 0).all() and (probs[:, :, 0] == 0).all()
    dq, dk, dv = ops.attention_backward(np.ones_like(out), q, k[:, :2], v[:, :2], probs)
    assert (dq[:, 0] == 0).all() and np.isfinite(dk).all() and np.isfinite(dv).all()


def test_attention_accepts_strided_views_of_a_fused_projection(cpu_path):
    rng = np.random.default_rng(8)
    batch, t, heads, dh = 3, 5, 2, 8
    qkv = rng.standard_normal((batch, t, 3 * heads * dh)).astype(np.float32)
    q, k, v = (qkv[:, :, i * heads * dh:(i + 1) * heads * dh].reshape(batch, t, heads, dh) for i in range(3))
    assert not q.flags.c_contiguous
    out, probs = ops.attention(q, k, v, causal=True)
    cq, ck, cv = (np.ascontiguousarray(a) for a in (q, k, v))
    out2, probs2 = ops.attention(cq, ck, cv, causal=True)
    assert np.array_equal(out, out2) and np.array_equal(probs, probs2)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    for g, g2 in zip(ops.attention_backward(dout, q, k, v, probs), ops.attention_backward(dout, cq, ck, cv, probs)):
        assert np.array_equal(g, g2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_backward_writes_into_a_fused_gradient(cpu_path, dtype):
    q, k, v, mask = make_qkv(3, 6, 6, 2, 8, dtype, seed=22, padded=True)
    dout = np.random.default_rng(23).standard_normal(q.shape).astype(dtype)
    _, probs = ops.attention(q, k, v, key_padding_mask=mask, causal=True)
    expected = ops.attention_backward(dout, q, k, v, probs)
    dqkv = np.full((3, 6, 3, 2, 8), np.nan, dtype)
    views = [dqkv[:, :, i] for i in range(3)]
    got = ops.attention_backward(dout, q, k, v, probs, dq=views[0], dk=views[1], dv=views[2])
    for g, view, e in zip(got, views, expected):
        assert g is view
        assert np.array_equal(view, e)
    ref_buffer = np.zeros_like(dqkv)
    ref.attention_backward(dout, q, k, v, probs, *(ref_buffer[:, :, i] for i in range(3)))
    np.testing.assert_allclose(ref_buffer, dqkv, **tol(dtype, 5))


def test_attention_backward_rejects_bad_gradient_arrays():
    q, k, v, _ = make_qkv(2, 3, 4, 2, 4, np.float32, seed=24)
    out, probs = ops.attention(q, k, v)
    with pytest.raises(ValueError, match=r"dk must have shape \(2, 4, 2, 4\), got \(2, 3, 2, 4\)"):
        ops.attention_backward(out, q, k, v, probs, dk=np.empty_like(q))
    with pytest.raises(TypeError, match="dq has dtype float64 but q has dtype float32"):
        ops.attention_backward(out, q, k, v, probs, dq=np.empty(q.shape))
    with pytest.raises(ValueError, match="dq overlaps q"):
        ops.attention_backward(out, q, k, v, probs, dq=q)
    with pytest.raises(ValueError, match=r"dv must have its last two axes .* contiguous"):
        ops.attention_backward(out, q, k, v, probs, dv=np.empty((2, 4, 4, 2), np.float32).transpose(0, 1, 3, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_threads_bitwise_identical(cpu_path, dtype):
    q, k, v, mask = make_qkv(8, 20, 20, 4, 32, dtype, seed=9, padded=True)
    dout = np.random.default_rng(10).standard_normal(q.shape).astype(dtype)
    results = []
    for n in (1, 2):
        with fastnet.threads(n):
            out, probs = ops.attention(q, k, v, key_padding_mask=mask, causal=True)
            results.append((out, probs) + ops.attention_backward(dout, q, k, v, probs))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tq,causal", [(1, False), (1, True), (6, False), (6, True)])
def test_attention_kv_rows_read_in_place_what_a_gather_would_copy(cpu_path, dtype, tq, causal):
    """Row b of q attends to row kv_rows[b] of k, v and the mask: bitwise the attention over the
    gathered rows, with rows repeated, dropped and out of order, and k having more or fewer rows."""
    _, k, v, mask = make_qkv(4, 1, 7, 3, 17, dtype, seed=40, padded=True)
    for rows in ([2, 0, 0, 3, 1, 2], [3], [1, 1]):
        rows = np.array(rows)
        q = np.random.default_rng(41).standard_normal((len(rows), tq, 3, 17)).astype(dtype)
        out, probs = ops.attention(q, k, v, key_padding_mask=mask, causal=causal, kv_rows=rows)
        want, want_probs = ops.attention(q, k[rows], v[rows], key_padding_mask=mask[rows], causal=causal)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(probs, want_probs)
        rout, _ = ref.attention(q, k, v, key_padding_mask=mask, causal=causal, kv_rows=rows)
        np.testing.assert_allclose(out, rout, **tol(dtype, 2))
    empty, _ = ops.attention(q[:0], k, v, kv_rows=np.zeros(0, np.int64))
    assert empty.shape == (0, tq, 3, 17)


def test_attention_kv_rows_errors_name_what_is_wrong():
    q = np.zeros((3, 1, 2, 4), np.float32)
    k = np.zeros((2, 5, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"agree in batch"):
        ops.attention(q, k, k)  # without kv_rows, q and k must have the same rows
    with pytest.raises(ValueError, match=r"kv_rows must lie in \[0, 2\).*\[0, 2\]"):
        ops.attention(q, k, k, kv_rows=[0, 1, 2])
    with pytest.raises(ValueError, match=r"kv_rows must lie in \[0, 2\).*\[-1, 1\]"):
        ops.attention(q, k, k, kv_rows=[0, 1, -1])
    with pytest.raises(ValueError, match=r"kv_rows must have shape \(batch,\) = \(3,\), got \(2,\)"):
        ops.attention(q, k, k, kv_rows=[0, 1])
    with pytest.raises(TypeError, match="kv_rows must be integers"):
        ops.attention(q, k, k, kv_rows=[0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape.*\(2, 5\)"):
        ops.attention(q, k, k, kv_rows=[0, 1, 1], key_padding_mask=np.zeros((3, 5), bool))


def test_attention_errors_name_shapes():
    q = np.zeros((2, 3, 2, 4), np.float32)
    k = np.zeros((2, 5, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"q must be 4-D.*\(2, 3, 8\)"):
        ops.attention(q.reshape(2, 3, 8), k, k)
    with pytest.raises(ValueError, match=r"k has shape \(2, 5, 2, 4\) but v has shape \(2, 4, 2, 4\)"):
        ops.attention(q, k, k[:, :4])
    with pytest.raises(ValueError, match=r"\(2, 3, 2, 4\).*\(2, 5, 2, 3\)"):
        ops.attention(q, k[..., :3], k[..., :3])
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape.*\(2, 5\).*\(2, 3\)"):
        ops.attention(q, k, k, key_padding_mask=np.zeros((2, 3), bool))
    with pytest.raises(TypeError, match="v has dtype float64 but q has dtype float32"):
        ops.attention(q, k, k.astype(np.float64))
    with pytest.raises(TypeError, match="int32"):
        ops.attention(q.astype(np.int32), k, k)
    out, probs = ops.attention(q, k, k)
    with pytest.raises(ValueError, match=r"probs must have shape.*\(2, 2, 3, 5\).*\(2, 2, 3, 4\)"):
        ops.attention_backward(out, q, k, k, probs[..., :4])
    with pytest.raises(ValueError, match=r"dout must have the shape of q"):
        ops.attention_backward(out[:, :2], q, k, k, probs)


# ---- layer norm ------------------------------------------------------------------

@fixture_ok
@given(rows=st.integers(0, 12), lead=st.integers(1, 3), dim=st.integers(1, 70),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
def test_layer_norm_matches_reference(cpu_path, rows, lead, dim, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((lead, rows, dim)) * 3 + 1).astype(dtype)
    gamma = rng.standard_normal(dim).astype(dtype)
    beta = rng.standard_normal(dim).astype(dtype)
    y, mean, rstd = ops.layer_norm(x, gamma, beta)
    ry, rmean, rrstd = ref.layer_norm(x, gamma, beta)
    assert y.shape == x.shape and mean.shape == x.shape[:-1] and rstd.shape == x.shape[:-1]
    np.testing.assert_allclose(mean, rmean, **tol(dtype))
    np.testing.assert_allclose(rstd, rrstd, **tol(dtype))
    np.testing.assert_allclose(y, ry, **tol(dtype, 2))

    dy = rng.standard_normal(x.shape).astype(dtype)
    grads = ops.layer_norm_backward(dy, x, gamma, mean, rstd)
    rgrads = ref.layer_norm_backward(dy, x, gamma, rmean, rrstd)
    for name, g, r in zip(("dx", "dgamma", "dbeta"), grads, rgrads):
        assert g.shape == r.shape and g.dtype == dtype
        np.testing.assert_allclose(g, r, **tol(dtype, 10), err_msg=name)


def test_layer_norm_backward_matches_finite_differences():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 7))
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)
    w = rng.standard_normal(x.shape)

    def loss():
        return float((ref.layer_norm(x, gamma, beta)[0] * w).sum())

    _, mean, rstd = ops.layer_norm(x, gamma, beta)
    dx, dgamma, dbeta = ops.layer_norm_backward(w, x, gamma, mean, rstd)
    for name, p, g in (("x", x, dx), ("gamma", gamma, dgamma), ("beta", beta, dbeta)):
        np.testing.assert_allclose(g, numerical_gradient_in_place(loss, p), rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_threads_bitwise_identical(cpu_path, dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((640, 128)).astype(dtype)
    gamma, beta = rng.standard_normal(128).astype(dtype), rng.standard_normal(128).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    results = []
    for n in (1, 2):
        with fastnet.threads(n):
            y, mean, rstd = ops.layer_norm(x, gamma, beta)
            results.append((y, mean, rstd) + ops.layer_norm_backward(dy, x, gamma, mean, rstd))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_layer_norm_errors_name_shapes():
    x = np.zeros((4, 6), np.float32)
    g = np.ones(6, np.float32)
    with pytest.raises(ValueError, match=r"gamma must have shape \(6,\) for x of shape \(4, 6\), got \(5,\)"):
        ops.layer_norm(x, g[:5], g)
    with pytest.raises(TypeError, match="beta has dtype float64"):
        ops.layer_norm(x, g, g.astype(np.float64))
    with pytest.raises(ValueError, match="non-empty last axis"):
        ops.layer_norm(np.zeros((3, 0), np.float32), g[:0], g[:0])
    y, mean, rstd = ops.layer_norm(x, g, g)
    with pytest.raises(ValueError, match=r"dy has shape \(4, 5\) but x has shape \(4, 6\)"):
        ops.layer_norm_backward(y[:, :5], x, g, mean, rstd)
    with pytest.raises(ValueError, match=r"rstd must have shape x.shape\[:-1\] = \(4,\), got \(3,\)"):
        ops.layer_norm_backward(y, x, g, mean, rstd[:3])


# ---- embedding ------------------------------------------------------------------------

@pytest.mark.parametrize("id_dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_reference(cpu_path, id_dtype, dtype):
    rng = np.random.default_rng(13)
    table = rng.standard_normal((11, 37)).astype(dtype)
    ids = rng.integers(0, 11, size=(4, 9)).astype(id_dtype)
    out = ops.embedding(ids, table)
    assert out.shape == (4, 9, 37) and out.dtype == dtype
    assert np.array_equal(out, ref.embedding(ids, table))
    dout = rng.standard_normal(out.shape).astype(dtype)
    dtable = ops.embedding_backward(ids, dout, 11)
    np.testing.assert_allclose(dtable, ref.embedding_backward(ids, dout, 11), **tol(dtype))
    # out= adds in place.
    acc = np.ones((11, 37), dtype)
    assert ops.embedding_backward(ids, dout, 11, out=acc) is acc
    np.testing.assert_allclose(acc, dtable + 1, **tol(dtype))


def test_embedding_scalar_and_empty_ids():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.array_equal(ops.embedding(np.int64(2), table), table[2])
    assert ops.embedding(np.zeros((0, 5), np.int32), table).shape == (0, 5, 3)
    assert (ops.embedding_backward(np.zeros((0,), np.int32), np.zeros((0, 3), np.float32), 4) == 0).all()


def test_embedding_backward_matches_finite_differences():
    rng = np.random.default_rng(14)
    table = rng.standard_normal((5, 4))
    ids = np.array([[0, 3, 3], [4, 3, 1]])
    w = rng.standard_normal((2, 3, 4))
    grad = numerical_gradient_in_place(lambda: float((ref.embedding(ids, table) * w).sum()), table)
    np.testing.assert_allclose(ops.embedding_backward(ids, w, 5), grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_threads_bitwise_identical(cpu_path, dtype):
    rng = np.random.default_rng(15)
    ids = rng.integers(0, 8, size=(64, 20))  # many repeats: summation order matters
    dout = rng.standard_normal((64, 20, 128)).astype(dtype)
    results = []
    for n in (1, 2):
        with fastnet.threads(n):
            results.append(ops.embedding_backward(ids, dout, 8))
    assert np.array_equal(results[0], results[1])


def test_embedding_out_of_range_names_id_and_position():
    table = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"id 7 at position \(1, 2\).*\[0, 5\)"):
        ops.embedding(np.array([[0, 1, 2], [3, 4, 7]]), table)
    with pytest.raises(ValueError, match=r"id -1 at position \(0,\)"):
        ops.embedding(np.array([-1, 2]), table)
    with pytest.raises(ValueError, match=r"id 5 at position \(1,\)"):
        ops.embedding_backward(np.array([0, 5]), np.zeros((2, 3), np.float32), 5)
    with pytest.raises(ValueError, match=r"id 5 at position \(0, 0\)"):
        ops.embedding(np.array([[5]], dtype=np.uint64), table)
    with pytest.raises(TypeError, match="integer dtype, got float"):
        ops.embedding(np.array([0.0, 1.0]), table)
    with pytest.raises(ValueError, match=r"table must be 2-D.*\(5,\)"):
        ops.embedding(np.array([0]), np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"dout must have shape ids.shape \+ \(dim,\) = \(2,\)"):
        ops.embedding_backward(np.array([0, 1]), np.zeros((3, 3), np.float32), 5)
    with pytest.raises(ValueError, match=r"out must be an array of shape .*\(5, 3\).*\(4, 3\)"):
        ops.embedding_backward(np.array([0, 1]), np.zeros((2, 3), np.float32), 5, out=np.zeros((4, 3), np.float32))


# ---- dropout ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_dropout_matches_reference(cpu_path, dtype, p):
    x = np.random.default_rng(16).standard_normal((7, 33)).astype(dtype)
    y, mask = ops.dropout(x, p, seed=21)
    ry, rmask = ref.dropout(x, p, seed=21)
    assert mask.dtype == np.uint8 and mask.shape == x.shape and y.dtype == dtype
    assert np.array_equal(mask, rmask)
    np.testing.assert_allclose(y, ry, **tol(dtype))
    dy = np.random.default_rng(17).standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(ops.dropout_backward(dy, mask, p), ref.dropout_backward(dy, rmask, p), **tol(dtype))
    if p == 0.0:
        assert mask.all() and np.array_equal(y, x)


def test_dropout_is_deterministic_by_seed_and_keeps_the_mean():
    x = np.ones(200_001, np.float32)
    y1, m1 = ops.dropout(x, 0.3, seed=5)
    y2, m2 = ops.dropout(x, 0.3, seed=5)
    y3, m3 = ops.dropout(x, 0.3, seed=6)
    assert np.array_equal(y1, y2) and np.array_equal(m1, m2)
    assert not np.array_equal(m1, m3)
    assert abs(m1.mean() - 0.7) < 0.005
    assert abs(y1.mean() - 1.0) < 0.01
    # Neighbouring elements share a hash but must still be independent.
    assert abs((m1[:-1:2] & m1[1::2]).mean() - 0.49) < 0.01


def test_dropout_threads_bitwise_identical(cpu_path):
    x = np.random.default_rng(18).standard_normal((301, 257)).astype(np.float32)
    results = []
    for n in (1, 2):
        with fastnet.threads(n):
            y, mask = ops.dropout(x, 0.25, seed=99)
            results.append((y, mask, ops.dropout_backward(x, mask, 0.25)))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_dropout_backward_matches_finite_differences():
    x = np.random.default_rng(19).standard_normal((3, 5))
    w = np.random.default_rng(20).standard_normal((3, 5))
    _, mask = ops.dropout(x, 0.4, seed=3)
    grad = numerical_gradient_in_place(lambda: float((ref.dropout(x, 0.4, seed=3)[0] * w).sum()), x)
    np.testing.assert_allclose(ops.dropout_backward(w, mask, 0.4), grad, rtol=1e-6, atol=1e-8)


def test_dropout_errors():
    x = np.zeros((3, 4), np.float32)
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            ops.dropout(x, bad, seed=0)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\) but dy has shape \(3, 4\)"):
        ops.dropout_backward(x, np.ones((3, 3), np.uint8), 0.5)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        ops.dropout(x.astype(np.int64), 0.5, seed=0)


# ---- residual add --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 3), (64, 20, 128), (300_001,)])
def test_add_matches_numpy(cpu_path, dtype, shape):
    rng = np.random.default_rng(21)
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    expected = a + b
    assert np.array_equal(ops.add(a, b), expected)
    a2 = a.copy()
    assert ops.add_(a2, b) is a2
    assert np.array_equal(a2, expected)
    assert np.array_equal(ops.add_(a2, a2), expected * 2)


def test_add_overlapping_and_strided_inputs():
    base = np.arange(10, dtype=np.float32)
    a = base[:9]
    ops.add_(a, base[1:])  # b overlaps a shifted by one: must read b before writing
    assert np.array_equal(a, np.arange(9) * 2 + 1)
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert np.array_equal(ops.add(x.T, x.T), 2 * x.T)


def test_add_errors():
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"a has shape \(3, 4\) but b has shape \(4, 3\)"):
        ops.add(a, np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="b has dtype float64 but a has dtype float32"):
        ops.add_(a, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.add_(a.T, np.zeros((4, 3), np.float32))


def test_kernels_from_several_python_threads_agree(cpu_path):
    from concurrent.futures import ThreadPoolExecutor

    q, k, v, mask = make_qkv(4, 12, 12, 2, 32, np.float32, seed=25, padded=True)
    dout = np.random.default_rng(26).standard_normal(q.shape).astype(np.float32)
    x = np.random.default_rng(27).standard_normal((96, 64)).astype(np.float32)
    gamma = np.ones(64, np.float32)

    def work(_):
        out, probs = ops.attention(q, k, v, key_padding_mask=mask, causal=True)
        grads = ops.attention_backward(dout, q, k, v, probs)
        y, mean, rstd = ops.layer_norm(x, gamma, gamma)
        y2, drop_mask = ops.dropout(y, 0.2, seed=4)
        return (out, probs) + grads + (y, y2, drop_mask)

    expected = work(None)
    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(work, range(16)):
            for a, b in zip(result, expected):
                assert np.array_equal(a, b)
