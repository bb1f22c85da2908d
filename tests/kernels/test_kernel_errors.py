"""Bad input to the kernels: each case raises a clear exception whose message
names the offending shapes or dtypes. Everything runs in-process, so a
crash in a wrapper or kernel would take the whole file down."""
import re
import sys

import numpy as np
import pytest

from fastnet import ops
from helpers import ACTIVATIONS, DIFFERENTIABLE, backward_needs_x, guarded_script, run_guarded

f32, f64 = np.float32, np.float64


def shape(*dims):
    """Regex for a shape in a message: (3, 4), 3x4 or 3 x 4."""
    return r"\(?" + r"(?:, | ?x ?)".join(str(d) for d in dims) + r"\)?"


def all_of(*patterns):
    """Regex that matches when every pattern appears, in any order."""
    return "(?s)" + "".join(f"(?=.*{p})" for p in patterns)


def zeros(*dims, dtype=f32):
    return np.zeros(dims, dtype)


def readonly(a):
    a.setflags(write=False)
    return a


# ---- matmul ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.complex64])
def test_matmul_rejects_non_float_dtypes(dtype):
    a = zeros(3, 4, dtype=dtype)
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        ops.matmul(a, a.T.copy())


def test_matmul_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match=all_of("float32", "float64")):
        ops.matmul(zeros(3, 4, dtype=f32), zeros(4, 5, dtype=f64))


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4,)), ((12,), (4, 3)), ((2, 3, 4), (4, 5))])
def test_matmul_rejects_wrong_ndim(a_shape, b_shape):
    bad = a_shape if len(a_shape) != 2 else b_shape
    with pytest.raises(ValueError, match=shape(*bad)):
        ops.matmul(np.zeros(a_shape, f32), np.zeros(b_shape, f32))


@pytest.mark.parametrize("trans_a,trans_b,a_shape,b_shape", [
    (False, False, (3, 4), (5, 6)),
    (True, False, (3, 4), (5, 6)),
    (False, True, (3, 4), (6, 5)),
    (True, True, (4, 3), (6, 5)),
])
def test_matmul_rejects_mismatched_inner_sizes(trans_a, trans_b, a_shape, b_shape):
    with pytest.raises(ValueError, match=all_of(shape(*a_shape), shape(*b_shape))):
        ops.matmul(np.zeros(a_shape, f32), np.zeros(b_shape, f32), trans_a=trans_a, trans_b=trans_b)


def test_matmul_rejects_out_of_wrong_shape():
    with pytest.raises(ValueError, match=all_of(shape(3, 6), shape(3, 5))):
        ops.matmul(zeros(3, 4), zeros(4, 5), out=zeros(3, 6))


def test_matmul_rejects_out_of_wrong_dtype():
    with pytest.raises((TypeError, ValueError), match="float64"):
        ops.matmul(zeros(3, 4), zeros(4, 5), out=zeros(3, 5, dtype=f64))


@pytest.mark.parametrize("make_out", [lambda: np.zeros((5, 3), f32).T, lambda: np.zeros((3, 10), f32)[:, ::2]])
def test_matmul_rejects_non_contiguous_out(make_out):
    with pytest.raises(ValueError, match="contiguous"):
        ops.matmul(zeros(3, 4), zeros(4, 5), out=make_out())


def test_matmul_rejects_readonly_out():
    with pytest.raises(ValueError, match="(?i)read-?only|writeable|writable"):
        ops.matmul(zeros(3, 4), zeros(4, 5), out=readonly(zeros(3, 5)))


@pytest.mark.parametrize("which", ["a", "b"])
def test_matmul_rejects_out_aliasing_an_input(which):
    a = np.ones((4, 4), f32)
    b = np.ones((4, 4), f32)
    with pytest.raises(ValueError, match="(?i)alias|overlap|share"):
        ops.matmul(a, b, out=a if which == "a" else b)
    np.testing.assert_array_equal(a, 1.0)
    np.testing.assert_array_equal(b, 1.0)


