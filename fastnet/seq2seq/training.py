"""The Translator's training loop: batches of similar length, teacher forcing, one optimizer step
over every trained parameter, validation, callbacks, a time budget."""
import time

import numpy as np

from fastnet.seq2seq.encoder import pool, pool_backward


def _trim(ids, pad_id):
    """Drop columns that are padding in every row."""
    width = int((ids != pad_id).sum(axis=1).max())
    return ids[:, :max(width, 1)]


def length_batches(lengths, batch_size, rng, shuffle=True):
    """Index batches of similar lengths (less padding), in random order when shuffling.

    Sentences are shuffled, then sorted by length within windows of 16 batches,
    so batches differ from epoch to epoch but hold similar lengths.
    """
    n = len(lengths)
    order = rng.permutation(n) if shuffle else np.arange(n)
    window = batch_size * 16
    batches = []
    for start in range(0, n, window):
        part = order[start:start + window]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class EncodedPairs:
    """Source ids and, per decoder, target ids for aligned sentences."""

    def __init__(self, tr, src, targets, what):
        from fastnet.seq2seq.translator import _as_texts

        src = _as_texts(src, what)
        if not isinstance(targets, dict) or not targets:
            raise ValueError(f"{what}: targets must be a dict {{decoder name: sentences}}, got {type(targets).__name__}")
        self.src = tr.encode_source(src)
        self.targets = {}
        for name, texts in targets.items():
            tr._decoder(name)
            if tr.tokenizers.get(name) is None:
                self.targets[name] = np.asarray(texts)  # another decoder kind: arrays, not text
            else:
                texts = list(texts)
                self.targets[name] = tr.encode_target(name, texts)
            if len(self.targets[name]) != len(src):
                raise ValueError(f"{what}: {len(src)} source sentences but {len(self.targets[name])} "
                                 f"{name!r} targets; they must be aligned")
        self.lengths = (self.src != tr.encoder.pad_id).sum(axis=1)

    def __len__(self):
        return len(self.src)

    def batch(self, tr, idx):
        src = _trim(self.src[idx], tr.encoder.pad_id)
        tgts = {}
        for name, ids in self.targets.items():
            tok = tr.tokenizers.get(name)
            tgts[name] = ids[idx] if tok is None else _trim(ids[idx], tok.pad_id)
        return src, tgts


def _has_labels(tr, name, target):
    tok = tr.tokenizers.get(name)
    return tok is None or bool((target[:, 1:] != tok.pad_id).any())


def batch_loss(tr, src, targets, training, label_smoothing=0.0):
    """Forward (and, when training, backward) over one batch; returns ({name: loss}, {name: stats})."""
    train_encoder = training and not tr.frozen_encoder
    mask = src == tr.encoder.pad_id
    memory = tr.encoder.forward(src, mask, training=train_encoder)
    pooled = None
    dmemory = np.zeros_like(memory) if train_encoder else None
    losses, stats = {}, {}
    for name, target in targets.items():
        if not _has_labels(tr, name, target):
            continue
        dec = tr.decoders[name]
        if dec.input_kind == "representation":
            pooled = pool(memory, mask) if pooled is None else pooled
            context, context_mask = pooled, None
        else:
            context, context_mask = memory, mask
        losses[name], stats[name] = dec.loss(context, context_mask, target, training=training,
                                             label_smoothing=label_smoothing)
        if training:
            dcontext = dec.backward_loss()
            if train_encoder:
                dmemory += pool_backward(dcontext, mask) if dec.input_kind == "representation" else dcontext
    if train_encoder:
        tr.encoder.backward(dmemory)
    return losses, stats


def teacher_forced_scores(tr, src, targets, batch_size=128):
    """Mean loss (summed over decoders) and next-token accuracy with the true prefix, no dropout."""
    return scores_on(tr, EncodedPairs(tr, src, targets, "evaluate"), batch_size)


def scores_on(tr, data, batch_size=128):
    total_loss, weight, correct, count = 0.0, 0, 0, 0
    for idx in length_batches(data.lengths, batch_size, None, shuffle=False):
        s, t = data.batch(tr, idx)
        losses, stats = batch_loss(tr, s, t, training=False)
        total_loss += sum(losses.values()) * len(idx)
        weight += len(idx)
        correct += sum(st.get("correct", 0) for st in stats.values())
        count += sum(st.get("count", 0) for st in stats.values())
    return {"loss": total_loss / max(weight, 1), "token_accuracy": correct / max(count, 1)}


def _default_optimizer(lr, warmup, clip_norm):
    from fastnet import optimizers, schedules

    return optimizers.Adam(lr, schedule=schedules.InverseSqrt(warmup_steps=warmup), clip_norm=clip_norm)


