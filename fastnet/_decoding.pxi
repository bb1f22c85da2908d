# ---- one decoder layer's incremental step (csrc/decoder_step.c) ----------------------
# DecoderLayerStep holds one layer's weights as C pointers, read once per
# decoding run, and runs the layer's inference step in one call: the same
# kernels as TransformerDecoderLayer.step, without their per-call checks.

_DENSE_NAMES = ("qkv", "self_out", "cross_q", "cross_out", "ff_up", "ff_down")


cdef int _set_dense(fn_dense_params *d, object spec, int64_t n_in, int64_t n_out, list keep, str name) except -1:
    """d from spec = (kind, weights, bias, activation, alpha): kind 'float32' or 'bf16' with float32
    weights (n_in, n_out), or 'int8' with weights (packed, scale) from pack_int8 / quantize_columns."""
    what = f"DecoderLayerStep: {name}"
    kind, weights, bias, activation, alpha = spec
    cdef const float[:, ::1] wv
    cdef const int8_t[::1] pv
    cdef const int32_t[::1] cv
    cdef const float[::1] sv
    cdef const float[::1] bv
    d.n_in, d.n_out = n_in, n_out
    d.w, d.packed_w, d.colsum, d.w_scale, d.bias = NULL, NULL, NULL, NULL, NULL
    d.bf16 = kind == "bf16"
    if kind == "int8":
        packed, scale = weights
        data, colsum, n = _unpacked(packed, n_in, what)
        if n != n_out:
            raise ValueError(f"{what}: the packed weights have {n} columns, expected {n_out}")
        scale = typed_c_array(scale, _F32, what, "w_scale")
        if scale.shape != (n_out,):
            raise ValueError(f"{what}: w_scale must have shape ({n_out},), got {scale.shape}")
        pv, cv, sv = data, colsum, scale
        d.packed_w, d.colsum, d.w_scale = &pv[0], &cv[0], &sv[0]
        keep += [data, colsum, scale]
    elif kind in ("float32", "bf16"):
        w = typed_c_array(weights, _F32, what, "w")
        if w.shape != (n_in, n_out):
            raise ValueError(f"{what}: w must have shape ({n_in}, {n_out}), got {w.shape}")
        wv = w
        d.w = &wv[0, 0]
        keep.append(w)
    else:
        raise ValueError(f"{what}: unknown weight kind {kind!r}; choose from 'float32', 'bf16', 'int8'")
    if bias is not None:
        bias = typed_c_array(bias, _F32, what, "b")
        if bias.shape != (n_out,):
            raise ValueError(f"{what}: b must have shape ({n_out},), got {bias.shape}")
        bv = bias
        d.bias = &bv[0]
        keep.append(bias)
    d.act = <fn_activation>activation_code(activation)
    d.act_param = _finite(alpha, f"{what}: alpha")
    return 0


cdef int _set_norm(fn_norm_params *n, object spec, int64_t d_model, list keep, str name) except -1:
    what = f"DecoderLayerStep: {name}"
    gamma, beta, eps = spec
    gamma = typed_c_array(gamma, _F32, what, "gamma")
    beta = typed_c_array(beta, _F32, what, "beta")
    if gamma.shape != (d_model,) or beta.shape != (d_model,):
        raise ValueError(f"{what}: gamma and beta must have shape ({d_model},), got {gamma.shape} and {beta.shape}")
    cdef const float[::1] gv = gamma
    cdef const float[::1] bv = beta
    n.gamma, n.beta, n.eps = &gv[0], &bv[0], _finite(eps, f"{what}: eps")
    keep += [gamma, beta]
    return 0


