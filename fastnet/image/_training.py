"""The training loop of ImageDecoder: mini-batches through the shared step (fastnet/step.py), a History."""
import time

import numpy as np

from fastnet.checks import positive_int
from fastnet.image.decoder import pictures_to_float
from fastnet.step import train_step


def fit_decoder(decoder, reps, images, epochs, batch_size, optimizer, validation_data,
                validation_split, seed, verbose, minutes):
    from fastnet.history import History

    reps = decoder._check_representations(reps)
    if reps.shape[0] == 0:
        raise ValueError("cannot train an ImageDecoder on zero pictures")
    reps, targets = decoder.prepare_data(reps, images)
    _check_schedule(epochs, batch_size, minutes)
    train, val = _split_validation(decoder, reps, targets, validation_data, validation_split)

    decoder.begin_training(*train)
    decoder.use_optimizer(optimizer)
    rng = np.random.default_rng(decoder.seed if seed is None else seed)
    history = History()
    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    for epoch in range(epochs):
        loss = _train_epoch(decoder, train, batch_size, rng, epoch, epochs, verbose, deadline)
        logs = {"loss": loss}
        if val is not None:
            logs["val_loss"] = decoder.evaluate(*val)
        history.append(decoder.epochs_trained, logs)
        decoder.epochs_trained += 1
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.5f}" for k, v in logs.items()))
        if deadline is not None and time.monotonic() >= deadline:
            break
    decoder.history = history
    return history


def _check_schedule(epochs, batch_size, minutes):
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes!r}")


def _split_validation(decoder, reps, targets, validation_data, validation_split):
    """(train pair, validation pair or None); the split takes the last fraction, as Keras does."""
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        return (reps, targets), decoder.prepare_data(*validation_data)
    if not validation_split:
        return (reps, targets), None
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
    n_val = int(round(reps.shape[0] * validation_split))
    if n_val < 1 or n_val >= reps.shape[0]:
        raise ValueError(f"validation_split={validation_split} of {reps.shape[0]} pictures "
                         "leaves no training or no validation pictures")
    cut = reps.shape[0] - n_val
    return (reps[:cut], targets[:cut]), (reps[cut:], targets[cut:])


def _train_epoch(decoder, train, batch_size, rng, epoch, epochs, verbose, deadline):
    reps, targets = train
    order = rng.permutation(reps.shape[0])
    starts = range(0, reps.shape[0], batch_size)
    bar = _progress(len(starts), epoch, epochs, verbose)
    total, seen = 0.0, 0
    for step, start in enumerate(starts):
        idx = order[start:start + batch_size]
        loss = _step(decoder, reps[idx], targets[idx], epoch, step, bar)
        total += loss * len(idx)
        seen += len(idx)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / seen:.5f}", refresh=False)
        if deadline is not None and time.monotonic() >= deadline:
            break
    if bar is not None:
        bar.close()
    return total / seen


def _step(decoder, reps, targets, epoch, step, bar):
    """The shared training step; a non-finite loss or gradient ends training, the weights unchanged."""
    try:
        return train_step(decoder, (reps, targets))[0]
    except FloatingPointError as exc:
        if bar is not None:
            bar.close()
        raise FloatingPointError(f"{exc} at epoch {epoch + 1}, step {step + 1}; training stopped with the weights "
                                 f"of the last good step. Try a smaller learning rate") from None


def _progress(n_batches, epoch, epochs, verbose):
    if not verbose:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)


def mean_picture_baseline(train_images, test_images):
    """MSE of predicting the mean training picture for every test picture (pixels in [0, 1])."""
    mean = pictures_to_float(train_images, np.float64).mean(axis=0)
    return float(np.mean((pictures_to_float(test_images, np.float64) - mean) ** 2))