class StoreSlice:
    """The tail of a ParameterStore from `start` on: what an optimizer trains when the encoder
    (the head of the store) is frozen. Views, so the full store stays the one source of truth."""

    def __init__(self, store, start):
        self.dtype = store.dtype
        self.data = store.data[start:]
        self.grad = store.grad[start:]
        self.entries = [e for e in store.entries if e[3] >= start]

    def zero_grad(self):
        self.grad.fill(0)

    def named_arrays(self):
        return {qname: owner.params[pname] for qname, owner, pname, _, _ in self.entries}

    def __len__(self):
        return self.data.size


def _training_store(tr):
    """All parameters, or the decoders alone (the encoder comes first in tr.store) when it is frozen."""
    if not tr.frozen_encoder:
        return tr.store
    return StoreSlice(tr.store, tr.encoder.n_params())


def _check_callbacks(callbacks):
    from fastnet.callbacks import Callback

    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be fastnet Callback instances, got {type(cb).__name__}")
    return callbacks


def fit_translator(tr, src, targets, epochs, batch_size, validation_data, callbacks, verbose, max_minutes,
                   lr, warmup, label_smoothing, clip_norm, optimizer, shuffle):
    from fastnet.history import History

    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be positive or None, got {max_minutes!r}")
    data = EncodedPairs(tr, src, targets, "fit")
    validation = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise ValueError("validation_data must be (sources, {decoder name: references})")
        validation = EncodedPairs(tr, validation_data[0], validation_data[1], "validation_data")
    callbacks = _check_callbacks(callbacks)
    names = sorted(data.targets)
    optimizer, store = _optimizer_for(tr, names, optimizer, lr, warmup, clip_norm, len(data), batch_size)
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * float(max_minutes)
    history = History()
    tr.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(tr)
    logs = {}
    try:
        for _ in range(epochs):
            epoch = tr.epochs_trained
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            logs = _train_epoch(tr, data, store, optimizer, batch_size, shuffle, label_smoothing, callbacks,
                                verbose, epoch, deadline)
            if validation is not None:
                val = scores_on(tr, validation)
                logs["val_loss"], logs["val_token_accuracy"] = val["loss"], val["token_accuracy"]
            tr.epochs_trained += 1
            tr.trained.update(names)
            history.append(epoch, logs)
            tr.history.append(epoch, logs)
            if verbose == 2:
                shown = "  ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "time")
                print(f"epoch {epoch + 1}: {shown}  ({logs['time']:.2f}s)")
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if tr.stop_training or (deadline is not None and time.monotonic() >= deadline):
                break
    finally:
        for cb in callbacks:
            cb.on_train_end(logs)
    return history


def _optimizer_for(tr, names, optimizer, lr, warmup, clip_norm, n, batch_size):
    """Reuse the optimizer (Adam's moments, the schedule's step) when fit continues the same training."""
    key = (tuple(names), tr.frozen_encoder, id(tr.store))
    state = tr._training_state
    if optimizer is None and state is not None and state[0] == key:
        return state[2], state[1]
    store = _training_store(tr)
    if optimizer is None:
        steps_per_epoch = -(-n // int(batch_size))
        warmup = warmup or max(50, min(4000, 2 * steps_per_epoch))
        optimizer = _default_optimizer(lr, warmup, clip_norm)
    optimizer.bind(store)
    tr._training_state = (key, store, optimizer)
    return optimizer, store


def _train_epoch(tr, data, store, optimizer, batch_size, shuffle, label_smoothing, callbacks, verbose, epoch,
                 deadline):
    batches = length_batches(data.lengths, int(batch_size), tr.rng, shuffle)
    bar = None
    if verbose == 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(data), unit="sentence", desc=f"epoch {epoch + 1}", leave=True, dynamic_ncols=True)
    start = time.perf_counter()
    total_loss, seen, correct, count = 0.0, 0, 0, 0
    try:
        for step, idx in enumerate(batches):
            store.zero_grad()
            s, t = data.batch(tr, idx)
            losses, stats = batch_loss(tr, s, t, training=True, label_smoothing=label_smoothing)
            loss = sum(losses.values())
            if not np.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                                         f"training stopped. Try a smaller learning rate")
            optimizer.step()
            total_loss += loss * len(idx)
            seen += len(idx)
            correct += sum(st.get("correct", 0) for st in stats.values())
            count += sum(st.get("count", 0) for st in stats.values())
            for cb in callbacks:
                cb.on_batch_end(step, {"loss": loss, "batch_size": len(idx)})
            if bar is not None:
                bar.update(len(idx))
                if step % 8 == 0:
                    bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        if bar is not None:
            bar.close()
    return {"loss": total_loss / max(seen, 1), "token_accuracy": correct / max(count, 1),
            "time": time.perf_counter() - start}
