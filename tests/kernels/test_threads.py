"""Threads: 1 and 2 kernel threads agree, repeated calls are bitwise equal,
several Python threads may call kernels at once (the GIL is released), and
fastnet.threads(n) scopes the thread count."""
import threading
import time

import numpy as np
import pytest

import fastnet
from fastnet import ops
from fastnet import reference as ref
from helpers import ACTIVATIONS, DIFFERENTIABLE, assert_gemm_close, gemm_error_bound, random_array

RNG = np.random.default_rng(99)
# Big enough that every elementwise kernel splits the work across threads.
N = 300_007
X = random_array(RNG, N, np.float32, -4, 4)
DY = random_array(RNG, N, np.float32)
LOGITS = random_array(RNG, (600, 513), np.float32, -5, 5)
LABELS = RNG.integers(0, 513, 600)
LABELS[::7] = -100


def _run_with(n_threads, fn):
    with fastnet.threads(n_threads):
        return fn()


def _as_arrays(result):
    """Every array (and float) in a kernel result, for bitwise comparison."""
    if isinstance(result, tuple):
        return [np.asarray(r) for r in result if r is not None]
    return [np.asarray(result)]


def _assert_bitwise_equal(first, second, what):
    for a, b in zip(_as_arrays(first), _as_arrays(second)):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        assert a.tobytes() == b.tobytes(), f"{what}: results differ bitwise"


def _optimizer_run(name):
    def run():
        rng = np.random.default_rng(5)
        w = random_array(rng, N, np.float32)
        g = random_array(rng, N, np.float32)
        state = [np.zeros(N, np.float32), np.zeros(N, np.float32)]
        if name == "sgd_step":
            ops.sgd_step(w, g, state[0], lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
        else:
            for step in (1, 2):
                getattr(ops, name)(w, g, state[0], state[1], step=step, lr=0.01, weight_decay=0.1)
        return (w, *state)
    return run


def _scaled():
    x = X.copy()
    ops.scale_(x, 0.37)
    return x


ELEMENTWISE_CALLS = {
    **{f"activation[{a}]": (lambda a=a: ops.activation(X, a, alpha=0.1))
       for a in ACTIVATIONS},
    **{f"activation_backward[{a}]": (lambda a=a: ops.activation_backward(
        a, DY, x=X, y=ref.activation(X, a, alpha=0.1), alpha=0.1))
       for a in DIFFERENTIABLE},
    "softmax": lambda: ops.softmax(LOGITS),
    "softmax_backward": lambda: ops.softmax_backward(ref.softmax(LOGITS), LOGITS * 0.1),
    "softmax_cross_entropy": lambda: ops.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=0.1),
    "mse": lambda: ops.mse(X, DY),
    "bce_with_logits": lambda: ops.bce_with_logits(X, (DY > 0).astype(np.float32)),
    "sum_squares": lambda: ops.sum_squares(X),
    "scale_": _scaled,
    "sgd_step": _optimizer_run("sgd_step"),
    "adam_step": _optimizer_run("adam_step"),
    "adamw_step": _optimizer_run("adamw_step"),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE_CALLS))
def test_elementwise_one_and_two_threads_are_bitwise_equal(name):
    call = ELEMENTWISE_CALLS[name]
    one = _run_with(1, call)
    # More threads than cores, and odd counts, split the work unevenly.
    for n_threads in (2, 3, 8):
        _assert_bitwise_equal(one, _run_with(n_threads, call), f"{name}: 1 vs {n_threads} threads")


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sum_squares", "mse", "adam_step"])
def test_elementwise_repeated_calls_are_bitwise_equal(name):
    call = ELEMENTWISE_CALLS[name]
    _assert_bitwise_equal(_run_with(2, call), _run_with(2, call), f"{name}: twice on 2 threads")


# ---- GEMM and dense -----------------------------------------------------------------

A = random_array(RNG, (517, 300), np.float32)
B = random_array(RNG, (300, 401), np.float32)
BIAS = random_array(RNG, (401,), np.float32)
WIDE_A = random_array(RNG, (6, 400), np.float32)
WIDE_B = random_array(RNG, (400, 8000), np.float32)


def test_matmul_and_dense_one_and_two_threads_are_bitwise_equal():
    # csrc/gemm.c: every element sums its k terms in the same order however
    # rows or panels are split, so the result does not depend on n_threads.
    y = ref.dense(A, B, BIAS, activation="tanh")
    dy = random_array(np.random.default_rng(2), y.shape, np.float32)
    calls = {"matmul": lambda: ops.matmul(A, B),
             "matmul^T": lambda: ops.matmul(B, A, trans_a=True, trans_b=True),
             "matmul tall-skinny": lambda: ops.matmul(A[:, :7], B[:7], trans_b=False),
             # One row sliver: the threads split the column panels instead of the rows.
             "matmul few rows": lambda: ops.matmul(WIDE_A, WIDE_B),
             "matmul float64": lambda: ops.matmul(A.astype(np.float64), B.astype(np.float64)),
             "dense": lambda: ops.dense(A, B, BIAS, activation="gelu", return_preactivation=True),
             "dense_backward": lambda: ops.dense_backward(A, B, y, dy, activation="tanh")}
    for what, call in calls.items():
        one = _run_with(1, call)
        for n_threads in (2, 3, 8):
            _assert_bitwise_equal(one, _run_with(n_threads, call), f"{what}: 1 vs {n_threads} threads")
    one = _run_with(1, calls["matmul"])
    assert_gemm_close(one, ref.matmul(A.astype(np.float64), B.astype(np.float64)),
                      gemm_error_bound(A, B, np.float32), "1 thread")


