# Transformer kernels: embedding, layer norm, attention, dropout, residual add
# (csrc/transformer.c, csrc/layernorm.c, csrc/attention.c).
cimport cython
from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t

_TF_INT64_MAX = (1 << 63) - 1
_TF_UINT64_MASK = (1 << 64) - 1


# ---- argument checks of these wrappers (the shared ones are in _common.pxi) --

cdef object _tf_ids(ids, str what):
    """ids as a contiguous int64 array (any integer dtype accepted)."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{what}: ids must have an integer dtype, got {ids.dtype}")
    if ids.dtype.kind == "u" and ids.dtype.itemsize == 8 and ids.size and int(ids.max()) > _TF_INT64_MAX:
        pos = np.unravel_index(int(np.argmax(ids)), ids.shape)
        raise ValueError(f"{what}: id {int(ids[pos])} at position {tuple(int(i) for i in pos)} is outside the vocabulary")
    return c_array(ids, np.int64)


cdef int _tf_raise_bad_id(ids, int64_t flat_pos, int64_t vocab, str what) except -1:
    pos = tuple(int(i) for i in np.unravel_index(flat_pos, ids.shape))
    raise ValueError(f"{what}: id {int(ids.reshape(-1)[flat_pos])} at position {pos} "
                     f"(ids shape {ids.shape}) is outside the vocabulary [0, {vocab})")


cdef object _tf_heads_contiguous(x):
    """x with its last two axes (heads, dh) contiguous; batch/time strides stay free."""
    if (x.strides[3] == x.itemsize and x.strides[2] == x.shape[3] * x.itemsize
            and x.strides[0] % x.itemsize == 0 and x.strides[1] % x.itemsize == 0):
        return x
    return np.ascontiguousarray(x)


# ---- embedding --------------------------------------------------------------

cdef fn_status _embedding_forward_impl(const int64_t[::1] ids, const real[:, ::1] table,
                                       real[:, ::1] out, int64_t *bad_pos) noexcept:
    cdef fn_status st
    with nogil:
        if real is float:
            st = fn_embedding_forward_f32(&ids[0], ids.shape[0], &table[0, 0], table.shape[0],
                                          table.shape[1], &out[0, 0], bad_pos, _n_threads)
        else:
            st = fn_embedding_forward_f64(&ids[0], ids.shape[0], &table[0, 0], table.shape[0],
                                          table.shape[1], &out[0, 0], bad_pos, _n_threads)
        return st


cdef fn_status _embedding_backward_impl(const int64_t[::1] ids, const real[:, ::1] dout,
                                        real[:, ::1] dtable, int64_t *bad_pos) noexcept:
    cdef fn_status st
    with nogil:
        if real is float:
            st = fn_embedding_backward_f32(&ids[0], ids.shape[0], &dout[0, 0], dtable.shape[0],
                                           dtable.shape[1], &dtable[0, 0], bad_pos, _n_threads)
        else:
            st = fn_embedding_backward_f64(&ids[0], ids.shape[0], &dout[0, 0], dtable.shape[0],
                                           dtable.shape[1], &dtable[0, 0], bad_pos, _n_threads)
        return st


def embedding(ids, table):
    """Rows of `table` (V, D) picked by integer `ids`: shape ids.shape + (D,)."""
    what = "embedding"
    cdef fn_status st
    table = float_array(table, what, "table")
    if table.ndim != 2:
        raise ValueError(f"{what}: table must be 2-D (vocab, dim), got shape {table.shape}")
    table = np.ascontiguousarray(table)
    ids_in = np.asarray(ids)
    flat_ids = _tf_ids(ids_in, what).reshape(-1)
    cdef int64_t vocab = table.shape[0], dim = table.shape[1], bad = -1
    out = np.empty(ids_in.shape + (dim,), dtype=table.dtype)
    if flat_ids.size == 0 or dim == 0:
        # Nothing to copy, but ids must still be valid.
        bad_ids = np.flatnonzero((flat_ids < 0) | (flat_ids >= vocab))
        if bad_ids.size:
            _tf_raise_bad_id(ids_in, bad_ids[0], vocab, what)
        return out
    out2 = out.reshape(-1, dim)
    if is_f32(table):
        st = _embedding_forward_impl[float](flat_ids, table, out2, &bad)
    else:
        st = _embedding_forward_impl[double](flat_ids, table, out2, &bad)
    if st == FN_ERR_LABEL:
        _tf_raise_bad_id(ids_in, bad, vocab, what)
    if st != FN_OK:
        check_status(st, f"{what}(ids {ids_in.shape}, table {table.shape})")
    return out


@cython.wraparound(True)  # shape[-1] and shape[:-1] below
def embedding_backward(ids, dout, vocab_size, out=None):
    """Gradient of the table: dout rows (ids.shape + (D,)) summed into their ids' rows.

    Returns a new (vocab_size, D) array, or adds into `out` in place and returns it.
    """
    what = "embedding_backward"
    cdef fn_status st
    dout = float_array(dout, what, "dout")
    ids_in = np.asarray(ids)
    flat_ids = _tf_ids(ids_in, what).reshape(-1)
    if dout.ndim != ids_in.ndim + 1 or dout.shape[:-1] != ids_in.shape:
        raise ValueError(f"{what}: dout must have shape ids.shape + (dim,) = {ids_in.shape} + (dim,), got {dout.shape}")
    vocab = int(vocab_size)
    if vocab < 0:
        raise ValueError(f"{what}: vocab_size must be >= 0, got {vocab_size}")
    dim = dout.shape[-1]
    if out is None:
        out = np.zeros((vocab, dim), dtype=dout.dtype)
    else:
        if not isinstance(out, np.ndarray) or out.shape != (vocab, dim):
            raise ValueError(f"{what}: out must be an array of shape (vocab_size, dim) = {(vocab, dim)}, got {getattr(out, 'shape', type(out).__name__)}")
        same_dtype(dout, out, what, "dout", "out")
        check_writable_out(out, f"{what}: out")
        if np.may_share_memory(out, dout):
            raise ValueError(f"{what}: out overlaps dout")
    cdef int64_t bad = -1
    if flat_ids.size == 0 or dim == 0:
        bad_ids = np.flatnonzero((flat_ids < 0) | (flat_ids >= vocab))
        if bad_ids.size:
            _tf_raise_bad_id(ids_in, bad_ids[0], vocab, what)
        return out
    dout2 = np.ascontiguousarray(dout).reshape(-1, dim)
    if is_f32(dout):
        st = _embedding_backward_impl[float](flat_ids, dout2, out, &bad)
    else:
        st = _embedding_backward_impl[double](flat_ids, dout2, out, &bad)
    if st == FN_ERR_LABEL:
        _tf_raise_bad_id(ids_in, bad, vocab, what)
    if st != FN_OK:
        check_status(st, f"{what}(ids {ids_in.shape}, dout {dout.shape})")
    return out


# ---- layer norm ---------------------------------------------------------------

cdef fn_status _layer_norm_forward_impl(const real[:, ::1] x, const real[::1] gamma,
                                        const real[::1] beta, double eps, real[:, ::1] y,
                                        real[::1] mean, real[::1] rstd) noexcept:
    with nogil:
        if real is float:
            return fn_layer_norm_forward_f32(&x[0, 0], &gamma[0], &beta[0], x.shape[0], x.shape[1],
                                             <float>eps, &y[0, 0], &mean[0], &rstd[0], _n_threads)
        else:
            return fn_layer_norm_forward_f64(&x[0, 0], &gamma[0], &beta[0], x.shape[0], x.shape[1],
                                             eps, &y[0, 0], &mean[0], &rstd[0], _n_threads)


cdef fn_status _layer_norm_backward_impl(const real[:, ::1] dy, const real[:, ::1] x,
                                         const real[::1] gamma, const real[::1] mean,
                                         const real[::1] rstd, real[:, ::1] dx,
                                         real[::1] dgamma, real[::1] dbeta) noexcept:
    with nogil:
        if real is float:
            return fn_layer_norm_backward_f32(&dy[0, 0], &x[0, 0], &gamma[0], &mean[0], &rstd[0],
                                              x.shape[0], x.shape[1], &dx[0, 0], &dgamma[0],
                                              &dbeta[0], _n_threads)
        else:
            return fn_layer_norm_backward_f64(&dy[0, 0], &x[0, 0], &gamma[0], &mean[0], &rstd[0],
                                              x.shape[0], x.shape[1], &dx[0, 0], &dgamma[0],
                                              &dbeta[0], _n_threads)


@cython.wraparound(True)  # shape[-1] and shape[:-1] below
cdef object _tf_vector(v, x, str what, str name):
    v = float_array(v, what, name)
    same_dtype(x, v, what, "x", name)
    if v.shape != (x.shape[-1],):
        raise ValueError(f"{what}: {name} must have shape ({x.shape[-1]},) for x of shape {x.shape}, got {v.shape}")
    return np.ascontiguousarray(v)


@cython.wraparound(True)  # shape[-1] and shape[:-1] below
def layer_norm(x, gamma, beta, eps=1e-5):
    """Normalise over the last axis, then scale by gamma and shift by beta.

    Returns (y, mean, rstd); mean and rstd have shape x.shape[:-1] and are
    what layer_norm_backward needs.
    """
    what = "layer_norm"
    cdef fn_status st
    x = float_array(x, what, "x")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"{what}: x must have a non-empty last axis, got shape {x.shape}")
    gamma = _tf_vector(gamma, x, what, "gamma")
    beta = _tf_vector(beta, x, what, "beta")
    if not eps >= 0:
        raise ValueError(f"{what}: eps must be >= 0, got {eps}")
    dim = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, dim)
    y = np.empty(x.shape, dtype=x.dtype)
    mean = np.empty(x.shape[:-1], dtype=x.dtype)
    rstd = np.empty(x.shape[:-1], dtype=x.dtype)
    if x2.shape[0] == 0:
        return y, mean, rstd
    y2, mean1, rstd1 = y.reshape(-1, dim), mean.reshape(-1), rstd.reshape(-1)
    if is_f32(x):
        st = _layer_norm_forward_impl[float](x2, gamma, beta, eps, y2, mean1, rstd1)
    else:
        st = _layer_norm_forward_impl[double](x2, gamma, beta, eps, y2, mean1, rstd1)
    if st != FN_OK:
        check_status(st, f"{what}(x {x.shape})")
    return y, mean, rstd


@cython.wraparound(True)  # shape[-1] and shape[:-1] below
def layer_norm_backward(dy, x, gamma, mean, rstd):
    """(dx, dgamma, dbeta) of layer_norm; dgamma and dbeta are summed over all rows."""
    what = "layer_norm_backward"
    cdef fn_status st
    x = float_array(x, what, "x")
    dy = float_array(dy, what, "dy")
    same_dtype(x, dy, what, "x", "dy")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"{what}: x must have a non-empty last axis, got shape {x.shape}")
    if dy.shape != x.shape:
        raise ValueError(f"{what}: dy has shape {dy.shape} but x has shape {x.shape}")
    gamma = _tf_vector(gamma, x, what, "gamma")
    stats = []
    for name, s in (("mean", mean), ("rstd", rstd)):
        s = float_array(s, what, name)
        same_dtype(x, s, what, "x", name)
        if s.shape != x.shape[:-1]:
            raise ValueError(f"{what}: {name} must have shape x.shape[:-1] = {x.shape[:-1]}, got {s.shape}")
        stats.append(np.ascontiguousarray(s).reshape(-1))
    dim = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, dim)
    dy2 = np.ascontiguousarray(dy).reshape(-1, dim)
    dx = np.empty(x.shape, dtype=x.dtype)
    dgamma = np.zeros(dim, dtype=x.dtype)
    dbeta = np.zeros(dim, dtype=x.dtype)
    if x2.shape[0] == 0:
        return dx, dgamma, dbeta
    dx2 = dx.reshape(-1, dim)
    if is_f32(x):
        st = _layer_norm_backward_impl[float](dy2, x2, gamma, stats[0], stats[1], dx2, dgamma, dbeta)
    else:
        st = _layer_norm_backward_impl[double](dy2, x2, gamma, stats[0], stats[1], dx2, dgamma, dbeta)
    if st != FN_OK:
        check_status(st, f"{what}(x {x.shape})")
    return dx, dgamma, dbeta


# ---- attention ------------------------------------------------------------------

# q, k, v and dout are strided over batch and time; (heads, dh) is contiguous
# (checked by _tf_heads_contiguous), which is all the C code assumes.
cdef fn_status _attention_forward_impl(const real[:, :, :, :] q, const real[:, :, :, :] k,
                                       const real[:, :, :, :] v, const uint8_t *pad, const int64_t *kv_rows,
                                       int causal, real[:, :, :, ::1] out, real[:, :, :, ::1] probs) noexcept:
    cdef int64_t es = sizeof(real)
    with nogil:
        if real is float:
            return fn_attention_forward_f32(q.shape[0], q.shape[1], k.shape[1], q.shape[2], q.shape[3],
                                            &q[0, 0, 0, 0], q.strides[0] // es, q.strides[1] // es,
                                            &k[0, 0, 0, 0], k.strides[0] // es, k.strides[1] // es,
                                            &v[0, 0, 0, 0], v.strides[0] // es, v.strides[1] // es,
                                            pad, kv_rows, causal, &out[0, 0, 0, 0], &probs[0, 0, 0, 0],
                                            _n_threads)
        else:
            return fn_attention_forward_f64(q.shape[0], q.shape[1], k.shape[1], q.shape[2], q.shape[3],
                                            &q[0, 0, 0, 0], q.strides[0] // es, q.strides[1] // es,
                                            &k[0, 0, 0, 0], k.strides[0] // es, k.strides[1] // es,
                                            &v[0, 0, 0, 0], v.strides[0] // es, v.strides[1] // es,
                                            pad, kv_rows, causal, &out[0, 0, 0, 0], &probs[0, 0, 0, 0],
                                            _n_threads)


cdef fn_status _attention_backward_impl(const real[:, :, :, :] dout, const real[:, :, :, :] q,
                                        const real[:, :, :, :] k, const real[:, :, :, :] v,
                                        const real[:, :, :, ::1] probs, real[:, :, :, :] dq,
                                        real[:, :, :, :] dk, real[:, :, :, :] dv) noexcept:
    cdef int64_t es = sizeof(real)
    with nogil:
        if real is float:
            return fn_attention_backward_f32(q.shape[0], q.shape[1], k.shape[1], q.shape[2], q.shape[3],
                                             &dout[0, 0, 0, 0], dout.strides[0] // es, dout.strides[1] // es,
                                             &q[0, 0, 0, 0], q.strides[0] // es, q.strides[1] // es,
                                             &k[0, 0, 0, 0], k.strides[0] // es, k.strides[1] // es,
                                             &v[0, 0, 0, 0], v.strides[0] // es, v.strides[1] // es,
                                             &probs[0, 0, 0, 0],
                                             &dq[0, 0, 0, 0], dq.strides[0] // es, dq.strides[1] // es,
                                             &dk[0, 0, 0, 0], dk.strides[0] // es, dk.strides[1] // es,
                                             &dv[0, 0, 0, 0], dv.strides[0] // es, dv.strides[1] // es,
                                             _n_threads)
        else:
            return fn_attention_backward_f64(q.shape[0], q.shape[1], k.shape[1], q.shape[2], q.shape[3],
                                             &dout[0, 0, 0, 0], dout.strides[0] // es, dout.strides[1] // es,
                                             &q[0, 0, 0, 0], q.strides[0] // es, q.strides[1] // es,
                                             &k[0, 0, 0, 0], k.strides[0] // es, k.strides[1] // es,
                                             &v[0, 0, 0, 0], v.strides[0] // es, v.strides[1] // es,
                                             &probs[0, 0, 0, 0],
                                             &dq[0, 0, 0, 0], dq.strides[0] // es, dq.strides[1] // es,
                                             &dk[0, 0, 0, 0], dk.strides[0] // es, dk.strides[1] // es,
                                             &dv[0, 0, 0, 0], dv.strides[0] // es, dv.strides[1] // es,
                                             _n_threads)


cdef object _tf_grad_out(out, like, inputs, str what, str name):
    """A caller-given gradient array checked for shape, dtype, layout and overlap, or a new one."""
    if out is None:
        return np.empty(like.shape, dtype=like.dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{what}: {name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != like.shape:
        raise ValueError(f"{what}: {name} must have shape {like.shape}, got {out.shape}")
    same_dtype(like, out, what, "q", name)
    if not out.flags.writeable:
        raise ValueError(f"{what}: {name} is read-only")
    if not (out.flags.aligned and out.dtype.isnative):
        raise ValueError(f"{what}: {name} must be aligned and in native byte order")
    es = out.itemsize
    if (out.strides[3] != es or out.strides[2] != out.shape[3] * es
            or out.strides[0] % es or out.strides[1] % es):
        raise ValueError(f"{what}: {name} must have its last two axes (heads, head_dim) contiguous, "
                         f"got strides {out.strides}")
    for other_name, other in inputs:
        if np.may_share_memory(out, other):
            raise ValueError(f"{what}: {name} overlaps {other_name}")
    return out


cdef tuple _tf_qkv(q, k, v, str what, bint same_batch=True):
    """Checked q (B, Tq, H, dh), k and v (B, Tk, H, dh) of one float dtype (same_batch=False: k and v
    may have another number of rows, which the caller's row index picks from)."""
    q = float_array(q, what, "q")
    k = float_array(k, what, "k")
    v = float_array(v, what, "v")
    same_dtype(q, k, what, "q", "k")
    same_dtype(q, v, what, "q", "v")
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.ndim != 4:
            raise ValueError(f"{what}: {name} must be 4-D (batch, time, heads, head_dim), got shape {a.shape}")
    if k.shape != v.shape:
        raise ValueError(f"{what}: k has shape {k.shape} but v has shape {v.shape}; they must match")
    if (q.shape[2], q.shape[3]) != (k.shape[2], k.shape[3]) or (same_batch and q.shape[0] != k.shape[0]):
        raise ValueError(f"{what}: q of shape {q.shape} and k of shape {k.shape} must agree in "
                         f"batch, heads and head_dim (axes 0, 2, 3)")
    if q.shape[2] == 0 or q.shape[3] == 0:
        raise ValueError(f"{what}: heads and head_dim must be >= 1, got q of shape {q.shape}")
    return _tf_heads_contiguous(q), _tf_heads_contiguous(k), _tf_heads_contiguous(v)


cdef object _tf_kv_rows(kv_rows, int64_t batch, int64_t kv_batch, str what, str name="kv_rows",
                        str rows_of="the rows of k"):
    """kv_rows checked: (batch,) integers, each one of kv_batch rows; a contiguous int64 array.
    An array that is one already (a decoding loop's own index) is checked in one C loop:
    numpy's min and max would cost more than the check."""
    cdef const int64_t[::1] view
    cdef int64_t i
    cdef bint in_range = True
    rows = np.asarray(kv_rows)
    if rows.dtype.kind not in "iu":
        raise TypeError(f"{what}: {name} must be integers, got dtype {rows.dtype}")
    if rows.shape != (batch,):
        raise ValueError(f"{what}: {name} must have shape (batch,) = ({batch},), got {rows.shape}")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    view = rows
    for i in range(batch):
        if view[i] < 0 or view[i] >= kv_batch:
            in_range = False
            break
    if not in_range:
        raise ValueError(f"{what}: {name} must lie in [0, {kv_batch}) ({rows_of}), "
                         f"got values in [{rows.min()}, {rows.max()}]")
    return rows


def attention(q, k, v, key_padding_mask=None, causal=False, kv_rows=None):
    """Multi-head scaled dot-product attention.

    q is (B, Tq, H, dh), k and v are (B, Tk, H, dh): a (B, T, D) projection
    reshaped to (B, T, H, D/H). key_padding_mask (B, Tk) bool marks padding
    keys with True; causal lets query i see key j only when j <= i + Tk - Tq.
    kv_rows (B,) integers: query row b attends to row kv_rows[b] of k, v and
    key_padding_mask, which may then have any number of rows (decoding reads
    the encoder memory in place as sentences finish and beams reorder).
    Returns out (B, Tq, H, dh) and probs (B, H, Tq, Tk); a query that sees
    no key gets zeros.
    """
    what = "attention"
    cdef fn_status st
    q, k, v = _tf_qkv(q, k, v, what, kv_rows is None)
    batch, tq, heads, dh = q.shape
    kv_batch, tk = k.shape[0], k.shape[1]
    cdef const uint8_t[::1] pad_view
    cdef const uint8_t *pad = NULL
    cdef const int64_t[::1] rows_view
    cdef const int64_t *rows = NULL
    if kv_rows is not None:
        rows_view = _tf_kv_rows(kv_rows, batch, kv_batch, what)
        if batch:
            rows = &rows_view[0]
    if key_padding_mask is not None:
        mask = np.asarray(key_padding_mask)
        if mask.shape != (kv_batch, tk):
            raise ValueError(f"{what}: key_padding_mask must have shape (batch, Tk) = {(kv_batch, tk)} "
                             f"for k of shape {k.shape}, got {mask.shape}")
        if mask.dtype != np.bool_:
            if mask.dtype.kind not in "iu" or (mask.size and not np.isin(mask, (0, 1)).all()):
                raise TypeError(f"{what}: key_padding_mask must be bool (True = padding), got {mask.dtype}")
            mask = mask.astype(np.bool_)
        if mask.size:
            pad_view = np.ascontiguousarray(mask).reshape(-1).view(np.uint8)
            pad = &pad_view[0]
    out = np.empty((batch, tq, heads, dh), dtype=q.dtype)
    probs = np.empty((batch, heads, tq, tk), dtype=q.dtype)
    if batch == 0 or tq == 0:
        return out, probs
    if tk == 0:
        out.fill(0)
        return out, probs
    if is_f32(q):
        st = _attention_forward_impl[float](q, k, v, pad, rows, bool(causal), out, probs)
    else:
        st = _attention_forward_impl[double](q, k, v, pad, rows, bool(causal), out, probs)
    if st != FN_OK:
        check_status(st, f"{what}(q {q.shape}, k {k.shape})")
    return out, probs


def attention_backward(dout, q, k, v, probs, dq=None, dk=None, dv=None):
    """(dq, dk, dv) of attention given dout (like its out) and the probs it returned.

    dq, dk, dv may be given to be written in place: arrays of the shapes of
    q, k, v with (heads, head_dim) contiguous, e.g. the three slices
    dqkv[:, :, i] of a fused (B, T, 3, H, dh) gradient, so no stacking copy is
    needed. They must not overlap each other or the inputs.
    """
    what = "attention_backward"
    cdef fn_status st
    q, k, v = _tf_qkv(q, k, v, what)
    dout = float_array(dout, what, "dout")
    probs = float_array(probs, what, "probs")
    same_dtype(q, dout, what, "q", "dout")
    same_dtype(q, probs, what, "q", "probs")
    batch, tq, heads, dh = q.shape
    tk = k.shape[1]
    if dout.shape != q.shape:
        raise ValueError(f"{what}: dout must have the shape of q {q.shape}, got {dout.shape}")
    if probs.shape != (batch, heads, tq, tk):
        raise ValueError(f"{what}: probs must have shape (B, H, Tq, Tk) = {(batch, heads, tq, tk)}, got {probs.shape}")
    dout = _tf_heads_contiguous(dout)
    probs = np.ascontiguousarray(probs)
    inputs = (("dout", dout), ("q", q), ("k", k), ("v", v), ("probs", probs))
    dq = _tf_grad_out(dq, q, inputs, what, "dq")
    dk = _tf_grad_out(dk, k, inputs, what, "dk")
    dv = _tf_grad_out(dv, k, inputs, what, "dv")
    check_disjoint((("dq", dq), ("dk", dk), ("dv", dv)), what)
    if batch == 0 or tq == 0 or tk == 0:
        dq.fill(0)
        dk.fill(0)
        dv.fill(0)
        return dq, dk, dv
    if is_f32(q):
        st = _attention_backward_impl[float](dout, q, k, v, probs, dq, dk, dv)
    else:
        st = _attention_backward_impl[double](dout, q, k, v, probs, dq, dk, dv)
    if st != FN_OK:
        check_status(st, f"{what}(q {q.shape}, k {k.shape})")
    return dq, dk, dv


# ---- dropout and residual add ------------------------------------------------------

cdef fn_status _dropout_forward_impl(const real[::1] x, real[::1] y, uint8_t[::1] mask,
                                     double p, uint64_t seed) noexcept:
    with nogil:
        if real is float:
            return fn_dropout_forward_f32(&x[0], &y[0], &mask[0], x.shape[0], p, seed, _n_threads)
        else:
            return fn_dropout_forward_f64(&x[0], &y[0], &mask[0], x.shape[0], p, seed, _n_threads)


cdef fn_status _dropout_backward_impl(const real[::1] dy, const uint8_t[::1] mask, real[::1] dx,
                                      double p) noexcept:
    with nogil:
        if real is float:
            return fn_dropout_backward_f32(&dy[0], &mask[0], &dx[0], dy.shape[0], p, _n_threads)
        else:
            return fn_dropout_backward_f64(&dy[0], &mask[0], &dx[0], dy.shape[0], p, _n_threads)


cdef double _tf_dropout_p(p, str what) except? -1:
    cdef double value = float(p)
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{what}: p must be in [0, 1), got {p}")
    return value


def dropout(x, p, seed):
    """(y, mask): y = x * mask / (1 - p), mask uint8 (1 = kept).

    The mask is a hash of (seed, element index): the same seed gives the same
    mask whatever the thread count or CPU path.
    """
    what = "dropout"
    cdef fn_status st
    x = float_array(x, what, "x")
    cdef double prob = _tf_dropout_p(p, what)
    cdef uint64_t key = int(seed) & _TF_UINT64_MASK
    x1 = np.ascontiguousarray(x).reshape(-1)
    y = np.empty(x.shape, dtype=x.dtype)
    mask = np.empty(x.shape, dtype=np.uint8)
    if x1.size == 0:
        return y, mask
    if is_f32(x):
        st = _dropout_forward_impl[float](x1, y.reshape(-1), mask.reshape(-1), prob, key)
    else:
        st = _dropout_forward_impl[double](x1, y.reshape(-1), mask.reshape(-1), prob, key)
    if st != FN_OK:
        check_status(st, f"{what}(x {x.shape}, p={p})")
    return y, mask


def dropout_backward(dy, mask, p):
    """dx = dy * mask / (1 - p), with the mask dropout returned."""
    what = "dropout_backward"
    cdef fn_status st
    dy = float_array(dy, what, "dy")
    cdef double prob = _tf_dropout_p(p, what)
    mask = np.asarray(mask)
    if mask.shape != dy.shape:
        raise ValueError(f"{what}: mask has shape {mask.shape} but dy has shape {dy.shape}")
    if mask.dtype != np.uint8 and mask.dtype != np.bool_:
        raise TypeError(f"{what}: mask must be uint8 or bool, got {mask.dtype}")
    mask1 = np.ascontiguousarray(mask).reshape(-1).view(np.uint8)
    dy1 = np.ascontiguousarray(dy).reshape(-1)
    dx = np.empty(dy.shape, dtype=dy.dtype)
    if dy1.size == 0:
        return dx
    if is_f32(dy):
        st = _dropout_backward_impl[float](dy1, mask1, dx.reshape(-1), prob)
    else:
        st = _dropout_backward_impl[double](dy1, mask1, dx.reshape(-1), prob)
    if st != FN_OK:
        check_status(st, f"{what}(dy {dy.shape}, p={p})")
    return dx


cdef fn_status _add_impl(const real[::1] a, const real[::1] b, real[::1] out) noexcept:
    with nogil:
        if real is float:
            return fn_add_f32(&a[0], &b[0], &out[0], a.shape[0], _n_threads)
        else:
            return fn_add_f64(&a[0], &b[0], &out[0], a.shape[0], _n_threads)


cdef tuple _tf_add_args(a, b, str what):
    a = float_array(a, what, "a")
    b = float_array(b, what, "b")
    same_dtype(a, b, what, "a", "b")
    if a.shape != b.shape:
        raise ValueError(f"{what}: a has shape {a.shape} but b has shape {b.shape}; they must match")
    return a, b


cdef int _tf_run_add(a1, b1, out1, str what) except -1:
    """out1 = a1 + b1 on flat contiguous arrays. b1 is copied first when it
    partly overlaps out1, which an elementwise loop cannot handle (an exact
    alias, out1 is b1, is fine)."""
    cdef fn_status st
    cdef const void *pb = data_pointer(b1)
    cdef const void *po = data_pointer(out1)
    if pb != po and overlap(pb, po, b1.shape[0] * b1.itemsize):
        b1 = b1.copy()
    if is_f32(a1):
        st = _add_impl[float](a1, b1, out1)
    else:
        st = _add_impl[double](a1, b1, out1)
    if st != FN_OK:
        check_status(st, f"{what}(a {a1.shape})")
    return 0


def add_(a, b):
    """Residual add in place: a += b (same shape and dtype); returns a."""
    what = "add_"
    if isinstance(a, np.ndarray):  # before any copy: the caller's array is the one updated
        check_writable_out(a, f"{what}: a (shape {a.shape}, updated in place)")
    a, b = _tf_add_args(a, b, what)
    check_writable_out(a, f"{what}: a (shape {a.shape}, updated in place)")
    if a.size == 0:
        return a
    a1 = a.reshape(-1)
    _tf_run_add(a1, np.ascontiguousarray(b).reshape(-1), a1, what)
    return a


def add(a, b):
    """a + b as a new array (same shape and dtype)."""
    what = "add"
    a, b = _tf_add_args(a, b, what)
    out = np.empty(a.shape, dtype=a.dtype)
    if a.size == 0:
        return out
    _tf_run_add(np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1),
                out.reshape(-1), what)
    return out
