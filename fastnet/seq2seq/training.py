"""The Translator's training loop: batches of similar length, teacher forcing, one optimizer step
over every trained parameter, validation, callbacks, a time budget.

The recipe of the strong small translation systems is here too, each optional:
languages with their own English interleaved batch by batch, subword sampling
(a new random segmentation every pass), an exponential moving average of the
weights (what is evaluated and kept), and keeping the weights of the epoch with
the best validation chrF rather than the last.
"""
import time
import warnings

import numpy as np

from fastnet.checks import positive_int
from fastnet.seq2seq.encoder import pool, pool_backward
from fastnet.step import train_step


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


def _check_targets(targets, what):
    if not isinstance(targets, dict) or not targets:
        raise ValueError(f"{what}: targets must be a dict {{decoder name: sentences}}, "
                         f"got {type(targets).__name__}")


class EncodedPairs:
    """Source ids and, per decoder, target ids for aligned sentences."""

    def __init__(self, tr, src, targets, what):
        from fastnet.seq2seq.translator import _as_texts

        src = _as_texts(src, what)
        _check_targets(targets, what)
        self.texts = (src, {})
        self.src = tr.encode_source(src, truncate=True)
        self.targets = {}
        for name, texts in targets.items():
            tr._decoder(name)
            if tr.tokenizers.get(name) is None:
                self.targets[name] = np.asarray(texts)  # another decoder kind: arrays, not text
            else:
                texts = list(texts)
                self.texts[1][name] = texts
                self.targets[name] = tr.encode_target(name, texts)
            if len(self.targets[name]) != len(src):
                raise ValueError(f"{what}: {len(src)} source sentences but {len(self.targets[name])} "
                                 f"{name!r} targets; they must be aligned")
        self.lengths = (self.src != tr.encoder.pad_id).sum(axis=1)

    def resample(self, tr, alpha):
        """Encode the text again with a random subword segmentation (subword regularisation)."""
        src, targets = self.texts
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cutting over-long sentences was already reported once
            self.src = tr.encode_source(src, sample_alpha=alpha, truncate=True)
            for name, texts in targets.items():
                self.targets[name] = tr.encode_target(name, texts, sample_alpha=alpha)
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


class TrainingData:
    """The pairs of one fit: one aligned part (one English list for every decoder) or one part per
    language (each its own English). Batches hold one part each; the parts' batches interleave."""

    def __init__(self, tr, src, targets, what):
        _check_targets(targets, what)
        if isinstance(src, dict):
            from fastnet.seq2seq.translator import _source_lists

            sources = _source_lists(src, targets, what)
            self.parts = [EncodedPairs(tr, sources[name], {name: targets[name]}, f"{what} ({name!r})")
                          for name in targets]
        else:
            self.parts = [EncodedPairs(tr, src, targets, what)]
        self.names = sorted({name for part in self.parts for name in part.targets})

    def __len__(self):
        return sum(len(part) for part in self.parts)

    def batches(self, batch_size, rng, shuffle=True, temperature=1.0):
        """[(part, index array)]: one pass; shuffled, the languages interleave.

        With temperature T > 1 the languages' shares of the batches go as (their batches) ** (1/T)
        instead of in proportion (the multilingual translation recipe; T = inf: equal shares): a
        small language's batches repeat (in a new order) and a large one's are cut short, so it is
        not starved. A pass keeps the total number of batches."""
        per_part = [length_batches(part.lengths, batch_size, rng, shuffle) for part in self.parts]
        if temperature != 1.0 and len(per_part) > 1:
            counts = np.array([len(b) for b in per_part], dtype=np.float64)
            share = counts ** (1.0 / float(temperature))
            wanted = np.maximum(1, np.round(share / share.sum() * counts.sum())).astype(int)
            per_part = [self._resized(b, int(n), part, batch_size, rng, shuffle)
                        for b, n, part in zip(per_part, wanted, self.parts)]
        out = [(part, idx) for part, batches in zip(self.parts, per_part) for idx in batches]
        if shuffle and len(self.parts) > 1:  # (one part's batches are already in random order)
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    @staticmethod
    def _resized(batches, n, part, batch_size, rng, shuffle):
        while len(batches) < n:
            batches = batches + length_batches(part.lengths, batch_size, rng, shuffle)
        return batches[:n]

    def resample(self, tr, alpha):
        for part in self.parts:
            part.resample(tr, alpha)


