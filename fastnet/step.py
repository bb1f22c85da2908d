"""One training step, written once for every model kind (Network, Translator, ImageDecoder).

A trainable model exposes the step as four public pieces:

    loss, info = model.forward_loss(*batch, loss_scale=1.0)   # forward pass and the loss times loss_scale;
                                                               # keeps what backward needs
    model.backward()                                           # adds parameter gradients into ...
    model.gradients                                            # ... one flat buffer (the trained parameters)
    model.apply_update()                                       # the optimizer step from `gradients`

`train_step` strings them together with the checks every trainer needs, in
one order: a non-finite loss stops the step before any gradient is used, a
non-finite gradient before the update, so a FloatingPointError always leaves
the weights of the last good step. A data-parallel trainer passes `reduce`,
which combines the loss and the gradient buffer across workers (an
Allreduce) between backward and the checks: every worker then holds the same
numbers and decides alike.

`loss_scale` multiplies the loss (and so its gradient, before backward): a
worker holding part of a batch scales its mean loss by its share of the
batch, so that the summed losses and gradients equal those of the whole.
"""
import math
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from fastnet import ops

Reduce = Callable[[float, np.ndarray], float]


def check_loss(loss: float) -> None:
    """FloatingPointError if the training loss is NaN or infinite."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss}")


def check_gradients(gradients: np.ndarray, loss: float) -> None:
    """FloatingPointError if any gradient is NaN or infinite (one float64-accumulated sum of squares)."""
    if not math.isfinite(ops.sum_squares(gradients)):
        raise FloatingPointError(f"a gradient became NaN or infinite (the loss was {loss:.4g})")


def train_step(model: Any, batch: Optional[Sequence[Any]], loss_scale: Any = 1.0, reduce: Optional[Reduce] = None,
               **options: Any) -> Tuple[float, Any]:
    """Zero the gradients, forward and loss, backward, check, update; returns (loss, info).

    batch: the arguments of model.forward_loss, or None when this worker holds no rows of the
    batch (it then contributes a zero loss and zero gradients to `reduce`).
    options: passed on to forward_loss (a Translator's label_smoothing, say).
    """
    gradients = model.gradients
    gradients.fill(0)
    loss, info = 0.0, None
    if batch is not None:
        loss, info = model.forward_loss(*batch, loss_scale=loss_scale, **options)
        if reduce is None and not math.isfinite(loss):
            check_loss(loss)  # before backward: nothing of a diverged batch is computed further
        model.backward()
    if reduce is not None:
        loss = reduce(loss, gradients)
        check_loss(loss)
    if not math.isfinite(ops.sum_squares(gradients)):  # (inline tests: a toy network's step is ~20 us)
        check_gradients(gradients, loss)
    model.apply_update()
    return loss, info
