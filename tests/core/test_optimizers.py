"""Optimizers and schedules: update rules, clipping, state, configs."""
import math

import numpy as np
import pytest

import fastnet as fn
from fastnet import optimizers, schedules
from fastnet.layers import ParameterStore


def store_with(values, grads):
    layer = fn.Dense(1, len(values), use_bias=False)
    store = ParameterStore([layer], dtype=np.float64)
    store.data[...] = values
    store.grad[...] = grads
    return store


def test_sgd_momentum_nesterov_and_weight_decay():
    store = store_with([1.0, -2.0], [0.5, 0.5])
    opt = fn.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    opt.bind(store)
    opt.step()
    g = np.array([0.5, 0.5]) + 0.1 * np.array([1.0, -2.0])
    v = g
    np.testing.assert_allclose(store.data, np.array([1.0, -2.0]) - 0.1 * (g + 0.9 * v), rtol=1e-12)
    assert opt.iterations == 1


def test_adam_first_step_moves_by_lr():
    store = store_with([1.0, 1.0], [3.0, -0.01])
    opt = fn.Adam(0.01)
    opt.bind(store)
    opt.step()
    np.testing.assert_allclose(store.data, [0.99, 1.01], rtol=1e-6)  # bias-corrected: a step of lr * sign(g)


def test_adamw_decays_weights_apart_from_the_gradient():
    store = store_with([2.0], [0.0])
    opt = fn.AdamW(0.1, weight_decay=0.5)
    opt.bind(store)
    opt.step()
    assert store.data[0] == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)


def test_global_norm_clipping():
    store = store_with([0.0, 0.0], [3.0, 4.0])
    opt = fn.SGD(1.0, clip_norm=1.0)
    opt.bind(store)
    opt.step()
    np.testing.assert_allclose(store.data, [-0.6, -0.8], rtol=1e-12)
    small = store_with([0.0, 0.0], [0.3, 0.4])
    opt.bind(small)
    opt.step()
    np.testing.assert_allclose(small.data, [-0.3, -0.4], rtol=1e-12)


def test_schedule_scales_the_learning_rate():
    store = store_with([0.0], [1.0])
    opt = fn.SGD(1.0, schedule=fn.StepDecay(2, gamma=0.5))
    opt.bind(store)
    rates = []
    for _ in range(5):
        rates.append(opt.current_lr())
        opt.step()
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert store.data[0] == pytest.approx(-3.25)


def test_schedules_values():
    assert fn.Constant()(1000) == 1.0
    cos = fn.Cosine(10, min_factor=0.1)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.55) and cos(10) == pytest.approx(0.1) == cos(50)
    warm = fn.Warmup(4, after=fn.StepDecay(10, 0.5))
    assert [warm(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0] and warm(14) == 0.5
    inv = fn.InverseSqrt(4)
    assert inv(3) == 1.0 and inv(0) == 0.25 and inv(15) == pytest.approx(0.5)
    assert max(inv(s) for s in range(100)) == 1.0


def test_schedule_and_optimizer_configs_round_trip():
    for sched in [fn.Constant(), fn.StepDecay(3, 0.2), fn.Cosine(7, 0.05), fn.Warmup(2, fn.Cosine(9)),
                  fn.InverseSqrt(40)]:
        assert schedules.from_config(sched.config()) == sched
    for opt in [fn.SGD(0.3, momentum=0.5, nesterov=True, weight_decay=1e-4, clip_norm=2.0),
                fn.Adam(2e-3, beta2=0.98, schedule=fn.Warmup(10)), fn.AdamW(weight_decay=0.1),
                fn.RandomSearch(0.2, seed=9)]:
        rebuilt = optimizers.from_config(opt.config())
        assert type(rebuilt) is type(opt) and rebuilt.config() == opt.config()


def test_state_dict_round_trip_and_errors():
    store = store_with([1.0, 2.0], [0.1, -0.2])
    opt = fn.Adam()
    opt.bind(store)
    opt.step()
    arrays, meta = opt.state_dict()
    fresh = fn.Adam()
    fresh.bind(store_with([1.0, 2.0], [0.0, 0.0]))
    fresh.load_state_dict(arrays, meta)
    assert fresh.iterations == 1 and np.array_equal(fresh.state_dict()[0]["m"], arrays["m"])
    with pytest.raises(ValueError, match="state needs arrays"):
        fresh.load_state_dict({"m": arrays["m"]}, meta)
    with pytest.raises(ValueError, match="has shape"):
        fresh.load_state_dict({"m": np.zeros(3), "v": np.zeros(3)}, meta)
    with pytest.raises(RuntimeError, match="not bound"):
        fn.SGD().step()


def test_random_search_keeps_only_improvements():
    store = store_with([3.0, -4.0], [0.0, 0.0])
    opt = fn.RandomSearch(step_size=0.5, seed=0)
    opt.bind(store)

    def loss():
        return float(np.sum(store.data ** 2))

    values = [opt.step(loss) for _ in range(200)]
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert values[-1] < 1.0 and opt.accepted > 20
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()


def test_optimizer_argument_errors():
    with pytest.raises(ValueError, match="learning rate must be a positive number"):
        fn.SGD(lr=-1)
    with pytest.raises(ValueError, match="momentum"):
        fn.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        fn.SGD(nesterov=True)
    with pytest.raises(ValueError, match="beta1"):
        fn.Adam(beta1=1.0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizers.get("lbfgs")
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.from_config({"class": "Exponential"})
    with pytest.raises(ValueError, match="Cosine total_steps"):
        fn.Cosine(0)
    assert isinstance(optimizers.get("sgd"), fn.SGD) and math.isclose(optimizers.get("adam").lr, 1e-3)
