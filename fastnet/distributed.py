"""Data-parallel training on MPI: every rank trains on its shard of each global batch.

    mpiexec -n 2 python train.py        # train.py calls fastnet.distributed.fit(net, X, y, ...)
                                        # or fit_translator(tr, src, {"sv": ...}, ...)
    mpiexec -n 2 python -c "from fastnet.distributed import train_on_pairs; \\
        train_on_pairs('eng-swe.tsv', 'tr.safetensors')"

Needs mpi4py and an MPI library (`pip install "fastnet[mpi]"`: the mpich wheel provides one).
Every rank holds the same data and the same network; rank 0's initial weights are broadcast,
every global batch (the same shuffled order on every rank, from `seed`) is split into one
contiguous part per rank, and the flat gradient buffer is averaged with one Allreduce per
step, weighted by the part sizes (for a translator: by each decoder's target tokens), so
the update equals one rank's update on the whole batch (up to float32 rounding). Rank 0
alone writes the checkpoint and prints the log.

Across hosts the same script runs with a host file: `mpiexec -f hosts -n 4 python train.py`
(MPICH's Hydra; each host needs the same Python environment and the data at the same path).
If a rank dies, the MPI launcher terminates the others and exits with the dead rank's status.
"""
import math
import time

import numpy as np

from fastnet import ops


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("fastnet.distributed needs mpi4py and an MPI library: pip install 'fastnet[mpi]'") from exc
    return MPI


def world():
    """The MPI communicator of all ranks (COMM_WORLD)."""
    return _mpi().COMM_WORLD


def rank_and_size(comm=None):
    comm = comm or world()
    return comm.Get_rank(), comm.Get_size()


def _check_same_model(net, comm):
    sizes = comm.allgather(int(net.store.data.size))
    if len(set(sizes)) != 1:
        raise ValueError(f"the ranks hold networks of different sizes (parameters per rank: {sizes}); every rank "
                         f"must build the same architecture")


def broadcast_weights(net, comm=None, root=0):
    """Give every rank `root`'s weights (and reset nothing else)."""
    comm = comm or world()
    _check_same_model(net, comm)
    comm.Bcast(net.store.data, root=root)


def _shard(lo, hi, rank, size):
    """Rank's contiguous part of global batch rows lo..hi-1 (sizes differ by at most one row)."""
    bounds = np.linspace(lo, hi, size + 1).round().astype(np.int64)
    return int(bounds[rank]), int(bounds[rank + 1])


def _step(net, x, y, weight, comm, MPI):
    """Forward and backward on this rank's rows, average gradients over ranks, update; returns the batch loss."""
    out = x
    for layer in net.layers:
        out = layer.forward(out, True)
    loss, grad = net.loss(out, y)
    net.store.grad.fill(0)
    for layer in net._reversed:
        grad = layer.backward(grad)
    # the loss is a mean over this rank's rows: weight by their share of the global batch, then sum
    net.store.grad *= weight
    comm.Allreduce(MPI.IN_PLACE, net.store.grad, op=MPI.SUM)
    total = comm.allreduce(float(loss) * weight, op=MPI.SUM)
    # Every rank now holds the same loss and gradients, so all decide alike: a non-finite loss
    # (reported by the caller) or gradient leaves the weights of the last good step.
    if not math.isfinite(total):
        return total
    if not math.isfinite(ops.sum_squares(net.store.grad)):
        raise FloatingPointError(f"a gradient became NaN or infinite (the loss was {total:.4g}); the step was "
                                 f"not applied")
    net.optimizer.step()
    return total


