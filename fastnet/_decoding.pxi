# ---- a decoder's incremental step in one call (csrc/decoder_step.c) ------------------
# DecoderLayerStep holds one layer's weights as C pointers, DecoderStep the
# stack (embedding, positions, layers, final norm); both are built once per
# decoding run, and DecoderStep.step checks its arguments once and runs the
# same kernels as the layer-by-layer Decoder.step, without ~45 calls from
# Python per step.

from libc.stdlib cimport malloc, free

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
    """One pre-norm transformer decoder layer's weights as the one-call decoder step reads them
    (DecoderStep); built per decoding run, since the weights are referenced, not copied.

    DecoderLayerStep(d_model, heads, d_ff, norms, denses): norms are three (gamma, beta, eps),
    denses six (kind, weights, bias, activation, alpha) for the fused query/key/value
    projection (d_model -> 3 d_model), the self-attention output, the cross-attention query,
    its output (each d_model -> d_model), and the feed-forward's two layers (d_model -> d_ff
    with the activation, d_ff -> d_model). kind is 'float32', 'bf16' (float32 weights
    multiplied in bf16) or 'int8' (weights = (pack_int8(q), per-column scales)).
    """
    cdef fn_decoder_layer_params p
    cdef list _keep
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


cdef class DecoderStep:
    """A pre-norm transformer decoder's incremental step (Decoder.step) as one C call, on float32
    activations: the token embedding times `scale` plus the position's signal, every layer, the
    final norm; the same kernels in the same order as the layer-by-layer path, so the same bits.

    DecoderStep(layers, table, scale, positions, final_norm): layers are DecoderLayerStep,
    table (vocab, d_model) and positions (max_len, d_model) float32, final_norm (gamma, beta, eps).

    step(ids, position, caches, memory_kv, memory_mask=None, memory_rows=None) -> (B, d_model):
    ids (B,) integers fed at `position`; caches one per layer, each with k and v
    (B, capacity, heads, head_dim) float32 and `length`, the positions already in it: the step
    writes position `length` and adds one to it; memory_kv one per layer, (rows, S, 2, heads,
    head_dim) float32 (MultiHeadAttention.project_memory); row b reads memory row
    memory_rows[b] (b when None) and mask row (memory_mask (rows, S) bool, True = padding).
    """
    cdef fn_decoder_params p
    cdef const fn_decoder_layer_params **_layer_params
    cdef list _layers
    cdef list _keep
    cdef object _scratch, _stream
    cdef readonly int64_t d_model, vocab, max_len

    def __cinit__(self):
        self._layer_params = NULL

    def __dealloc__(self):
        free(<void *>self._layer_params)

    def __init__(self, layers, table, scale, positions, final_norm):
        what = "DecoderStep"
        self._layers = list(layers)
        for layer in self._layers:
            if not isinstance(layer, DecoderLayerStep):
                raise TypeError(f"{what}: layers must be DecoderLayerStep, got {type(layer).__name__}")
        table = typed_c_array(table, _F32, what, "table")
        positions = typed_c_array(positions, _F32, what, "positions")
        if table.ndim != 2 or positions.ndim != 2 or positions.shape[1] != table.shape[1] or table.shape[1] < 1:
            raise ValueError(f"{what}: table (vocab, d_model) and positions (max_len, d_model) must agree, "
                             f"got {table.shape} and {positions.shape}")
        self.d_model, self.vocab, self.max_len = table.shape[1], table.shape[0], positions.shape[0]
        cdef int64_t n = len(self._layers), i
        cdef DecoderLayerStep layer_step
        for layer_step in self._layers:
            if layer_step.d_model != self.d_model:
                raise ValueError(f"{what}: a layer has d_model={layer_step.d_model}, the table {self.d_model}")
        self._layer_params = <const fn_decoder_layer_params **>malloc(max(n, 1) * sizeof(void *))
        if self._layer_params == NULL:
            raise MemoryError(what)
        for i in range(n):
            layer_step = self._layers[i]
            self._layer_params[i] = &layer_step.p
        self._keep = [table, positions]
        cdef const float[:, ::1] tv = table
        cdef const float[:, ::1] pv = positions
        self.p.n_layers, self.p.d_model, self.p.vocab, self.p.max_len = n, self.d_model, self.vocab, self.max_len
        self.p.layers = self._layer_params
        self.p.table = &tv[0, 0] if table.size else NULL
        self.p.positions = &pv[0, 0] if positions.size else NULL
        self.p.scale = _finite(scale, f"{what}: scale")
        _set_norm(&self.p.final_norm, final_norm, self.d_model, self._keep, "final_norm")
        self._scratch = np.empty(0, _F32)
        self._stream = np.empty(0, _F32)

    def threads_for(self, int64_t batch):
        """How many threads step splits a batch of `batch` rows over at the current thread count
        (1: the kernels thread themselves)."""
        return fn_decoder_step_threads(&self.p, batch, _n_threads)

    def step(self, ids, int64_t position, caches, memory_kv, memory_mask=None, memory_rows=None):
        what = "DecoderStep.step"
        ids = _tf_ids(np.asarray(ids), what).reshape(-1)
        cdef int64_t B = ids.shape[0], D = self.d_model, n = self.p.n_layers, l
        caches, memory_kv = list(caches), list(memory_kv)
        if len(caches) != n or len(memory_kv) != n:
            raise ValueError(f"{what}: needs one cache and one memory_kv per layer ({n}), "
                             f"got {len(caches)} and {len(memory_kv)}")
        if position < 0 or position >= self.max_len:
            raise ValueError(f"sequence of length {position + 1} is longer than max_len={self.max_len}; "
                             f"build the model with a larger max_len or shorten the input")
        cdef fn_decoder_step_args *args = <fn_decoder_step_args *>malloc(max(n, 1) * sizeof(fn_decoder_step_args))
        if args == NULL:
            raise MemoryError(what)
        cdef int64_t need = 2 * B, M = 0, S = 0
        cdef DecoderLayerStep layer_step
        cdef const int64_t[::1] rows_view
        cdef const uint8_t[::1] pad_view
        cdef const int64_t[::1] ids_view = ids
        cdef float[::1] scratch_view
        cdef float[::1] stream_view
        cdef fn_decoder_stack_args a
        cdef int64_t bad = -1
        cdef fn_status st
        cdef int nth = _n_threads
        try:
            memories = []
            for l in range(n):
                layer_step = self._layers[l]
                _layer_args(&args[l], layer_step, B, caches[l], memory_kv[l], memories, what, l)
                if l == 0:
                    M, S = memories[0].shape[0], memories[0].shape[1]
                elif (memories[l].shape[0], memories[l].shape[1]) != (M, S):
                    raise ValueError(f"{what}: every layer's memory_kv must have the same rows and length, "
                                     f"got {memories[l].shape} after {memories[0].shape}")
                need = max(need, fn_decoder_step_scratch(B, D, layer_step.heads, layer_step.d_ff,
                                                         max(args[l].length + 1, S)))
            for l in range(n):
                args[l].memory_mask, args[l].memory_rows = NULL, NULL
            if memory_mask is not None:
                mask = np.asarray(memory_mask)
                if mask.dtype != np.bool_ or mask.shape != (M, S):
                    raise ValueError(f"{what}: memory_mask must be bool of shape {(M, S)}, got {mask.dtype} {mask.shape}")
                if mask.size:
                    pad_view = np.ascontiguousarray(mask).reshape(-1).view(np.uint8)
                    for l in range(n):
                        args[l].memory_mask = &pad_view[0]
            if memory_rows is None:
                if n and M != B:
                    raise ValueError(f"{what}: without memory_rows the memory must have {B} rows, got {M}")
            else:
                rows_view = _tf_kv_rows(memory_rows, B, M, what, "memory_rows", "the memory's rows")
                if B:
                    for l in range(n):
                        args[l].memory_rows = &rows_view[0]
            if self._scratch.shape[0] < need:
                self._scratch = np.empty(need, _F32)
            if self._stream.shape[0] < B * D:
                self._stream = np.empty(B * D, _F32)
            out = np.empty((B, D), _F32)
            if B:
                scratch_view, stream_view = self._scratch, self._stream
                a.batch, a.ids, a.position, a.layers = B, &ids_view[0], position, args
                a.stream, a.scratch = &stream_view[0], &scratch_view[0]
                a.out = <float *>data_pointer(out)
                with nogil:
                    st = fn_decoder_step_f32(&self.p, &a, &bad, nth)
                if st == FN_ERR_LABEL:
                    raise ValueError(f"{what}: token ids must lie in [0, {self.vocab}), got {ids[bad]} at {bad}")
                check_status(st, what)
        finally:
            free(args)
        for cache in caches:  # each layer wrote this position
            cache.length += 1
        return out



