"""What every layer shares: named parameters living in one flat buffer.

A layer declares its parameters (name, shape, initial values) when it is
built. A `ParameterStore` then gathers every parameter of a model into one
contiguous float buffer `data` and its gradients into `grad`, and rebinds
each layer's arrays as views into them. So an optimizer step is a single C
call over all the weights, and saving is one list of named arrays.

Protocol of a layer:
    y = layer.forward(x, training=False)   # caches what backward needs
    dx = layer.backward(dy)                # adds into layer.grads[name]
    layer.params[name], layer.grads[name]  # views once the store is built
    layer.config()                         # JSON-able constructor arguments

While a model file is loaded, layers are built under an allocation budget
(`allocation_budget`): `add_param` charges each parameter and its gradient,
and code about to allocate a block sized by metadata asks
`check_affordable` first, so edited numbers in a small file give an error
instead of gigabytes. Outside a load there is no budget and both are no-ops.
"""
from __future__ import annotations  # annotations stay strings: np.random.Generator would import numpy.random

import contextlib
import contextvars
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

# [bytes left, what is being built] while a model file is loaded, else None.
_budget = contextvars.ContextVar("fastnet_allocation_budget", default=None)


_LAYER_OVERHEAD_BYTES = 4096  # measured: about 2 KiB of objects per layer of a seq2seq stack


@contextlib.contextmanager
def allocation_budget(n_bytes, what):
    """Within the block, parameters built may take at most n_bytes (MemoryError beyond)."""
    token = _budget.set([int(n_bytes), what])
    try:
        yield
    finally:
        _budget.reset(token)


def _over_budget(n_bytes, budget, purpose):
    return MemoryError(f"{budget[1]}: {purpose} needs {n_bytes:,} bytes, more than the "
                       f"{max(budget[0], 0):,} bytes the file's size allows")


def check_affordable(n_elements, purpose, itemsize=8):
    """Raise MemoryError if allocating n_elements would exceed the active budget (nothing is charged)."""
    budget = _budget.get()
    if budget is not None and int(n_elements) * itemsize > budget[0]:
        raise _over_budget(int(n_elements) * itemsize, budget, purpose)


def _charge(n_bytes, purpose):
    budget = _budget.get()
    if budget is not None:
        budget[0] -= n_bytes
        if budget[0] < 0:
            raise _over_budget(n_bytes, budget, purpose)


PRECISIONS = ("float32", "bf16")