def test_matmul_rejects_out_overlapping_a_view_of_an_input():
    buf = np.ones((8, 4), f32)
    with pytest.raises(ValueError, match="(?i)alias|overlap|share"):
        ops.matmul(buf[:4], np.ones((4, 4), f32), out=buf[2:6])


def test_matmul_beta_needs_out():
    with pytest.raises(ValueError, match="out"):
        ops.matmul(zeros(3, 4), zeros(4, 5), beta=1.0)


# ---- dense -----------------------------------------------------------------------

def test_dense_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=all_of(shape(3, 4), shape(5, 6))):
        ops.dense(zeros(3, 4), zeros(5, 6))


@pytest.mark.parametrize("x_shape,w_shape", [((4,), (4, 3)), ((2, 4), (4, 3, 1))])
def test_dense_rejects_wrong_ndim(x_shape, w_shape):
    bad = x_shape if len(x_shape) != 2 else w_shape
    with pytest.raises(ValueError, match=shape(*bad)):
        ops.dense(np.zeros(x_shape, f32), np.zeros(w_shape, f32))
    with pytest.raises(ValueError, match=shape(*bad)):
        ops.dense_backward(np.zeros(x_shape, f32), np.zeros(w_shape, f32), zeros(2, 3), zeros(2, 3))


def test_dense_rejects_wrong_bias_shape():
    with pytest.raises(ValueError, match=shape(7)):
        ops.dense(zeros(3, 4), zeros(4, 6), zeros(7))


def test_dense_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match=all_of("float32", "float64")):
        ops.dense(zeros(3, 4), zeros(4, 6), zeros(6, dtype=f64))


def test_dense_rejects_int_bias():
    with pytest.raises(TypeError, match="int64"):
        ops.dense(zeros(3, 4), zeros(4, 6), np.zeros(6, np.int64))


def test_matmul_rejects_scalars():
    with pytest.raises(ValueError, match="2-D"):
        ops.matmul(np.float32(1), zeros(1, 1))


def test_dense_rejects_int_input():
    with pytest.raises(TypeError, match="int64"):
        ops.dense(np.zeros((3, 4), np.int64), zeros(4, 6))


def test_dense_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ops.dense(zeros(3, 4), zeros(4, 6), activation="swish")


def test_dense_rejects_out_aliasing_x():
    x = np.ones((4, 4), f32)
    with pytest.raises(ValueError, match="(?i)alias|overlap|share"):
        ops.dense(x, np.ones((4, 4), f32), out=x)


def test_dense_rejects_out_of_wrong_shape():
    with pytest.raises(ValueError, match=shape(3, 5)):
        ops.dense(zeros(3, 4), zeros(4, 6), out=zeros(3, 5))


def test_dense_backward_of_step_is_an_error():
    x, w = zeros(3, 4), zeros(4, 6)
    with pytest.raises(ValueError, match="step"):
        ops.dense_backward(x, w, zeros(3, 6), zeros(3, 6), activation="step")


def test_dense_backward_of_gelu_needs_pre():
    x, w = zeros(3, 4), zeros(4, 6)
    with pytest.raises(ValueError, match="pre"):
        ops.dense_backward(x, w, zeros(3, 6), zeros(3, 6), activation="gelu")


@pytest.mark.parametrize("arg", ["y", "dy"])
def test_dense_backward_rejects_wrong_output_shapes(arg):
    args = dict(x=zeros(3, 4), w=zeros(4, 6), y=zeros(3, 6), dy=zeros(3, 6))
    args[arg] = zeros(3, 7)
    with pytest.raises(ValueError, match=shape(3, 7)):
        ops.dense_backward(**args, activation="relu")


def test_dense_backward_rejects_wrong_dw_shape():
    with pytest.raises(ValueError, match=shape(6, 4)):
        ops.dense_backward(zeros(3, 4), zeros(4, 6), zeros(3, 6), zeros(3, 6), dw=zeros(6, 4))


@pytest.mark.parametrize("arg", ["dy", "dw"])
def test_dense_backward_rejects_other_dtypes(arg):
    args = dict(dy=zeros(2, 3), dw=None)
    args[arg] = np.zeros((2, 3) if arg == "dy" else (4, 3), f64)
    with pytest.raises(TypeError, match=all_of("float64", "float32")):
        ops.dense_backward(zeros(2, 4), zeros(4, 3), zeros(2, 3), args["dy"], dw=args["dw"])


