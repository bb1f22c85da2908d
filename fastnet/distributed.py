"""Data-parallel training on MPI: every rank trains on its shard of each global batch.

    mpiexec -n 2 python train.py        # train.py calls fastnet.distributed.fit(net, X, y, ...) (a Network
                                        # or an ImageDecoder) or fit_translator(tr, src, {"sv": ...}, ...)
    mpiexec -n 2 python -c "from fastnet.distributed import train_on_pairs; \\
        train_on_pairs('eng-swe.tsv', 'tr.safetensors')"

Needs mpi4py and an MPI library (`pip install "fastnet[mpi]"`: the mpich wheel provides one).
Every rank holds the same data and the same network; rank 0's initial weights are broadcast,
every global batch (the same shuffled order on every rank, from `seed`) is split into one
contiguous part per rank, and each rank runs the models' own training step
(fastnet.step.train_step: the public forward_loss / backward / gradients / apply_update)
with its loss scaled by its share of the batch (for a translator: of each decoder's target
tokens or pixels) and one Allreduce of the flat gradient buffer before the checks and the
update, so the update equals one rank's update on the whole batch (up to float32 rounding)
and every rank decides alike whether the step is applied. Rank 0 alone writes the
checkpoint and prints the log.

Across hosts the same script runs with a host file: `mpiexec -f hosts -n 4 python train.py`
(MPICH's Hydra; each host needs the same Python environment and the data at the same path).
If a rank dies, the MPI launcher terminates the others and exits with the dead rank's status.
"""
import time

import numpy as np

from fastnet.checks import positive_int
from fastnet.seq2seq import training
from fastnet.step import train_step


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


def _check_same_model(model, comm):
    sizes = comm.allgather(int(model.store.data.size))
    if len(set(sizes)) != 1:
        raise ValueError(f"the ranks hold models of different sizes (parameters per rank: {sizes}); every rank "
                         f"must build the same architecture")


def broadcast_weights(model, comm=None, root=0):
    """Give every rank `root`'s weights (and reset nothing else)."""
    comm = comm or world()
    _check_same_model(model, comm)
    comm.Bcast(model.store.data, root=root)


def _shard(lo, hi, rank, size):
    """Rank's contiguous part of global batch rows lo..hi-1 (sizes differ by at most one row)."""
    bounds = np.linspace(lo, hi, size + 1).round().astype(np.int64)
    return int(bounds[rank]), int(bounds[rank + 1])


def _allreduce(comm, MPI):
    """The step's `reduce`: sum the ranks' (already share-weighted) gradients and losses, in place."""
    def reduce(loss, gradients):
        comm.Allreduce(MPI.IN_PLACE, gradients, op=MPI.SUM)
        return comm.allreduce(float(loss), op=MPI.SUM)
    return reduce


def _check_counts(epochs, batch_size, size, unit):
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    if batch_size < size:
        raise ValueError(f"batch_size={batch_size} is smaller than the {size} ranks: every rank needs {unit}")


def _check_gradient_optimizer(optimizer):
    if getattr(optimizer, "requires_closure", False):  # refused before it replaces the model's optimizer
        raise ValueError(f"{type(optimizer).__name__} needs a loss closure; data-parallel training needs a "
                         f"gradient optimizer (SGD, Adam, ...)")


def fit(model, X, y, epochs=1, batch_size=32, shuffle=True, seed=0, comm=None, checkpoint=None, verbose=1,
        print=print, optimizer=None):
    """Train `model` (a Network or an ImageDecoder) data-parallel over the ranks of `comm`; returns the
    per-epoch losses.

    batch_size is the global batch: each step every rank takes its ~batch_size/size rows of it.
    optimizer: replaces the model's (default: the one it has; Adam for a fresh ImageDecoder).
    checkpoint: a path rank 0 saves the model to after every epoch (atomically).
    """
    MPI = _mpi()
    comm = comm or world()
    rank, size = comm.Get_rank(), comm.Get_size()
    _check_counts(epochs, batch_size, size, "a row")
    _check_gradient_optimizer(optimizer if optimizer is not None else getattr(model, "optimizer", None))
    _check_gradient_optimizer(model.use_optimizer(optimizer))  # (a name given may be any optimizer)
    X, y = model.prepare_data(X, y)
    counts = comm.allgather(int(X.shape[0]))
    if len(set(counts)) != 1:
        raise ValueError(f"the ranks hold different data (rows per rank: {counts}); every rank loads the same "
                         f"dataset and trains on its shard of each batch")
    model.begin_training(X, y)
    broadcast_weights(model, comm)
    reduce = _allreduce(comm, MPI)
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
            try:
                # the loss is a mean over this rank's rows: scaled by their share of the global batch
                loss, _ = train_step(model, (X[idx], y[idx]) if b > a else None, loss_scale=(b - a) / (hi - lo),
                                     reduce=reduce)
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc} at epoch {epoch + 1} (rows {lo}..{hi - 1}); the step was not "
                                         f"applied") from None
            total += loss * (hi - lo)
        model.epochs_trained += 1
        losses.append(total / n)
        _end_epoch(model, rank, size, epoch, epochs, losses[-1], start, checkpoint, verbose, print)
    return losses