cdef int _layer_args(fn_decoder_step_args *a, DecoderLayerStep layer, int64_t B, object cache, object memory_kv,
                     list memories, str what, int64_t index) except -1:
    """a's cache and memory for one layer, checked (batch, x, scratch, mask and rows are set by the caller)."""
    cdef int64_t D = layer.d_model, H = layer.heads, dh = D // H, sb_v, cap_v
    name = f"layer {index}"
    _cache_pointer(cache.k, B, D, H, dh, &a.cache_k, &a.cache_sb, &a.capacity, what, f"{name} cache k")
    _cache_pointer(cache.v, B, D, H, dh, &a.cache_v, &sb_v, &cap_v, what, f"{name} cache v")
    if (sb_v, cap_v) != (a.cache_sb, a.capacity):
        raise ValueError(f"{what}: {name}: the cache's k and v must have the same shape and strides")
    a.length = cache.length
    if a.length < 0 or a.length >= a.capacity:
        raise ValueError(f"{what}: {name}: key/value cache is full ({a.capacity} positions)" if a.length >= 0
                         else f"{what}: {name}: cache length must be >= 0, got {a.length}")
    memory_kv = typed_c_array(memory_kv, _F32, what, f"{name} memory_kv")
    if memory_kv.ndim != 5 or memory_kv.shape[2:] != (2, H, dh):
        raise ValueError(f"{what}: {name}: memory_kv must have shape (rows, S, 2, {H}, {dh}), got {memory_kv.shape}")
    memories.append(memory_kv)  # kept alive by the caller while C reads it
    a.src_len = memory_kv.shape[1]
    a.memory_kv = <const float *>data_pointer(memory_kv) if memory_kv.size else NULL
    return 0


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