cdef class DecoderLayerStep:
    """The inference step of a pre-norm transformer decoder layer (TransformerDecoderLayer.step)
    as one C call, on float32 activations.

    DecoderLayerStep(d_model, heads, d_ff, norms, denses): norms are three (gamma, beta, eps),
    denses six (kind, weights, bias, activation, alpha) for the fused query/key/value
    projection (d_model -> 3 d_model), the self-attention output, the cross-attention query,
    its output (each d_model -> d_model), and the feed-forward's two layers (d_model -> d_ff
    with the activation, d_ff -> d_model). kind is 'float32', 'bf16' (float32 weights
    multiplied in bf16) or 'int8' (weights = (pack_int8(q), per-column scales)). The
    weights are referenced, not copied: made for one decoding run.

    step(x, cache_k, cache_v, length, memory_kv, memory_mask=None, memory_rows=None) runs the
    layer on x (B, d_model) float32, C-contiguous, in place; it writes this position's keys
    and values at position `length` of the caches (B, capacity, heads, head_dim), attends over
    positions 0..length, and over row memory_rows[b] of memory_kv (rows, S, 2, heads,
    head_dim: MultiHeadAttention.project_memory) with mask memory_mask (rows, S) bool.
    """
    cdef fn_decoder_layer_params p
    cdef list _keep
    cdef object _scratch
    cdef readonly int64_t d_model, heads, d_ff

    def __init__(self, d_model, heads, d_ff, norms, denses):
        self.d_model, self.heads, self.d_ff = d_model, heads, d_ff
        if self.d_model < 1 or self.heads < 1 or self.d_ff < 1 or self.d_model % self.heads:
            raise ValueError(f"DecoderLayerStep: d_model={d_model} must be a positive multiple of heads={heads}, "
                             f"and d_ff={d_ff} positive")
        norms, denses = list(norms), list(denses)
        if len(norms) != 3 or len(denses) != 6:
            raise ValueError(f"DecoderLayerStep: needs 3 norms and 6 dense layers, got {len(norms)} and {len(denses)}")
        cdef int64_t D = self.d_model, F = self.d_ff
        self.p.d_model, self.p.heads, self.p.d_ff = D, self.heads, F
        self._keep = []
        _set_norm(&self.p.norm1, norms[0], D, self._keep, "norm1")
        _set_norm(&self.p.norm2, norms[1], D, self._keep, "norm2")
        _set_norm(&self.p.norm3, norms[2], D, self._keep, "norm3")
        _set_dense(&self.p.qkv, denses[0], D, 3 * D, self._keep, _DENSE_NAMES[0])
        _set_dense(&self.p.self_out, denses[1], D, D, self._keep, _DENSE_NAMES[1])
        _set_dense(&self.p.cross_q, denses[2], D, D, self._keep, _DENSE_NAMES[2])
        _set_dense(&self.p.cross_out, denses[3], D, D, self._keep, _DENSE_NAMES[3])
        _set_dense(&self.p.ff_up, denses[4], D, F, self._keep, _DENSE_NAMES[4])
        _set_dense(&self.p.ff_down, denses[5], F, D, self._keep, _DENSE_NAMES[5])
        self._scratch = np.empty(0, _F32)

    def step(self, x, cache_k, cache_v, int64_t length, memory_kv, memory_mask=None, memory_rows=None):
        what = "DecoderLayerStep.step"
        cdef int64_t D = self.d_model, H = self.heads, dh = D // H
        if type(x) is not np.ndarray or x.dtype is not _F32 or x.ndim != 2 or x.shape[1] != D:
            raise TypeError(f"{what}: x must be a float32 ndarray (batch, {D}), got {_describe(x)}")
        check_writable_out(x, f"{what}: x")
        cdef int64_t B = x.shape[0]
        cdef fn_decoder_step_args a
        a.batch, a.length = B, length
        _cache_pointer(cache_k, B, D, H, dh, &a.cache_k, &a.cache_sb, &a.capacity, what, "cache_k")
        cdef int64_t sb_v, cap_v
        _cache_pointer(cache_v, B, D, H, dh, &a.cache_v, &sb_v, &cap_v, what, "cache_v")
        if (sb_v, cap_v) != (a.cache_sb, a.capacity):
            raise ValueError(f"{what}: cache_k and cache_v must have the same shape and strides")
        if length < 0 or length >= a.capacity:
            raise ValueError(f"{what}: key/value cache is full ({a.capacity} positions)" if length >= 0
                             else f"{what}: length must be >= 0, got {length}")
        memory_kv = typed_c_array(memory_kv, _F32, what, "memory_kv")
        if memory_kv.ndim != 5 or memory_kv.shape[2:] != (2, H, dh):
            raise ValueError(f"{what}: memory_kv must have shape (rows, S, 2, {H}, {dh}), got {memory_kv.shape}")
        cdef int64_t M = memory_kv.shape[0]
        a.src_len = memory_kv.shape[1]
        cdef const float[::1] mv = memory_kv.reshape(-1)
        a.memory_kv = &mv[0] if memory_kv.size else NULL
        cdef const uint8_t[::1] pad_view
        a.memory_mask = NULL
        if memory_mask is not None:
            mask = np.asarray(memory_mask)
            if mask.dtype != np.bool_ or mask.shape != (M, a.src_len):
                raise ValueError(f"{what}: memory_mask must be bool of shape {(M, a.src_len)}, got "
                                 f"{mask.dtype} {mask.shape}")
            if mask.size:
                pad_view = np.ascontiguousarray(mask).reshape(-1).view(np.uint8)
                a.memory_mask = &pad_view[0]
        cdef const int64_t[::1] rows_view
        a.memory_rows = NULL
        if memory_rows is None:
            if M != B:
                raise ValueError(f"{what}: without memory_rows the memory must have {B} rows, got {M}")
        else:
            rows_view = _memory_rows(memory_rows, B, M, what)
            if B:
                a.memory_rows = &rows_view[0]
        cdef int64_t keys = max(length + 1, a.src_len)
        cdef int64_t need = fn_decoder_step_scratch(B, D, H, self.d_ff, keys)
        if self._scratch.shape[0] < need:
            self._scratch = np.empty(need, _F32)
        cdef float[::1] sv = self._scratch
        cdef float[:, ::1] xv = x
        a.scratch = &sv[0] if need else NULL
        a.x = &xv[0, 0] if B else NULL
        cdef fn_status st
        cdef int nth = _n_threads
        with nogil:
            st = fn_decoder_layer_step_f32(&self.p, &a, nth)
        check_status(st, what)
        return x