def _end_epoch(model, rank, size, epoch, epochs, loss, start, checkpoint, verbose, print):
    """Rank 0 alone saves the checkpoint and prints the log."""
    if rank != 0:
        return
    if checkpoint is not None:
        model.save(checkpoint)
    if verbose:
        print(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}  ({time.perf_counter() - start:.2f}s, "
              f"{size} rank(s))", flush=True)


# ---- translators -------------------------------------------------------------------------
def _loss_scales(tr, data, idx, part):
    """Each decoder's share of the batch's loss terms (its target tokens, or pixel values) in this rank's part;
    a decoder kind that does not say what its mean loss averages (no loss_units) is weighed by rows."""
    scales = {}
    for name, targets in data.targets.items():
        units = getattr(tr.decoders[name], "loss_units", len)
        whole = units(targets[idx])
        scales[name] = units(targets[part]) / whole if whole else 0.0
    return scales


def fit_translator(tr, src, targets, epochs=1, batch_size=32, lr=1e-3, warmup=100, clip_norm=1.0,
                   label_smoothing=0.0, optimizer=None, shuffle=True, seed=0, max_minutes=None, comm=None,
                   checkpoint=None, verbose=1, print=print):
    """Train a Translator (text and pixel decoders alike) data-parallel over the ranks of `comm`; returns
    the per-epoch losses.

    optimizer: a fastnet optimizer; default Adam(lr) with `warmup` steps of inverse-square-root warm-up.
    max_minutes: a time budget, measured on rank 0, which tells every rank when to stop.

    Every rank passes the same sentences; batches of similar length (the same on every rank,
    from `seed`) are split by rows, and each decoder's gradient is weighted by the rank's share
    of that batch's loss terms (target tokens, pixel values), so the sum equals the one-rank
    gradient of the batch. Rank 0 saves the translator to `checkpoint` after every epoch and
    prints the log.
    """
    MPI = _mpi()
    comm = comm or world()
    rank, size = comm.Get_rank(), comm.Get_size()
    _check_counts(epochs, batch_size, size, "a sentence")
    data = training.EncodedPairs(tr, src, targets, "fit_translator")
    names = sorted(data.targets)
    counts = comm.allgather((len(data), int(tr.store.data.size)))
    if len(set(counts)) != 1:
        raise ValueError(f"the ranks hold different data or models ((sentences, parameters) per rank: {counts})")
    comm.Bcast(tr.store.data, root=0)
    tr.use_optimizer(optimizer, lr=lr, warmup=warmup, clip_norm=clip_norm)
    reduce = _allreduce(comm, MPI)
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * float(max_minutes)
    losses, stop = [], False
    for epoch in range(epochs):
        start = time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        total, seen = 0.0, 0
        for idx in training.length_batches(data.lengths, int(batch_size), rng, shuffle):
            a, b = _shard(0, len(idx), rank, size)
            part = idx[a:b]
            tr.begin_training(None, {name: data.targets[name][idx] for name in names})  # the whole batch
            batch = data.batch(tr, part) if len(part) else None  # a rank without rows adds zeros
            try:
                loss, _ = train_step(tr, batch, loss_scale=_loss_scales(tr, data, idx, part), reduce=reduce,
                                     label_smoothing=label_smoothing)
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc} at epoch {epoch + 1}; the step was not applied") from None
            total += loss * len(idx)
            seen += len(idx)
            if deadline is not None:  # rank 0's clock decides, so every rank stops after the same step
                stop = comm.bcast(time.monotonic() >= deadline if rank == 0 else None, root=0)
                if stop:
                    break
        tr.epochs_trained += 1
        tr.trained.update(names)
        losses.append(total / max(seen, 1))
        _end_epoch(tr, rank, size, epoch, epochs, losses[-1], start, checkpoint, verbose, print)
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