def fit(net, X, y, epochs=1, batch_size=32, shuffle=True, seed=0, comm=None, checkpoint=None, verbose=1,
        print=print):
    """Train `net` (a fastnet Network) data-parallel over the ranks of `comm`; returns the per-epoch losses.

    batch_size is the global batch: each step every rank takes its ~batch_size/size rows of it.
    checkpoint: a path rank 0 saves the network to after every epoch (atomically).
    """
    MPI = _mpi()
    comm = comm or world()
    rank, size = comm.Get_rank(), comm.Get_size()
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if net.optimizer.requires_closure:
        raise ValueError(f"{type(net.optimizer).__name__} needs a loss closure; data-parallel training needs a "
                         f"gradient optimizer (SGD, Adam, ...)")
    if batch_size < size:
        raise ValueError(f"batch_size={batch_size} is smaller than the {size} ranks: every rank needs a row")
    X, y = net._check_data(X, y)
    counts = comm.allgather(int(X.shape[0]))
    if len(set(counts)) != 1:
        raise ValueError(f"the ranks hold different data (rows per rank: {counts}); every rank loads the same "
                         f"dataset and trains on its shard of each batch")
    broadcast_weights(net, comm)
    n = X.shape[0]
    losses = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        total = 0.0
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            a, b = _shard(lo, hi, rank, size)
            idx = order[a:b]
            loss = _step(net, X[idx], y[idx], (b - a) / (hi - lo), comm, MPI)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at epoch {epoch + 1} (rows {lo}..{hi - 1})")
            total += loss * (hi - lo)
        net.epochs_trained += 1
        losses.append(total / n)
        if rank == 0:
            if checkpoint is not None:
                net.save(checkpoint)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}  ({time.perf_counter() - start:.2f}s, "
                      f"{size} rank(s))", flush=True)
    return losses


# ---- translators -------------------------------------------------------------------------
def _label_count(tr, name, ids):
    return int((ids[:, 1:] != tr.tokenizers[name].pad_id).sum())


def _translator_step(tr, data, part, weights, label_smoothing):
    """Forward/backward on this rank's sentences; each decoder's loss scaled by its share of the batch's tokens."""
    from fastnet.seq2seq.encoder import pool, pool_backward

    src, targets = data.batch(tr, part)
    train_encoder = not tr.frozen_encoder
    mask = src == tr.encoder.pad_id
    memory = tr.encoder.forward(src, mask, training=train_encoder)
    dmemory = np.zeros_like(memory) if train_encoder else None
    pooled, loss = None, 0.0
    for name, target in targets.items():
        if weights[name] == 0.0:  # no labelled token of this language in this rank's rows
            continue
        dec = tr.decoders[name]
        if dec.input_kind == "representation":
            pooled = pool(memory, mask) if pooled is None else pooled
            context, context_mask = pooled, None
        else:
            context, context_mask = memory, mask
        value, _ = dec.loss(context, context_mask, target, training=True, label_smoothing=label_smoothing)
        # the loss is a mean over this rank's tokens: scale its gradient to a share of the global mean
        dec._loss_cache *= weights[name]
        dcontext = dec.backward_loss()
        if train_encoder:
            dmemory += pool_backward(dcontext, mask) if dec.input_kind == "representation" else dcontext
        loss += value * weights[name]
    if train_encoder:
        tr.encoder.backward(dmemory)
    return loss