def test_dense_backward_accumulate_needs_dw():
    with pytest.raises(ValueError, match="dw"):
        ops.dense_backward(zeros(2, 4), zeros(4, 3), zeros(2, 3), zeros(2, 3), accumulate=True)


def test_dense_backward_rejects_readonly_dw():
    with pytest.raises(ValueError, match="(?i)read-?only|writeable|writable"):
        ops.dense_backward(zeros(3, 4), zeros(4, 6), zeros(3, 6), zeros(3, 6), dw=readonly(zeros(4, 6)))


# ---- activations and softmax -------------------------------------------------------

def test_activation_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ops.activation(zeros(5), "swish")


def test_activation_backward_of_step_is_an_error():
    with pytest.raises(ValueError, match="step"):
        ops.activation_backward("step", zeros(5), x=zeros(5), y=zeros(5))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_reject_int_input(name):
    with pytest.raises(TypeError, match="int32"):
        ops.activation(np.zeros(5, np.int32), name)


def test_activation_rejects_out_of_wrong_shape():
    with pytest.raises(ValueError, match=shape(4)):
        ops.activation(zeros(5), "relu", out=zeros(4))


def test_activation_rejects_readonly_out():
    with pytest.raises(ValueError, match="(?i)read-?only|writeable|writable"):
        ops.activation(zeros(5), "relu", out=readonly(zeros(5)))


def test_activation_backward_needs_x_or_y():
    with pytest.raises(ValueError, match=r"\bx\b.*\by\b"):
        ops.activation_backward("relu", zeros(5))


@pytest.mark.parametrize("name", [name for name in DIFFERENTIABLE if backward_needs_x(name)])
def test_a_backward_that_needs_x_refuses_y_alone(name):
    with pytest.raises(ValueError, match=name):
        ops.activation_backward(name, zeros(5), y=zeros(5))


def test_activation_backward_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=shape(4)):
        ops.activation_backward("tanh", zeros(5), x=zeros(4), y=zeros(4))


def test_softmax_rejects_int_input():
    with pytest.raises(TypeError, match="int64"):
        ops.softmax(np.zeros((2, 3), np.int64))


@pytest.mark.parametrize("name", ["softmax_backward", "activation_backward"])
def test_backward_rejects_mixed_dtypes(name):
    with pytest.raises(TypeError, match=all_of("float32", "float64")):
        if name == "softmax_backward":
            ops.softmax_backward(zeros(2, 3), zeros(2, 3, dtype=f64))
        else:
            ops.activation_backward("tanh", zeros(3), y=zeros(3, dtype=f64))


def test_softmax_backward_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=all_of(shape(2, 3), shape(2, 4))):
        ops.softmax_backward(zeros(2, 3), zeros(2, 4))


# ---- losses ------------------------------------------------------------------------

@pytest.mark.parametrize("bad_label", [3, 17, -1])
def test_cross_entropy_rejects_out_of_range_labels(bad_label):
    with pytest.raises(ValueError, match="label"):
        ops.softmax_cross_entropy(zeros(4, 3), np.array([0, 1, bad_label, 2]))


def test_cross_entropy_rejects_labels_of_wrong_length():
    with pytest.raises(ValueError, match=all_of(shape(4, 3), shape(5))):
        ops.softmax_cross_entropy(zeros(4, 3), np.zeros(5, np.int64))


def test_cross_entropy_rejects_2d_labels():
    with pytest.raises(ValueError, match=shape(2, 1)):
        ops.softmax_cross_entropy(zeros(2, 3), np.zeros((2, 1), np.int64))


def test_cross_entropy_rejects_int_logits():
    with pytest.raises(TypeError, match="int64"):
        ops.softmax_cross_entropy(np.zeros((2, 3), np.int64), np.zeros(2, np.int64))