def _has_labels(tr, name, target):
    tok = tr.tokenizers.get(name)
    return tok is None or bool((target[:, 1:] != tok.pad_id).any())


def _scale_of(loss_scale, name):
    return loss_scale.get(name, 0.0) if isinstance(loss_scale, dict) else loss_scale


def forward_batch(tr, src, targets, training, label_smoothing=0.0, loss_scale=1.0):
    """The encoder and every decoder with labels in the batch, forward and loss.

    Returns ({name: loss}, {name: stats}, pending): pending is what backward_batch needs (None
    unless training). loss_scale: one number, or {name: number} (a decoder scaled by 0 is skipped).
    """
    train_encoder = training and not tr.frozen_encoder
    mask = src == tr.encoder.pad_id
    memory = tr.encoder.forward(src, mask, training=train_encoder)
    pooled = None
    losses, stats, scales = {}, {}, {}
    for name, target in targets.items():
        scale = _scale_of(loss_scale, name)
        if scale == 0.0 or not _has_labels(tr, name, target):
            continue
        dec = tr.decoders[name]
        if dec.input_kind == "representation":
            pooled = pool(memory, mask) if pooled is None else pooled
            context, context_mask = pooled, None
        else:
            context, context_mask = memory, mask
        losses[name], stats[name] = dec.loss(context, context_mask, target, training=training,
                                             label_smoothing=label_smoothing)
        scales[name] = scale
    pending = (memory, mask, train_encoder, scales) if training else None
    return losses, stats, pending


def backward_batch(tr, pending):
    """Back through the decoders run by forward_batch (in its order), then the encoder unless frozen."""
    memory, mask, train_encoder, scales = pending
    dmemory = np.zeros_like(memory) if train_encoder else None
    for name, scale in scales.items():
        dec = tr.decoders[name]
        # decoders of other kinds may take no loss_scale: it is passed only when it scales
        dcontext = dec.backward_loss() if scale == 1.0 else dec.backward_loss(loss_scale=scale)
        if train_encoder:
            dmemory += pool_backward(dcontext, mask) if dec.input_kind == "representation" else dcontext
    if train_encoder:
        tr.encoder.backward(dmemory)


def total_loss(losses, loss_scale=1.0):
    """The decoders' losses summed, each times its scale (a plain sum when nothing is scaled)."""
    if isinstance(loss_scale, dict) or loss_scale != 1.0:
        return sum(value * _scale_of(loss_scale, name) for name, value in losses.items())
    return sum(losses.values())


def batch_loss(tr, src, targets, training, label_smoothing=0.0):
    """Forward (and, when training, backward) over one batch; returns ({name: loss}, {name: stats})."""
    losses, stats, pending = forward_batch(tr, src, targets, training, label_smoothing)
    if training:
        backward_batch(tr, pending)
    return losses, stats


def teacher_forced_scores(tr, src, targets, batch_size=128):
    """Mean loss (summed over decoders) and next-token accuracy with the true prefix, no dropout."""
    return scores_on(tr, EncodedPairs(tr, src, targets, "evaluate"), batch_size)


def scores_on(tr, data, batch_size=128):
    total_loss, weight, correct, count = 0.0, 0, 0, 0
    parts = data.parts if isinstance(data, TrainingData) else [data]
    for part, idx in ((p, i) for p in parts for i in length_batches(p.lengths, batch_size, None, shuffle=False)):
        s, t = part.batch(tr, idx)
        losses, stats = batch_loss(tr, s, t, training=False)
        total_loss += sum(losses.values()) * len(idx)
        weight += len(idx)
        correct += sum(st.get("correct", 0) for st in stats.values())
        count += sum(st.get("count", 0) for st in stats.values())
    return {"loss": total_loss / max(weight, 1), "token_accuracy": correct / max(count, 1)}


def default_optimizer(lr, warmup, clip_norm):
    """Adam(lr) with `warmup` steps of inverse-square-root warm-up and global-norm clipping."""
    from fastnet import optimizers, schedules

    return optimizers.Adam(lr, schedule=schedules.InverseSqrt(warmup_steps=warmup), clip_norm=clip_norm)


def _check_callbacks(callbacks):
    from fastnet.callbacks import Callback

    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be fastnet Callback instances, got {type(cb).__name__}")
    return callbacks


