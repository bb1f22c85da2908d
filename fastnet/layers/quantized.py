"""int8 weights for inference.

`quantize_params` turns every matrix a layer marks as quantizable (Dense, the
transformer's projections included: their "w") into int8 with one scale per output
channel, packed once for the int8 kernels (fastnet.ops.dense_int8), which
quantise each row of the activations on the fly; tables marked
quantizable_rows (embeddings) get one scale per row, so a tied output
projection (logits = x @ table.T) runs on the int8 kernels too: for a real
vocabulary it is the largest product of a decoding step. The float32 copy in the
ParameterStore is overwritten with the dequantised values, so anything that
still reads it (an ONNX export, say) sees the weights the int8 model uses.
Model files store the int8 matrices and their scales instead of the float32
ones (`quantized_tensors` / `load_quantized`): about 4x smaller.
"""
import numpy as np

from fastnet import ops

QUANTIZATIONS = ("int8",)


def check_quantization(mode):
    if mode not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {mode!r}; choose from {', '.join(map(repr, QUANTIZATIONS))}")
    return mode


class Int8Matrix:
    """A (k, n) weight matrix as int8 plus n float32 scales, packed for the kernels."""

    def __init__(self, q, scale):
        self.q = np.ascontiguousarray(q, np.int8)
        self.scale = np.ascontiguousarray(scale, np.float32)
        if self.q.ndim != 2 or self.scale.shape != (self.q.shape[1],):
            raise ValueError(f"int8 weights {self.q.shape} and scales {self.scale.shape} do not fit")
        self.packed = ops.pack_int8(self.q)

    @classmethod
    def from_float(cls, w):
        return cls(*ops.quantize_columns(np.ascontiguousarray(w, np.float32)))

    def dequantized(self):
        return self.q.astype(np.float32) * self.scale

    def dense(self, x, bias=None, activation="identity", alpha=0.01, out=None):
        """act(x @ w + bias) with x quantised per row; x is (m, k) float32; out: (m, n) to write into."""
        return ops.dense_int8(x, self.packed, self.scale, bias, activation=activation, alpha=alpha, out=out)


class Int8Rows:
    """A table (rows, d) as int8 plus one scale per row. An embedding looks rows up in
    the dequantised float32 copy; a tied output projection multiplies by the table's
    transpose, whose columns are these rows: `transposed()` is that Int8Matrix."""

    def __init__(self, q, scale):
        self.q = np.ascontiguousarray(q, np.int8)
        self.scale = np.ascontiguousarray(scale, np.float32)
        if self.q.ndim != 2 or self.scale.shape != (self.q.shape[0],):
            raise ValueError(f"int8 table {self.q.shape} and scales {self.scale.shape} do not fit")
        self._transposed = None

    def transposed(self):
        """The (d, rows) Int8Matrix of the same int8 values and scales, packed on first use."""
        if self._transposed is None:
            self._transposed = Int8Matrix(self.q.T, self.scale)
        return self._transposed

    @classmethod
    def from_float(cls, table):
        return cls(*ops.quantize_rows(np.ascontiguousarray(table, np.float32)))

    def dequantized(self):
        return self.q.astype(np.float32) * self.scale[:, None]


def _kinds(owner, pname):
    if pname in getattr(owner, "quantizable", ()):
        return Int8Matrix
    if pname in getattr(owner, "quantizable_rows", ()):
        return Int8Rows
    return None


def _quantizable(named):
    """(name, owner, param name, kind) of the quantizable ones among (name, owner, param name)."""
    for name, owner, pname in named:
        kind = _kinds(owner, pname)
        if kind is not None:
            yield name, owner, pname, kind


def store_entries(store, prefix=""):
    """The (name, owner, param name) triples of a ParameterStore."""
    return [(prefix + qname, owner, pname) for qname, owner, pname, _, _ in store.entries]


def quantize_params(named, dtype, mode="int8"):
    """Quantise every quantizable parameter among `named` (see the module note)."""
    check_quantization(mode)
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"int8 quantization needs a float32 model, this one is {np.dtype(dtype)}")
    for _, owner, pname, kind in _quantizable(named):
        _attach(owner, pname, kind.from_float(owner.params[pname]))


def _attach(owner, pname, quantized):
    if owner.quantized is None:
        owner.quantized = {}
    owner.quantized[pname] = quantized
    owner.params[pname][...] = quantized.dequantized()


def quantized_names(named):
    return {name for name, _, _, _ in _quantizable(named)}


def quantized_tensors(named):
    """{name.int8: int8 values, name.scale: scales} of the quantised parameters, for a model file."""
    out = {}
    for name, owner, pname, _ in _quantizable(named):
        q = owner.quantized[pname]
        out[name + ".int8"], out[name + ".scale"] = q.q, q.scale
    return out


def expected_quantized(named):
    """{name: (shape, dtype)} that quantized_tensors writes."""
    out = {}
    for name, owner, pname, kind in _quantizable(named):
        shape = owner.params[pname].shape
        out[name + ".int8"] = (shape, np.dtype(np.int8))
        out[name + ".scale"] = ((shape[1] if kind is Int8Matrix else shape[0],), np.dtype(np.float32))
    return out


def load_quantized(named, tensors):
    """Attach the int8 parameters saved by quantized_tensors (shapes already checked)."""
    for name, owner, pname, kind in _quantizable(named):
        _attach(owner, pname, kind(tensors[name + ".int8"], tensors[name + ".scale"]))
