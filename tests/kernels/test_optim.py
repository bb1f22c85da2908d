"""In-place optimizer steps (SGD with momentum/Nesterov/weight decay, Adam,
AdamW), sum_squares and scale_, step by step against the reference."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnet import ops
from fastnet import reference as ref
from helpers import EDGE_SIZES, FLOAT_DTYPES, kernel_settings, random_array, seeds

sizes = st.one_of(st.sampled_from(EDGE_SIZES + [1000, 4099]), st.integers(0, 300))
N_STEPS = 4


def _assert_step_close(got, expected, before, dtype, what, rtol_update, terms=0.0):
    """Judge the change each step made: rounding of the stored value (a few eps
    of |before|), a relative error on the update itself, and a few eps of the
    magnitude of the terms summed into it (`terms`: they may cancel). float32
    kernels round beta/momentum to float32, which alone moves 1 - beta2 by ~1e-5."""
    got, expected, before = (np.asarray(v, np.float64) for v in (got, expected, before))
    eps = np.finfo(dtype).eps
    bound = (4 * eps * (np.abs(before) + np.abs(expected) + terms) + rtol_update * np.abs(expected - before)
             + np.finfo(dtype).tiny)
    err = np.abs(got - expected)
    bad = ~(err <= bound)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(f"{what}: element {i}: before {before[i]!r}, got {got[i]!r}, expected {expected[i]!r}")


def _update_tol(dtype):
    return 3e-5 if dtype == np.float32 else 1e-12


# ---- the reference itself ---------------------------------------------------

def test_reference_adam_first_step_moves_by_lr_times_sign():
    w = np.array([1.0, -2.0, 3.0, 0.5])
    g = np.array([0.3, -4.0, 1e-3, -0.02])
    m, v = np.zeros(4), np.zeros(4)
    ref.adam_step(w, g, m, v, step=1, lr=0.01, eps=0.0)
    np.testing.assert_allclose(w, [0.99, -1.99, 2.99, 0.51], rtol=1e-14)


def test_reference_sgd_nesterov_by_hand():
    w, g, vel = np.array([1.0]), np.array([0.5]), np.array([2.0])
    ref.sgd_step(w, g, vel, lr=0.1, momentum=0.9, weight_decay=0.2, nesterov=True)
    g2 = 0.5 + 0.2 * 1.0
    v = 0.9 * 2.0 + g2
    assert vel[0] == pytest.approx(v)
    assert w[0] == pytest.approx(1.0 - 0.1 * (g2 + 0.9 * v))


def test_reference_adamw_decays_weights_independently_of_the_gradient():
    w, m, v = np.array([2.0]), np.zeros(1), np.zeros(1)
    ref.adamw_step(w, np.zeros(1), m, v, step=1, lr=0.1)  # default weight_decay 0.01
    assert w[0] == pytest.approx(2.0 * (1 - 0.1 * 0.01))


# ---- SGD -----------------------------------------------------------------------

@kernel_settings
@given(n=sizes, momentum=st.sampled_from([0.0, 0.9]), nesterov=st.booleans(),
       weight_decay=st.sampled_from([0.0, 1e-2]), dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_sgd_steps_match_reference(cpu_path, n, momentum, nesterov, weight_decay, dtype, seed):
    rng = np.random.default_rng(seed)
    w = random_array(rng, n, dtype)
    velocity = np.zeros(n, dtype) if momentum or rng.random() < 0.5 else None
    options = dict(lr=0.05, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0)
    for i in range(N_STEPS):
        g = random_array(rng, n, dtype)
        w_before = w.copy()
        velocity_before = None if velocity is None else velocity.astype(np.float64)
        w_ref = w.copy()
        v_ref = None if velocity is None else velocity.copy()
        ops.sgd_step(w, g, velocity, **options)
        ref.sgd_step(w_ref, g, v_ref, **options)
        what = f"{cpu_path} step {i} n={n} {options}"
        # Terms that may cancel in g' and in v: lr * (|g| + wd |w| + mom |v|), twice with Nesterov.
        v_before = 0.0 if v_ref is None else np.abs(velocity_before)
        terms = options["lr"] * (np.abs(g) + weight_decay * np.abs(w_before) + momentum * v_before) * (1 + momentum)
        _assert_step_close(w, w_ref, w_before, dtype, what + " w", _update_tol(dtype), terms=4 * terms)
        if momentum:
            np.testing.assert_allclose(velocity, v_ref, rtol=8 * np.finfo(dtype).eps,
                                       atol=8 * np.finfo(dtype).eps, err_msg=what + " velocity")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_sgd_plain_step_leaves_velocity_alone(cpu_path, dtype):
    w, g = np.ones(37, dtype), np.full(37, 2.0, dtype)
    velocity = np.full(37, 5.0, dtype)
    ops.sgd_step(w, g, velocity, lr=0.25)
    np.testing.assert_array_equal(w, np.full(37, 0.5))
    np.testing.assert_array_equal(velocity, np.full(37, 5.0))


# ---- Adam and AdamW -------------------------------------------------------------

def _adam_options(draw_wd, decoupled):
    return dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=draw_wd, decoupled=decoupled)


@kernel_settings
@given(n=sizes, weight_decay=st.sampled_from([0.0, 0.1]), decoupled=st.booleans(),
       dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_adam_steps_match_reference(cpu_path, n, weight_decay, decoupled, dtype, seed):
    rng = np.random.default_rng(seed)
    w = random_array(rng, n, dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    options = _adam_options(weight_decay, decoupled)
    for step in range(1, N_STEPS + 1):
        g = random_array(rng, n, dtype, -2, 2)
        before = [a.copy() for a in (w, m, v)]
        w_ref, m_ref, v_ref = [a.copy() for a in before]
        ops.adam_step(w, g, m, v, step=step, **options)
        ref.adam_step(w_ref, g, m_ref, v_ref, step=step, **options)
        what = f"{cpu_path} step {step} n={n} {dtype.__name__} {options}"
        # g' = g + wd * w and m = b1 m + (1 - b1) g' may cancel: their rounding
        # is relative to the magnitudes of the terms, carried into the update.
        g_terms = np.abs(g.astype(np.float64)) + weight_decay * np.abs(before[0].astype(np.float64))
        m_terms = options["beta1"] * np.abs(before[1].astype(np.float64)) + (1 - options["beta1"]) * g_terms
        v_hat = v_ref.astype(np.float64) / (1 - options["beta2"] ** step)
        w_terms = options["lr"] * m_terms / (1 - options["beta1"] ** step) / (np.sqrt(v_hat) + options["eps"])
        _assert_step_close(w, w_ref, before[0], dtype, what + " w", _update_tol(dtype), terms=4 * w_terms)
        _assert_step_close(m, m_ref, before[1], dtype, what + " m", 1e-6 if dtype == np.float32 else 1e-13,
                           terms=(1 - options["beta1"]) * g_terms)
        _assert_step_close(v, v_ref, before[2], dtype, what + " v", _update_tol(dtype),
                           terms=(1 - options["beta2"]) * g_terms ** 2)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_adamw_step_is_decoupled_adam_with_default_decay(cpu_path, dtype):
    rng = np.random.default_rng(3)
    state = [random_array(rng, 129, dtype), np.zeros(129, dtype), np.zeros(129, dtype)]
    expected = [a.copy() for a in state]
    for step in (1, 2, 3):
        g = random_array(rng, 129, dtype)
        before = state[0].copy()
        ops.adamw_step(state[0], g, state[1], state[2], step=step, lr=0.1)
        ref.adam_step(expected[0], g, expected[1], expected[2], step=step, lr=0.1,
                      weight_decay=0.01, decoupled=True)
        _assert_step_close(state[0], expected[0], before, dtype, f"adamw step {step}", _update_tol(dtype))
        expected = [a.copy() for a in state]


def test_adam_bias_correction_uses_the_step_count(cpu_path):
    # Same state, later step: smaller bias correction, so a different update.
    w1, w5 = np.ones(16), np.ones(16)
    g = np.full(16, 0.5)
    m, v = np.full(16, 0.1), np.full(16, 0.01)
    ops.adam_step(w1, g, m.copy(), v.copy(), step=1, lr=0.1)
    ops.adam_step(w5, g, m.copy(), v.copy(), step=5, lr=0.1)
    for w, step in ((w1, 1), (w5, 5)):
        expected = np.ones(16)
        ref.adam_step(expected, g, m.copy(), v.copy(), step=step, lr=0.1)
        np.testing.assert_allclose(w, expected, rtol=1e-14)
    assert not np.allclose(w1, w5)


# ---- sum_squares and scale_ ---------------------------------------------------------

@kernel_settings
@given(n=st.one_of(sizes, st.just(100003)), dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_sum_squares_matches_reference(cpu_path, n, dtype, seed):
    x = random_array(np.random.default_rng(seed), n, dtype, -3, 3)
    got = ops.sum_squares(x)
    assert isinstance(got, float)
    expected = ref.sum_squares(x)
    # Squares may be rounded to dtype; the double accumulation of n terms in
    # any fixed order errs by at most n * eps(float64) relative (all terms >= 0).
    bound = (2 * np.finfo(dtype).eps + n * np.finfo(np.float64).eps) * expected
    assert abs(got - expected) <= bound + 1e-300, f"{got} vs {expected}"


@kernel_settings
@given(n=sizes, scale=st.sampled_from([0.0, 0.5, -3.0, 1e-3]), dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds())
def test_scale_in_place_matches_reference(cpu_path, n, scale, dtype, seed):
    x = random_array(np.random.default_rng(seed), n, dtype)
    expected = ref.scale_(x.copy(), scale)
    result = ops.scale_(x, scale)
    assert result is None or result is x
    # One rounding either way (scale itself may be rounded to dtype first).
    np.testing.assert_allclose(x, expected, rtol=2 * np.finfo(dtype).eps, atol=0)


def test_global_norm_clipping_with_sum_squares_and_scale(cpu_path):
    g = np.arange(1, 1001, dtype=np.float32) / 1000
    norm = np.sqrt(ops.sum_squares(g))
    ops.scale_(g, 1.0 / norm)
    assert np.sqrt(ref.sum_squares(g)) == pytest.approx(1.0, rel=1e-6)