def beam_candidates(scores, logp, n):
    """The n best extensions of each sentence in a beam search: scores (sentences, beam) float64,
    the hypotheses' scores so far; logp (sentences * beam, vocab) float64, each hypothesis's
    next-token log-probabilities (hypothesis k of sentence a is row a * beam + k). Candidate
    (k, v) of sentence a scores scores[a, k] + logp[a * beam + k, v]. Returns values
    (sentences, n) best first (equal values by the lower index) and indices k * vocab + v
    (int64); candidates that are not finite are left out: their slots hold -inf and -1."""
    what = "beam_candidates"
    scores = typed_c_array(scores, _F64, what, "scores")
    logp = typed_c_array(logp, _F64, what, "logp")
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"{what}: scores must be 2-D (sentences, beam) with beam >= 1, got shape {scores.shape}")
    cdef int64_t A = scores.shape[0], K = scores.shape[1]
    if logp.ndim != 2 or logp.shape[0] != A * K:
        raise ValueError(f"{what}: logp must be 2-D (sentences * beam, vocab) = ({A * K}, vocab), got shape {logp.shape}")
    cdef int64_t V = logp.shape[1]
    cdef int64_t count = positive_count(n, what)
    values = np.empty((A, count), _F64)
    indices = np.empty((A, count), np.int64)
    if A == 0:
        return values, indices
    cdef const double[:, ::1] sv = scores
    cdef const double *lp = <const double *>data_pointer(logp) if logp.size else NULL
    cdef double[:, ::1] vv = values
    cdef int64_t[:, ::1] iv = indices
    cdef fn_status st
    cdef int nth = _n_threads
    with nogil:
        st = fn_beam_candidates_f64(&sv[0, 0], lp, A, K, V, count, &vv[0, 0], &iv[0, 0], nth)
    check_status(st, what)
    return values, indices


cdef int64_t positive_count(object n, str what) except -1:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what}: n must be an integer >= 1, got {n!r}")
    return n