class WeightAverage:
    """An exponential moving average of a store's weights: average += (1 - decay) * (weights - average).

    The decay ramps up as min(decay, (1 + t) / (10 + t)) over the first updates, so the average
    does not remember the random initial weights for long."""

    def __init__(self, data, decay):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"ema must be a decay in (0, 1), e.g. 0.999, got {decay!r}")
        self.decay = float(decay)
        self.average = data.copy()
        self.updates = 0

    def update(self, data):
        self.updates += 1
        rate = 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        self.average += self.average.dtype.type(rate) * (data - self.average)


class _Evaluated:
    """Inside the block the store holds the weights being evaluated (the average when there is one)."""

    def __init__(self, store, average):
        self.store, self.average, self.raw = store, average, None

    def __enter__(self):
        if self.average is not None:
            self.raw = self.store.data.copy()
            self.store.data[...] = self.average.average
        return self

    def __exit__(self, *exc):
        if self.raw is not None:
            self.store.data[...] = self.raw
        return False


def validation_chrf(tr, validation_texts, batch_size=256):
    """{name: chrF} of greedy translations of each decoder's validation sources."""
    from fastnet.seq2seq import metrics

    src, refs = validation_texts
    out = {}
    for name, references in refs.items():
        sources = src[name] if isinstance(src, dict) else src
        kept = [(s, r) for s, r in zip(sources, references) if r is not None]
        hyps = tr.translate([s for s, _ in kept], to=name, batch_size=batch_size, truncate=True)
        out[name] = metrics.chrf(hyps, [r for _, r in kept])
    return out


def _check_fit_args(epochs, batch_size, max_minutes, steps_per_epoch, keep_best, validation_data):
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    positive_int(steps_per_epoch, "steps_per_epoch", allow_none=True)
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be positive or None, got {max_minutes!r}")
    if keep_best not in (None, "val_chrf", "val_loss"):
        raise ValueError(f"keep_best must be None, 'val_chrf' or 'val_loss', got {keep_best!r}")
    if keep_best is not None and validation_data is None:
        raise ValueError(f"keep_best={keep_best!r} needs validation_data")
    if keep_best == "val_chrf":
        from fastnet.seq2seq import metrics

        metrics.sacrebleu_module()  # before any training: chrF comes from sacrebleu


def _batch_stream(tr, data, batch_size, shuffle, sample_alpha, temperature):
    """Batches forever: pass after pass over the data, re-segmented before each pass when sampling."""
    first = True
    while True:
        if sample_alpha and not first:
            data.resample(tr, sample_alpha)
        first = False
        yield from data.batches(int(batch_size), tr.rng, shuffle, temperature)


class _Best:
    """The weights of the epoch with the best validation score, kept aside."""

    def __init__(self, metric):
        self.metric, self.value, self.weights, self.epoch = metric, None, None, None

    def consider(self, epoch, logs, store):
        if self.metric is None or self.metric not in logs:
            return
        value = logs[self.metric]
        better = self.value is None or (value > self.value if self.metric == "val_chrf" else value < self.value)
        if better:
            self.value, self.epoch, self.weights = value, epoch, store.data.copy()


def fit_translator(tr, src, targets, epochs, batch_size, validation_data, callbacks, verbose, max_minutes,
                   lr, warmup, label_smoothing, clip_norm, optimizer, shuffle, steps_per_epoch=None, ema=None,
                   keep_best=None, sample_alpha=None, language_temperature=1.0):
    from fastnet.history import History

    _check_fit_args(epochs, batch_size, max_minutes, steps_per_epoch, keep_best, validation_data)
    data = TrainingData(tr, src, targets, "fit")
    validation = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise ValueError("validation_data must be (sources, {decoder name: references})")
        validation = TrainingData(tr, validation_data[0], validation_data[1], "validation_data")
    callbacks = _check_callbacks(callbacks)
    names = data.names
    _optimizer_for(tr, names, optimizer, lr, warmup, clip_norm, len(data), batch_size)
    average = tr.weight_average = _weight_average(tr, ema)  # callbacks may read the running average
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * float(max_minutes)
    if not float(language_temperature) >= 1.0:
        raise ValueError(f"language_temperature must be >= 1 (1 = in proportion to the data), got "
                         f"{language_temperature!r}")
    stream = _batch_stream(tr, data, batch_size, shuffle, sample_alpha, language_temperature)
    steps = steps_per_epoch or len(data.batches(int(batch_size), np.random.default_rng(0), False))
    history, best = History(), _Best(keep_best)
    tr.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(tr)
    logs = {}
    try:
        for _ in range(epochs):
            epoch = tr.epochs_trained
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            logs = _train_epoch(tr, stream, steps, average, label_smoothing, callbacks, verbose, epoch, deadline,
                                len(data) if steps_per_epoch is None else None)
            tr.trained.update(names)
            if validation is not None:
                with _Evaluated(tr.store, average):
                    logs.update(_validation_logs(tr, validation, validation_data, keep_best == "val_chrf"))
                    best.consider(epoch, logs, tr.store)
            tr.epochs_trained += 1
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
        _settle_weights(tr, average, best)
        for cb in callbacks:
            cb.on_train_end(logs)
    return history


