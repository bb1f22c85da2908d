"""Learning-rate schedules: callables mapping a step (0, 1, ...) to a multiplier of the base rate.

Each schedule has a JSON-able `config()`; `from_config` rebuilds it, so a
saved model resumes with the same schedule.
"""
import math

from fastnet.checks import positive_int


class Schedule:
    def __call__(self, step):
        raise NotImplementedError

    def config(self):
        return {"class": type(self).__name__, **self._args()}

    def _args(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.config() == other.config()


class Constant(Schedule):
    """The base learning rate at every step."""

    def __call__(self, step):
        return 1.0


class StepDecay(Schedule):
    """Multiply the rate by `gamma` every `step_size` steps."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = positive_int(step_size, "StepDecay step_size")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"StepDecay gamma must be in (0, 1], got {gamma!r}")
        self.gamma = float(gamma)

    def __call__(self, step):
        return self.gamma ** (step // self.step_size)

    def _args(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class Cosine(Schedule):
    """Half a cosine from 1 down to `min_factor` over `total_steps`, then flat."""

    def __init__(self, total_steps, min_factor=0.0):
        self.total_steps = positive_int(total_steps, "Cosine total_steps")
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"Cosine min_factor must be in [0, 1], got {min_factor!r}")
        self.min_factor = float(min_factor)

    def __call__(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _args(self):
        return {"total_steps": self.total_steps, "min_factor": self.min_factor}


class Warmup(Schedule):
    """Rise linearly to 1 over `warmup_steps`, then follow `after` (counted from the end of warmup)."""

    def __init__(self, warmup_steps, after=None):
        self.warmup_steps = positive_int(warmup_steps, "Warmup warmup_steps")
        if after is not None and not callable(after):
            raise TypeError(f"Warmup after must be a schedule, got {type(after).__name__}")
        self.after = after

    def __call__(self, step):
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return 1.0 if self.after is None else self.after(step - self.warmup_steps)

    def _args(self):
        return {"warmup_steps": self.warmup_steps, "after": None if self.after is None else self.after.config()}


class InverseSqrt(Schedule):
    """The transformer schedule: linear warmup to 1, then decay as 1/sqrt(step)."""

    def __init__(self, warmup_steps):
        self.warmup_steps = positive_int(warmup_steps, "InverseSqrt warmup_steps")

    def __call__(self, step):
        s = step + 1
        return min(s / self.warmup_steps, math.sqrt(self.warmup_steps / s))

    def _args(self):
        return {"warmup_steps": self.warmup_steps}


SCHEDULES = {cls.__name__: cls for cls in (Constant, StepDecay, Cosine, Warmup, InverseSqrt)}


def from_config(cfg):
    """Rebuild a schedule from its `config()` (None stays None)."""
    if cfg is None:
        return None
    cfg = dict(cfg)
    name = cfg.pop("class", None)
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    if name == "Warmup" and cfg.get("after") is not None:
        cfg["after"] = from_config(cfg["after"])
    return SCHEDULES[name](**cfg)
