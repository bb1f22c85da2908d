"""ops.pack_weights / ops.dense_packed: weights packed once give ops.dense's bits on every CPU path,
the packed layout is the GEMM's panels, and a path whose kernels read other panels is refused."""
import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import CPU_PATHS, LAYOUTS, random_array, with_layout

# m x k x n: one row; a row count that is no multiple of any tile; k past one KC block (512);
# n past one panel and no multiple of 8, 16 or 32; a product big enough to pack A too; empty ones
SHAPES = [(1, 128, 4000), (13, 37, 70), (16, 600, 33), (300, 600, 1100), (7, 1, 1), (0, 5, 9), (4, 0, 6),
          (3, 8, 0)]


def _weights(rng, k, n, trans, layout="C"):
    """w (k, n) and what pack_weights is given for it: w, or the table w.T when trans."""
    w = random_array(rng, (k, n), np.float32)
    return w, with_layout(np.ascontiguousarray(w.T) if trans else w, layout)


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_dense_packed_gives_dense_bit_for_bit_on_every_path(cpu_path, rng, m, k, n, trans, threads):
    w, given = _weights(rng, k, n, trans)
    x = random_array(rng, (m, k), np.float32)
    b = random_array(rng, (n,), np.float32)
    with fastnet.threads(threads):
        packed = ops.pack_weights(given, trans=trans)
        for activation in ("identity", "gelu", "relu"):
            expected = ops.dense(x, w, b, activation=activation)
            assert ops.dense_packed(x, packed, b, activation=activation).tobytes() == expected.tobytes()
        assert ops.dense_packed(x, packed).tobytes() == ops.dense(x, w).tobytes()
    assert (packed.k, packed.n) == (k, n)


@pytest.mark.parametrize("activation", list(ops.ACTIVATION_NAMES))
def test_every_activation_runs_in_the_packed_products_epilogue(rng, activation):
    w, _ = _weights(rng, 40, 70, False)
    x = random_array(rng, (9, 40), np.float32)
    packed = ops.pack_weights(w)
    expected = ops.dense(x, w, None, activation=activation, alpha=0.2)
    assert ops.dense_packed(x, packed, None, activation=activation, alpha=0.2).tobytes() == expected.tobytes()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_weights_of_any_layout_pack_to_the_same_panels(rng, layout):
    w, given = _weights(rng, 33, 47, True, layout)
    assert ops.pack_weights(given, trans=True).data.tobytes() == ops.pack_weights(w).data.tobytes()


