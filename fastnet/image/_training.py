"""The training loop of ImageDecoder: mini-batches, Adam over one flat buffer, a History."""
import time

import numpy as np

from fastnet.image.decoder import pictures_to_float

# Adam's default step for a pixel decoder. On toy pictures with a 75-second
# budget, 3e-3 reached 0.12x the mean picture's error, 2e-3 0.15x, 1e-3 0.27x.
DEFAULT_LR = 3e-3


def fit_decoder(decoder, reps, images, epochs, batch_size, optimizer, validation_data,
                validation_split, seed, verbose, minutes):
    from fastnet.history import History

    reps = decoder._check_representations(reps)
    if reps.shape[0] == 0:
        raise ValueError("cannot train an ImageDecoder on zero pictures")
    targets = decoder._check_images(images, reps.shape[0])
    _check_schedule(epochs, batch_size, minutes)
    train, val = _split_validation(decoder, reps, targets, validation_data, validation_split)

    if decoder.untrained():
        decoder.start_from_mean_picture(train[1])
    optimizer, store = _bind_optimizer(decoder, optimizer)
    rng = np.random.default_rng(decoder.seed if seed is None else seed)
    history = History()
    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    for epoch in range(epochs):
        loss = _train_epoch(decoder, store, optimizer, train, batch_size, rng, epoch, epochs, verbose,
                            deadline)
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
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes!r}")


def _split_validation(decoder, reps, targets, validation_data, validation_split):
    """(train pair, validation pair or None); the split takes the last fraction, as Keras does."""
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        val_reps, val_images = validation_data
        val_reps = decoder._check_representations(val_reps)
        return (reps, targets), (val_reps, decoder._check_images(val_images, val_reps.shape[0]))
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


def _bind_optimizer(decoder, optimizer):
    from fastnet.optimizers import Adam

    store = decoder.store
    if optimizer is None:
        optimizer = decoder.optimizer if decoder.optimizer is not None else Adam(DEFAULT_LR)
    bound = getattr(optimizer, "store", None)
    same_weights = (bound is not None and bound.data.size == store.data.size
                    and np.shares_memory(bound.data, store.data))
    if not same_weights:  # keep Adam's moments when training continues on the same weights
        optimizer.bind(store)
    decoder.optimizer = optimizer
    return optimizer, store


def _train_epoch(decoder, store, optimizer, train, batch_size, rng, epoch, epochs, verbose, deadline):
    reps, targets = train
    order = rng.permutation(reps.shape[0])
    starts = range(0, reps.shape[0], batch_size)
    bar = _progress(len(starts), epoch, epochs, verbose)
    total, seen = 0.0, 0
    for start in starts:
        idx = order[start:start + batch_size]
        store.zero_grad()
        loss = decoder.loss_and_backward(reps[idx], targets[idx])
        optimizer.step()
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


def _progress(n_batches, epoch, epochs, verbose):
    if not verbose:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)


def mean_picture_baseline(train_images, test_images):
    """MSE of predicting the mean training picture for every test picture (pixels in [0, 1])."""
    mean = pictures_to_float(train_images, np.float64).mean(axis=0)
    return float(np.mean((pictures_to_float(test_images, np.float64) - mean) ** 2))