cdef object _memory_rows(object rows, int64_t B, int64_t M, str what):
    """memory_rows checked like attention's kv_rows, in one C loop when they are already int64
    (the decoding loop's own index: numpy's min and max would cost more than the check)."""
    if type(rows) is not np.ndarray or rows.dtype != np.int64 or rows.ndim != 1 or not rows.flags.c_contiguous:
        return _tf_kv_rows(rows, B, M, what)
    if rows.shape[0] != B:
        raise ValueError(f"{what}: memory_rows must have shape ({B},), got {rows.shape}")
    cdef const int64_t[::1] view = rows
    cdef int64_t i
    for i in range(B):
        if view[i] < 0 or view[i] >= M:
            raise ValueError(f"{what}: memory_rows must lie in [0, {M}) (the memory's rows), "
                             f"got {view[i]} at {i}")
    return rows


cdef str _describe(x):
    if isinstance(x, np.ndarray):
        return f"{x.dtype} of shape {x.shape}"
    return type(x).__name__


cdef int _cache_pointer(object cache, int64_t B, int64_t D, int64_t H, int64_t dh, float **data,
                        int64_t *row_stride, int64_t *capacity, str what, str name) except -1:
    """A cache (B, capacity, H, dh) float32 whose rows may be any stride apart but each row's
    (capacity, H, dh) is contiguous (a KVCache's buffers, or their first B rows)."""
    if type(cache) is not np.ndarray or cache.dtype is not _F32 or cache.ndim != 4 \
            or cache.shape[0] != B or cache.shape[2] != H or cache.shape[3] != dh:
        raise TypeError(f"{what}: {name} must be a float32 ndarray ({B}, capacity, {H}, {dh}), got {_describe(cache)}")
    cdef int64_t es = 4
    capacity[0] = cache.shape[1]
    if cache.size == 0:  # no row or no position: nothing is read or written (numpy gives it any strides)
        data[0], row_stride[0] = NULL, cache.shape[1] * D
        return 0
    if cache.strides[3] != es or cache.strides[2] != dh * es or cache.strides[1] != D * es \
            or (B > 1 and (cache.strides[0] % es or cache.strides[0] < cache.shape[1] * D * es)):
        raise ValueError(f"{what}: {name} must hold each row's (capacity, heads, head_dim) contiguously, "
                         f"got strides {cache.strides}")
    if not cache.flags.writeable:
        raise ValueError(f"{what}: {name} is read-only")
    row_stride[0] = cache.strides[0] // es if B > 1 else cache.shape[1] * D
    cdef float[:, :, :, :] view = cache
    data[0] = &view[0, 0, 0, 0]
    return 0