@pytest.mark.parametrize("k, n", [(5, 70), (600, 33), (1, 1)])
def test_the_packed_form_is_panels_of_nr_columns_k_rows_deep_zero_padded(cpu_path, rng, k, n):
    """What the GEMM driver reads in place of its own packing: panel q = columns q*nr .. q*nr+nr-1,
    row by row, columns past n zero (so padding never meets a NaN)."""
    w = random_array(rng, (k, n), np.float32)
    packed = ops.pack_weights(w)
    nr = packed.nr
    padded = np.zeros((k, -(-n // nr) * nr), np.float32)
    padded[:, :n] = w
    expected = padded.reshape(k, -1, nr).transpose(1, 0, 2).reshape(-1)
    assert packed.data.tobytes() == expected.tobytes()


def test_nan_and_infinity_reach_the_same_outputs_as_in_dense(cpu_path, rng):
    w, _ = _weights(rng, 24, 50, False)
    w[3, 7], w[5, 49] = np.nan, np.inf
    x = random_array(rng, (6, 24), np.float32)
    x[2, 0] = np.nan
    packed = ops.pack_weights(w)
    got, expected = ops.dense_packed(x, packed), ops.dense(x, w)
    assert np.isnan(got).any() and got.tobytes() == expected.tobytes()


def test_read_only_weights_and_inputs_are_read_in_place(rng):
    w, _ = _weights(rng, 16, 40, False)
    x = random_array(rng, (3, 16), np.float32)
    w.flags.writeable = x.flags.writeable = False
    assert ops.dense_packed(x, ops.pack_weights(w)).tobytes() == ops.dense(x, w).tobytes()


def test_the_twin_multiplies_by_the_same_weights(rng):
    w, table = _weights(rng, 30, 20, True)
    x = random_array(rng, (5, 30), np.float32)
    b = random_array(rng, (20,), np.float32)
    got = ops.dense_packed(x, ops.pack_weights(table, trans=True), b, activation="tanh")
    twin = ref.dense_packed(x, ref.pack_weights(table, trans=True), b, activation="tanh")
    np.testing.assert_allclose(got, twin, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(len(CPU_PATHS) < 2, reason="one CPU path: no other panel width to switch to")
def test_weights_packed_for_another_paths_panels_are_refused(rng):
    w, _ = _weights(rng, 8, 40, False)
    before = fastnet._kernels.current_path_name()
    packed = ops.pack_weights(w)
    try:
        for path in CPU_PATHS:
            fastnet._kernels.set_cpu_path(path)
            if ops.pack_weights(w).nr != packed.nr:
                with pytest.raises(ValueError, match=rf"packed for panels of {packed.nr} columns.*pack them again"):
                    ops.dense_packed(random_array(rng, (2, 8), np.float32), packed)
                return
    finally:
        fastnet._kernels.set_cpu_path(before)
    pytest.skip("every CPU path here reads panels of the same width")


def test_a_packed_form_put_together_by_hand_is_checked_before_c_reads_it():
    good = ops.pack_weights(np.ones((3, 40), np.float32))
    x = np.ones((2, 3), np.float32)
    for data, k, n in ((good.data[:5], 3, 40), (good.data.astype(np.float64), 3, 40), (good.data, 3, 4000),
                       (good.data, -1, 40), (good.data.reshape(1, -1), 3, 40), ([1.0] * good.data.size, 3, 40)):
        with pytest.raises(ValueError, match="packed.data must be the"):
            ops.dense_packed(x if k == 3 else np.ones((2, max(k, 0)), np.float32),
                             ops.PackedWeights(data, k, n, good.nr))


@pytest.mark.parametrize("call, error, message", [
    (lambda: ops.pack_weights(np.ones((3, 4))), TypeError, "pack_weights: w must be float32"),
    (lambda: ops.pack_weights(np.ones(4, np.float32)), ValueError, "pack_weights: w must be 2-D"),
    (lambda: ops.dense_packed(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)), TypeError,
     "packed must come from pack_weights"),
    (lambda: ops.dense_packed(np.ones((2, 5), np.float32), ops.pack_weights(np.ones((3, 4), np.float32))),
     ValueError, r"x must have shape \(m, 3\)"),
    (lambda: ops.dense_packed(np.ones((2, 3)), ops.pack_weights(np.ones((3, 4), np.float32))), TypeError,
     "dense_packed: x must be float32"),
    (lambda: ops.dense_packed(np.ones((2, 3), np.float32), ops.pack_weights(np.ones((3, 4), np.float32)),
                              np.ones(5, np.float32)), ValueError, r"b must have shape \(4,\)"),
    (lambda: ops.dense_packed(np.ones((2, 3), np.float32), ops.pack_weights(np.ones((3, 4), np.float32)),
                              activation="swish?"), ValueError, "unknown activation"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _decoding_products(rng, k, n):
    """The two products a decoding loop writes its logits with (packed float32 and int8), each as
    (name, run(x, out=None), run's reference twin) over the same weights and bias."""
    w = random_array(rng, (k, n), np.float32)
    b = random_array(rng, (n,), np.float32)
    packed = ops.pack_weights(w)
    q, scale = ops.quantize_columns(w)
    int8 = ops.pack_int8(q)
    return [("dense_packed", lambda x, out=None: ops.dense_packed(x, packed, b, out=out),
             lambda x, out=None: ref.dense_packed(x, ref.pack_weights(w), b, out=out)),
            ("dense_int8", lambda x, out=None: ops.dense_int8(x, int8, scale, b, out=out),
             lambda x, out=None: ref.dense_int8(x, int8, scale, b, out=out))]


@pytest.mark.parametrize("m, k, n", [(1, 128, 4000), (13, 37, 70), (0, 5, 9), (3, 8, 0)])
def test_decoding_products_write_into_a_given_out_the_same_bits(cpu_path, rng, m, k, n):
    x = random_array(rng, (m, k), np.float32)
    for name, run, twin in _decoding_products(rng, k, n):
        out = np.full((m, n), np.nan, np.float32)  # whatever it held is overwritten
        assert run(x, out=out) is out, name
        assert out.tobytes() == run(x).tobytes(), name
        buffer = np.full((m + 5, n), np.nan, np.float32)  # a decoding loop's buffer: its first m rows
        run(x, out=buffer[:m])
        assert buffer[:m].tobytes() == out.tobytes() and np.isnan(buffer[m:]).all(), name
        expected = np.full((m, n), np.nan, np.float32)
        assert twin(x, out=expected) is expected, name
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 if name == "dense_packed" else 0.05,
                                   err_msg=name)


def test_a_bad_out_for_the_decoding_products_is_named(rng):
    x = random_array(rng, (4, 6), np.float32)
    read_only = np.zeros((4, 5), np.float32)
    read_only.flags.writeable = False
    for name, run, _ in _decoding_products(rng, 6, 5):
        with pytest.raises(TypeError, match=f"{name}: out must be float32, got dtype float64"):
            run(x, out=np.zeros((4, 5)))
        with pytest.raises(ValueError, match=rf"{name}: out must have shape \(4, 5\), got \(5, 4\)"):
            run(x, out=np.zeros((5, 4), np.float32))
        with pytest.raises(ValueError, match=f"{name}: out must be C-contiguous"):
            run(x, out=np.zeros((5, 4), np.float32).T)
        with pytest.raises(ValueError, match=f"{name}: out is read-only"):
            run(x, out=read_only)
        with pytest.raises(TypeError, match=f"{name}: out must be a numpy array, got list"):
            run(x, out=[[0.0] * 5] * 4)
        both = np.zeros(44, np.float32)  # x in values 0-23, out in 20-39: four shared
        with pytest.raises(ValueError, match=f"{name}: out shares memory with an input"):
            run(both[:24].reshape(4, 6), out=both[20:40].reshape(4, 5))