def check_precision(precision, dtype):
    """precision as given, if the model can run it: 'bf16' multiplies float32 weights in bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(map(repr, PRECISIONS))}")
    if precision == "bf16" and np.dtype(dtype) != np.float32:
        raise ValueError(f"precision='bf16' needs float32 weights (dtype=np.float32), got {np.dtype(dtype)}; "
                         "float64 is the exact path for gradient checks")
    return precision


def set_precision(layers, precision):
    """Give every layer (and sublayer) the precision of its matrix products.

    Only the matmul inputs drop to bf16: weights, gradients, optimizer state,
    reductions, softmax, layer norm and losses stay float32, as in PyTorch's
    autocast. Layers without a matmul ignore it."""
    for layer in layers:
        layer.precision = precision
        set_precision(layer.sublayers(), precision)


class Layer:
    """Base class: parameter bookkeeping shared by every layer."""

    precision = "float32"  # of the matrix products; see set_precision
    quantizable = ()  # parameter names that quantize_store may turn into int8 (layers/quantized.py)
    quantized = None  # {param name: Int8Matrix} once quantised: inference only
    store_view = None  # the part of the ParameterStore holding this layer's parameters (set by the store)

    def __init__(self):
        # Each layer object also costs interpreter memory (dicts, a Generator or two): charged too,
        # so a file claiming thousands of tiny layers runs out of budget as fast as one with big ones.
        _charge(_LAYER_OVERHEAD_BYTES, f"a {type(self).__name__} layer")
        self.params = {}
        self.grads = {}
        self.name = type(self).__name__.lower()

    def add_param(self, name: str, value: np.ndarray) -> None:
        """Declare a trainable parameter with its initial value."""
        value = np.asarray(value)
        _charge(2 * value.nbytes, f"{type(self).__name__} parameter {name!r} of shape {value.shape}")
        self.params[name] = np.ascontiguousarray(value)
        self.grads[name] = np.zeros_like(self.params[name])

    def check_trainable(self) -> None:
        if self.quantized:
            raise RuntimeError(f"{type(self).__name__} is quantised to int8: it runs inference only "
                               "(train the float32 model, then quantize)")

    def sublayers(self) -> List["Layer"]:
        """Child layers whose parameters belong to this one (override)."""
        return []

    def named_params(self, prefix: str = "") -> Iterator[Tuple[str, "Layer", str]]:
        """Yield (qualified name, layer, param name) over this layer and its children, in a fixed order."""
        for pname in self.params:
            yield prefix + pname, self, pname
        for i, child in enumerate(self.sublayers()):
            yield from child.named_params(f"{prefix}{i}.{child.name}.")

    def initialize(self, rng: np.random.Generator) -> None:
        """Draw fresh initial parameter values from `rng` (a numpy Generator).

        The model owning the layer calls this once, before building its
        ParameterStore; layers with training-time randomness (Dropout) keep
        `rng` so one seed fixes a whole run. The default initialises children.
        """
        for child in self.sublayers():
            child.initialize(rng)

    def output_shape(self, input_shape: Tuple[Optional[int], ...]) -> Tuple[Optional[int], ...]:
        """Shape of the output for an input of `input_shape` (None for the batch axis); default: unchanged."""
        return input_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> Optional[np.ndarray]:
        raise NotImplementedError

    def config(self) -> Dict[str, Any]:
        """Constructor arguments as a JSON-able dict (override)."""
        return {}

    def n_params(self) -> int:
        return sum(layer.params[p].size for _, layer, p in self.named_params())


class _FlatParameters:
    """What a ParameterStore and its views share: `data`, `grad` (flat, same length) and `entries`."""

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def named_arrays(self) -> Dict[str, np.ndarray]:
        """{qualified name: parameter view}, in a fixed order."""
        return {qname: owner.params[pname] for qname, owner, pname, _, _ in self.entries}

    def __len__(self) -> int:
        return self.data.size


class ParameterStore(_FlatParameters):
    """All parameters of a model in one flat buffer, gradients in another.

    Each layer given is told its part: `layer.store_view` is the view of the store holding its
    parameters (and its children's), so a module trained on its own or inside a bigger model
    trains the same numbers.
    """

    def __init__(self, layers: Sequence[Layer], dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.entries = []  # (qualified name, layer, param name, offset, shape)
        spans = []
        offset = 0
        for i, layer in enumerate(layers):
            start = offset
            for qname, owner, pname in layer.named_params(f"{i}.{layer.name}."):
                shape = owner.params[pname].shape
                self.entries.append((qname, owner, pname, offset, shape))
                offset += int(np.prod(shape, dtype=np.int64))
            spans.append((layer, start, offset))
        self.data = np.zeros(offset, dtype=self.dtype)
        self.grad = np.zeros(offset, dtype=self.dtype)
        for qname, owner, pname, start, shape in self.entries:
            size = int(np.prod(shape, dtype=np.int64))
            self.data[start:start + size] = owner.params[pname].ravel()
            owner.params[pname] = self.data[start:start + size].reshape(shape)
            owner.grads[pname] = self.grad[start:start + size].reshape(shape)
        for layer, start, stop in spans:
            layer.store_view = self.view(start, stop)

    def view(self, start: int, stop: int) -> "ParameterView":
        """Parameters start..stop-1 of the flat buffers, as a store of their own (views, no copy):
        what an optimizer trains when part of a model is frozen, or one module of a bigger one."""
        return ParameterView(self, start, stop)


class ParameterView(_FlatParameters):
    """A contiguous run of a ParameterStore: data and grad are views; entries are those inside the run
    (their offsets stay the store's). The store stays the one source of truth."""

    def __init__(self, store: ParameterStore, start: int, stop: int):
        if not 0 <= start <= stop <= len(store):
            raise ValueError(f"a view of parameters {start}..{stop} does not fit a store of {len(store)}")
        self.store, self.start, self.stop = store, int(start), int(stop)
        self.dtype = store.dtype
        self.data = store.data[start:stop]
        self.grad = store.grad[start:stop]

    @property
    def entries(self) -> list:
        """The store's entries inside this run (found when asked: a training step needs only data and grad)."""
        return [e for e in self.store.entries
                if self.start <= e[3] and e[3] + int(np.prod(e[4], dtype=np.int64)) <= self.stop]

    def view(self, start: int, stop: int) -> "ParameterView":
        """A view of this view (offsets relative to it)."""
        if not 0 <= start <= stop <= len(self):
            raise ValueError(f"a view of parameters {start}..{stop} does not fit a view of {len(self)}")
        return ParameterView(self.store, self.start + start, self.start + stop)