def test_cross_entropy_rejects_1d_logits():
    with pytest.raises(ValueError, match=shape(12)):
        ops.softmax_cross_entropy(zeros(12), np.zeros(12, np.int64))


def test_cross_entropy_rejects_float_labels():
    with pytest.raises(TypeError, match="float"):
        ops.softmax_cross_entropy(zeros(4, 3), np.zeros(4, f32))


def test_cross_entropy_rejects_zero_classes():
    with pytest.raises(ValueError, match=shape(2, 0)):
        ops.softmax_cross_entropy(zeros(2, 0), np.zeros(2, np.int64))


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5])
def test_cross_entropy_rejects_bad_label_smoothing(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        ops.softmax_cross_entropy(zeros(4, 3), np.zeros(4, np.int64), label_smoothing=smoothing)


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_losses_reject_mismatched_shapes(name):
    with pytest.raises(ValueError, match=all_of(shape(3, 4), shape(4, 3))):
        getattr(ops, name)(zeros(3, 4), zeros(4, 3))


@pytest.mark.parametrize("name", ["mse", "bce_with_logits"])
def test_elementwise_losses_reject_mixed_dtypes(name):
    with pytest.raises(TypeError, match=all_of("float32", "float64")):
        getattr(ops, name)(zeros(3, 4), zeros(3, 4, dtype=f64))


# ---- optimizer steps ---------------------------------------------------------------

def test_sgd_rejects_non_contiguous_weights():
    w = zeros(20)[::2]
    with pytest.raises(ValueError, match="contiguous"):
        ops.sgd_step(w, zeros(10), lr=0.1)


def test_sgd_rejects_2d_weights():
    with pytest.raises(ValueError, match=shape(3, 4)):
        ops.sgd_step(zeros(3, 4), zeros(3, 4), lr=0.1)


def test_sgd_rejects_gradient_of_other_length():
    with pytest.raises(ValueError, match=all_of(shape(10), shape(9))):
        ops.sgd_step(zeros(10), zeros(9), lr=0.1)


def test_sgd_momentum_needs_velocity():
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_step(zeros(10), zeros(10), lr=0.1, momentum=0.9)


def test_sgd_rejects_readonly_weights():
    with pytest.raises(ValueError, match="(?i)read-?only|writeable|writable"):
        ops.sgd_step(readonly(zeros(10)), zeros(10), lr=0.1)


def test_sgd_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match=all_of("float32", "float64")):
        ops.sgd_step(zeros(10), zeros(10, dtype=f64), lr=0.1)


def test_sgd_rejects_velocity_of_other_length():
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_step(zeros(10), zeros(10), zeros(11), lr=0.1, momentum=0.9)