def fit_translator(tr, src, targets, epochs=1, batch_size=32, lr=1e-3, warmup=100, clip_norm=1.0,
                   label_smoothing=0.0, optimizer=None, shuffle=True, seed=0, max_minutes=None, comm=None,
                   checkpoint=None, verbose=1, print=print):
    """Train a Translator data-parallel over the ranks of `comm`; returns the per-epoch losses.

    optimizer: a fastnet optimizer; default Adam(lr) with `warmup` steps of inverse-square-root warm-up.
    max_minutes: a time budget, measured on rank 0, which tells every rank when to stop.

    Every rank passes the same sentences; batches of similar length (the same on every rank,
    from `seed`) are split by rows, and each decoder's gradient is weighted by the rank's share
    of that batch's target tokens, so the average equals the one-rank gradient of the batch.
    Rank 0 saves the translator to `checkpoint` after every epoch and prints the log.
    """
    from fastnet.seq2seq import training
    from fastnet.seq2seq.decoder import Decoder

    MPI = _mpi()
    comm = comm or world()
    rank, size = comm.Get_rank(), comm.Get_size()
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if batch_size < size:
        raise ValueError(f"batch_size={batch_size} is smaller than the {size} ranks: every rank needs a sentence")
    data = training.EncodedPairs(tr, src, targets, "fit_translator")
    names = sorted(data.targets)
    for name in names:
        if not isinstance(tr.decoders[name], Decoder):
            raise ValueError(f"decoder {name!r} is not a text decoder; distributed training handles text decoders")
    counts = comm.allgather((len(data), int(tr.store.data.size)))
    if len(set(counts)) != 1:
        raise ValueError(f"the ranks hold different data or models ((sentences, parameters) per rank: {counts})")
    comm.Bcast(tr.store.data, root=0)
    store = training._training_store(tr)
    optimizer = optimizer or training._default_optimizer(lr, warmup, clip_norm)
    optimizer.bind(store)
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * float(max_minutes)
    losses, stop = [], False
    for epoch in range(epochs):
        start = time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        total, seen = 0.0, 0
        for idx in training.length_batches(data.lengths, int(batch_size), rng, shuffle):
            a, b = _shard(0, len(idx), rank, size)
            part = idx[a:b]
            weights = {}
            for name in names:
                whole = _label_count(tr, name, data.targets[name][idx])
                weights[name] = _label_count(tr, name, data.targets[name][part]) / whole if whole else 0.0
            store.zero_grad()
            loss = _translator_step(tr, data, part, weights, label_smoothing) if len(part) else 0.0
            comm.Allreduce(MPI.IN_PLACE, store.grad, op=MPI.SUM)
            optimizer.step()
            loss = comm.allreduce(loss, op=MPI.SUM)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at epoch {epoch + 1}")
            total += loss * len(idx)
            seen += len(idx)
            if deadline is not None:  # rank 0's clock decides, so every rank stops after the same step
                stop = comm.bcast(time.monotonic() >= deadline if rank == 0 else None, root=0)
                if stop:
                    break
        tr.epochs_trained += 1
        tr.trained.update(names)
        losses.append(total / max(seen, 1))
        if rank == 0:
            if checkpoint is not None:
                tr.save(checkpoint)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}  ({time.perf_counter() - start:.2f}s, "
                      f"{size} rank(s))", flush=True)
        if stop:
            break
    return losses


def launched_by_mpi():
    """True when this process is one of several ranks started by mpiexec/mpirun (MPICH or Open MPI)."""
    import os

    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return True
    return False


def train_on_pairs(path, out, minutes=10.0, epochs=10_000, seed=0, max_words=12, batch_size=64, lr=1e-3,
                   comm=None, verbose=1, print=print, **arch):
    """`fastnet train-translator` on every rank: train on a pair file data-parallel, rank 0 saves `out`.

    Same split and architecture as fastnet.demo.train_on_pairs (held-out ~10% by source
    sentence; arch overrides d_model, n_heads, n_layers, d_ff, dropout). Returns the held-out
    scores on rank 0 and None on the other ranks.
    """
    from fastnet.datasets import load_pairs
    from fastnet.demo.translation import split_by_source, target_name_from_path
    from fastnet.seq2seq.translator import Translator

    comm = comm or world()
    rank, size = comm.Get_rank(), comm.Get_size()
    src, tgt = load_pairs(path, max_len=max_words)
    if not src:
        raise ValueError(f"{path}: no sentence pairs of at most {max_words} words")
    name = target_name_from_path(path)
    train_src, train_tgt, test_src, test_refs = split_by_source(src, tgt, 0.1, seed)
    settings = dict(d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.1)
    settings.update(arch)
    tr = Translator.build(train_src, {name: train_tgt}, tokenizer="word", min_freq=2, seed=seed, **settings)
    fit_translator(tr, train_src, {name: train_tgt}, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                   max_minutes=0.92 * float(minutes), comm=comm, checkpoint=out, verbose=verbose, print=print)
    if rank != 0:
        return None
    scores = tr.evaluate(test_src, test_refs, to=name)
    if verbose:
        print(f"held-out {name}: chrF {scores['chrf']:.1f}  BLEU {scores['bleu']:.1f}  exact match "
              f"{scores['exact_match']:.1%}  ({len(test_src)} sentences, trained on {size} rank(s))", flush=True)
    return {**scores, "target": name, "n_train": len(train_src), "n_test": len(test_src),
            "epochs": tr.epochs_trained, "ranks": size, "path": str(out)}
