"""Data-parallel training on MPI: every rank trains on its shard of each global batch.

    mpiexec -n 2 python train.py        # train.py calls fastnet.distributed.fit(net, X, y, ...)

Needs mpi4py and an MPI library (`pip install "fastnet[mpi]"`: the mpich wheel provides one).
Every rank holds the same data and the same network; rank 0's initial weights are broadcast,
every global batch (the same shuffled order on every rank, from `seed`) is split into one
contiguous part per rank, and the flat gradient buffer is averaged with one Allreduce per
step, weighted by the part sizes, so the update equals one rank's update on the whole batch
(up to float32 rounding). Rank 0 alone writes the checkpoint and prints the log.

Across hosts the same script runs with a host file: `mpiexec -f hosts -n 4 python train.py`
(MPICH's Hydra; each host needs the same Python environment and the data at the same path).
If a rank dies, the MPI launcher terminates the others and exits with the dead rank's status.
"""
import math
import time

import numpy as np


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
    net.optimizer.step()
    return comm.allreduce(float(loss) * weight, op=MPI.SUM)


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