@pytest.mark.parametrize("pair", [("w", "velocity"), ("w", "g")])
def test_sgd_rejects_shared_buffers(pair):
    args = dict(w=np.ones(10, f32), g=np.ones(10, f32), velocity=np.zeros(10, f32))
    args[pair[1]] = args[pair[0]]
    w = args.pop("w")
    with pytest.raises(ValueError, match="(?i)alias|overlap|share"):
        ops.sgd_step(w, args["g"], args["velocity"], lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(w, 1.0)


@pytest.mark.parametrize("pair", [("m", "v"), ("w", "g"), ("w", "m")])
def test_adam_rejects_shared_buffers(pair):
    args = dict(w=np.ones(10, f32), g=np.ones(10, f32), m=np.zeros(10, f32), v=np.zeros(10, f32))
    args[pair[1]] = args[pair[0]]
    with pytest.raises(ValueError, match="(?i)alias|overlap|share"):
        ops.adam_step(args["w"], args["g"], args["m"], args["v"], step=1)


@pytest.mark.parametrize("step", [0, -1])
def test_adam_rejects_step_below_one(step):
    with pytest.raises(ValueError, match="step"):
        ops.adam_step(zeros(10), zeros(10), zeros(10), zeros(10), step=step)


def test_adam_rejects_moment_of_other_length():
    with pytest.raises(ValueError, match=shape(11)):
        ops.adam_step(zeros(10), zeros(10), zeros(11), zeros(10), step=1)


def test_sum_squares_rejects_int_input():
    with pytest.raises(TypeError, match="int64"):
        ops.sum_squares(np.zeros(10, np.int64))


def test_scale_rejects_readonly():
    with pytest.raises(ValueError, match="(?i)read-?only|writeable|writable"):
        ops.scale_(readonly(zeros(10)), 2.0)


def test_error_messages_are_not_empty():
    # A bare status code would be useless to the user: messages say what was wrong.
    with pytest.raises(ValueError) as info:
        ops.matmul(zeros(3, 4), zeros(5, 6))
    assert re.search(r"[a-z]{4,}", str(info.value))


# ---- memory safety: no kernel reads or writes outside its buffers -------------------

_GUARDED_RUN = guarded_script("""
from helpers import ACTIVATIONS, has_gradient

for dt in (np.float32, np.float64):
    for m, n, k in [(1, 1, 1), (5, 7, 3), (7, 17, 9), (13, 33, 31), (6, 16, 16), (97, 95, 33), (17, 1, 17),
                    (2, 300, 5)]:
        for ta in (False, True):
            for tb in (False, True):
                a = g(rng.standard_normal((k, m) if ta else (m, k)).astype(dt))
                b = g(rng.standard_normal((n, k) if tb else (k, n)).astype(dt))
                out = g(np.ones((m, n), dt))
                ops.matmul(a, b, trans_a=ta, trans_b=tb, out=out, beta=0.5)
                with fastnet.threads(2):
                    ops.matmul(a, b, trans_a=ta, trans_b=tb, out=out)
        x = g(rng.standard_normal((m, k)).astype(dt))
        w, bias = g(rng.standard_normal((k, n)).astype(dt)), g(rng.standard_normal(n).astype(dt))
        for act in ACTIVATIONS:
            ops.dense(x, w, bias, activation=act, out=g(np.zeros((m, n), dt)))
            if has_gradient(act):
                y, pre = (g(v) for v in ops.dense(x, w, bias, activation=act, return_preactivation=True))
                ops.dense_backward(x, w, y, g(rng.standard_normal((m, n)).astype(dt)), activation=act, pre=pre,
                                   dw=g(np.zeros((k, n), dt)), db=g(np.zeros(n, dt)), accumulate=True)
    for size in [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1001]:
        x, dy = g(rng.standard_normal(size).astype(dt)), g(rng.standard_normal(size).astype(dt))
        for act in ACTIVATIONS:
            ops.activation(x, act, out=g(np.zeros(size, dt)))
            if has_gradient(act):
                ops.activation_backward(act, dy, x=x, y=g(ops.activation(x, act)))
        z = g(rng.standard_normal((3, size)).astype(dt))
        ops.softmax_backward(g(ops.softmax(z)), g(rng.standard_normal((3, size)).astype(dt)))
        ops.softmax_cross_entropy(z, g(rng.integers(0, size, 3)), label_smoothing=0.1)
        ops.mse(x, dy)
        ops.bce_with_logits(x, g(rng.random(size).astype(dt)))
        w, v, m2 = g(rng.standard_normal(size).astype(dt)), g(np.zeros(size, dt)), g(np.zeros(size, dt))
        ops.sgd_step(w, dy, v, lr=0.1, momentum=0.9, nesterov=True)
        ops.adam_step(w, dy, m2, v, step=1, weight_decay=0.1)
        ops.sum_squares(dy)
        ops.scale_(w, 0.5)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages via mprotect need Linux")
def test_kernels_stay_inside_their_buffers():
    # Every buffer ends (or starts) at an inaccessible page, so a SIMD tail or
    # edge tile that touches one element too many crashes the subprocess.
    from helpers import CPU_PATHS
    run_guarded(_GUARDED_RUN, CPU_PATHS)


def test_dense_backward_rejects_dw_and_db_sharing_memory():
    grads = np.zeros(20, f32)
    with pytest.raises(ValueError, match="(?i)alias|overlap|share"):
        ops.dense_backward(zeros(3, 4), zeros(4, 5), zeros(3, 5), zeros(3, 5), dw=grads.reshape(4, 5), db=grads[15:])