def _validation_logs(tr, validation, validation_data, with_chrf):
    val = scores_on(tr, validation)
    logs = {"val_loss": val["loss"], "val_token_accuracy": val["token_accuracy"]}
    if with_chrf:
        per_language = validation_chrf(tr, validation_data)
        logs["val_chrf"] = float(np.mean(list(per_language.values())))
        if len(per_language) > 1:
            logs.update({f"val_chrf_{name}": value for name, value in per_language.items()})
    return logs


def _weight_average(tr, ema):
    """The running average of this training (continued by a later fit on the same store), or None.
    A later fit starts from the raw weights the last one reached, not from the average it left."""
    state = getattr(tr, "_average_state", None)
    if ema is None:
        return None
    if state is not None and state[0] is tr.store and state[1].decay == float(ema):
        tr.store.data[...] = state[2]
        return state[1]
    return WeightAverage(tr.store.data, ema)


def _settle_weights(tr, average, best):
    """After training the model holds what is evaluated and saved: the best validation epoch's weights,
    else the average, else the last weights."""
    if average is not None:
        tr._average_state = (tr.store, average, tr.store.data.copy())
        tr.store.data[...] = average.average
    if best.weights is not None:
        tr.store.data[...] = best.weights
        tr.best_epoch = {"epoch": best.epoch, best.metric: best.value}


def _optimizer_for(tr, names, optimizer, lr, warmup, clip_norm, n, batch_size):
    """Reuse the optimizer (Adam's moments, the schedule's step) when fit continues the same training."""
    key = (tuple(names), tr.frozen_encoder, id(tr.store))
    state = tr._training_state
    if optimizer is None and state is not None and state[0] == key:
        tr.optimizer = state[1]
        return state[1]
    if optimizer is None:
        steps_per_epoch = -(-n // int(batch_size))
        warmup = warmup or max(50, min(4000, 2 * steps_per_epoch))
    optimizer = tr.use_optimizer(optimizer, lr=lr, warmup=warmup, clip_norm=clip_norm)
    tr._training_state = (key, optimizer)
    return optimizer


def _train_epoch(tr, stream, steps, average, label_smoothing, callbacks, verbose, epoch, deadline, n_sentences):
    bar = None
    if verbose == 1:
        from tqdm.auto import tqdm

        total, unit = (n_sentences, "sentence") if n_sentences else (steps, "batch")
        bar = tqdm(total=total, unit=unit, desc=f"epoch {epoch + 1}", leave=True, dynamic_ncols=True)
    start = time.perf_counter()
    total_loss, seen, correct, count = 0.0, 0, 0, 0
    try:
        for step in range(steps):
            part, idx = next(stream)
            try:
                loss, stats = train_step(tr, part.batch(tr, idx), label_smoothing=label_smoothing)
            except FloatingPointError as exc:  # no step on it: the weights stay good
                raise FloatingPointError(f"{exc} at epoch {epoch + 1}, step {step + 1}; training stopped. "
                                         f"Try a smaller learning rate") from None
            if average is not None:
                average.update(tr.store.data)
            total_loss += loss * len(idx)
            seen += len(idx)
            correct += sum(st.get("correct", 0) for st in stats.values())
            count += sum(st.get("count", 0) for st in stats.values())
            for cb in callbacks:
                cb.on_batch_end(step, {"loss": loss, "batch_size": len(idx)})
            if bar is not None:
                bar.update(len(idx) if n_sentences else 1)
                if step % 8 == 0:
                    bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        if bar is not None:
            bar.close()
    return {"loss": total_loss / max(seen, 1), "token_accuracy": correct / max(count, 1),
            "time": time.perf_counter() - start}