@pytest.mark.parametrize("n_threads", [1, 2])
def test_matmul_and_dense_repeated_calls_are_bitwise_equal(n_threads):
    for call in (lambda: ops.matmul(A, B, trans_b=False),
                 lambda: ops.matmul(B, A, trans_a=True, trans_b=True),
                 lambda: ops.dense(A, B, BIAS, activation="gelu", return_preactivation=True)):
        _assert_bitwise_equal(_run_with(n_threads, call), _run_with(n_threads, call), f"{n_threads} threads")


def test_dense_backward_repeated_calls_are_bitwise_equal():
    y = ref.dense(A, B, BIAS, activation="tanh")
    dy = random_array(np.random.default_rng(1), y.shape, np.float32)
    call = lambda: ops.dense_backward(A, B, y, dy, activation="tanh")
    _assert_bitwise_equal(_run_with(2, call), _run_with(2, call), "dense_backward")


def _in_python_threads(work, n):
    """[work(0), ..., work(n - 1)], each called in its own Python thread, all at once; an exception
    in a thread fails the test here, in the main thread."""
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = work(i)
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_four_python_threads_calling_kernels_get_correct_results():
    rng = np.random.default_rng(12)
    jobs = []
    for i in range(4):
        m, n, k = 90 + 13 * i, 70 + 17 * i, 150 + 7 * i
        jobs.append((random_array(rng, (m, k), np.float32), random_array(rng, (k, n), np.float32),
                     random_array(rng, (n,), np.float32)))
    matmul, dense = ops.matmul, ops.dense

    def work(i):
        x, w, b = jobs[i]
        return [(matmul(x, w), dense(x, w, b, activation="relu")) for _ in range(5)]

    results = _in_python_threads(work, len(jobs))
    for (x, w, b), out in zip(jobs, results):
        x64, w64, b64 = (v.astype(np.float64) for v in (x, w, b))
        bound = gemm_error_bound(x, w, np.float32) + 2 * np.finfo(np.float32).eps * np.abs(b64)
        for c, y in out:
            assert_gemm_close(c, x64 @ w64, bound, "matmul from a Python thread")
            assert_gemm_close(y, np.maximum(x64 @ w64 + b64, 0), bound, "dense from a Python thread")


def test_four_python_threads_calling_elementwise_kernels_get_sequential_results():
    rng = np.random.default_rng(13)
    jobs = [(random_array(rng, (64 + i, 300 + 50 * i), np.float32, -4, 4), rng.integers(0, 300, 64 + i),
             random_array(rng, 50_000 + i, np.float32)) for i in range(4)]

    def work(logits, labels, grad):
        w, m, v = np.ones_like(grad), np.zeros_like(grad), np.zeros_like(grad)
        losses = []
        for step in range(1, 6):
            loss, dlogits = ops.softmax_cross_entropy(logits, labels, label_smoothing=0.1)
            ops.adam_step(w, grad, m, v, step=step)
            losses.append((loss, dlogits, ops.gelu(logits)))
        return losses, w

    expected = [work(*job) for job in jobs]
    results = _in_python_threads(lambda i: work(*jobs[i]), len(jobs))
    for i in range(4):
        (got_steps, got_w), (exp_steps, exp_w) = results[i], expected[i]
        assert got_w.tobytes() == exp_w.tobytes()
        for got, exp in zip(got_steps, exp_steps):
            assert got[0] == exp[0]
            assert got[1].tobytes() == exp[1].tobytes() and got[2].tobytes() == exp[2].tobytes()


def _call_lasting_at_least(seconds):
    """A float64 matmul big enough to take `seconds` on one thread."""
    m = 128
    while True:
        a = np.ones((m, m))
        start = time.perf_counter()
        with fastnet.threads(1):
            ops.matmul(a, a)
        if time.perf_counter() - start >= seconds or m >= 2048:
            return a
        m *= 2


def test_matmul_releases_the_gil():
    a = _call_lasting_at_least(0.1)
    ticks, done = [], threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.01)
    with fastnet.threads(1):
        start = time.perf_counter()
        ops.matmul(a, a)
        end = time.perf_counter()
    done.set()
    t.join()
    # With the GIL held for the whole C call the ticker could not run at all
    # in the middle of it.
    middle = [s for s in ticks if start + 0.25 * (end - start) < s < start + 0.75 * (end - start)]
    assert middle, f"no Python thread ran during a {end - start:.3f} s matmul"


# ---- fastnet.threads ------------------------------------------------------------------

def test_threads_context_manager_nests_and_restores_after_errors():
    before = fastnet.get_num_threads()
    with fastnet.threads(2):
        with fastnet.threads(1):
            assert fastnet.get_num_threads() == 1
        assert fastnet.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with fastnet.threads(1):
                raise RuntimeError("inside")
        assert fastnet.get_num_threads() == 2
    assert fastnet.get_num_threads() == before


def test_threads_context_manager_rejects_bad_counts_without_changing_state():
    before = fastnet.get_num_threads()
    with pytest.raises(ValueError):
        with fastnet.threads(0):
            pass
    assert fastnet.get_num_threads() == before
