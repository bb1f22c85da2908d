"""Pictures for people: training curves, representations as dots, generated pictures.

Needs the "plot" extra (matplotlib and Pillow): ``pip install "fastnet[plot]"``.
They are imported only when a function here draws, so ``import fastnet``
never pays for them. Every function writes a PNG atomically (a temporary
file in the same folder, then a rename) and returns its path.

    fn.plot.plot_history(hist, "loss.png")                # or hist.plot("loss.png")
    fn.plot.representations(tr, sentences, "dots.png", to_csv="dots.csv")
    fn.plot.pictures(tr.draw(texts), texts, "grid.png")
"""
import csv
import math

import numpy as np

from fastnet.io import atomic_write, check_writable

__all__ = ["plot_history", "overfitting_epoch", "representations", "representations_to_csv",
           "pca_2d", "pca_basis", "pictures", "pyplot"]

_INSTALL_HINT = 'fastnet.plot needs matplotlib and Pillow: pip install "fastnet[plot]"'


# ---------------------------------------------------------------- plumbing
def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no window), or a clear ImportError."""
    try:
        import matplotlib
        import PIL  # noqa: F401  (Pillow writes the PNGs)
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save_figure(fig, path, dpi=100):
    """Write the figure as PNG through a temporary file and a rename, then close it."""
    plt = pyplot()
    try:
        with atomic_write(path) as handle:
            fig.savefig(handle, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------- history
def _history_dict(history):
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise TypeError(f"expected a History or a dict of per-epoch lists, got {type(history).__name__}")
    if not logs.get("loss"):
        raise ValueError("the history has no 'loss' values to plot (was the model trained?)")
    return {key: [float(v) for v in values] for key, values in logs.items()}


def overfitting_epoch(history):
    """Epoch index (0-based) where validation loss turned up while training loss kept falling.

    That is the epoch of the lowest validation loss, if later epochs have a
    higher validation loss and a lower training loss. None when there is no
    validation loss or no such turn.
    """
    logs = _history_dict(history)
    val, train = logs.get("val_loss"), logs["loss"]
    if not val or len(val) < 2:
        return None
    best = int(np.argmin(val))
    last = len(val) - 1
    if best < last and val[last] > val[best] and train[last] < train[best]:
        return best
    return None


def _metric_names(logs, metric):
    if metric is not None:
        if metric not in logs:
            raise ValueError(f"metric {metric!r} is not in the history (it has {sorted(logs)})")
        return metric
    candidates = [k for k in logs if k != "loss" and not k.startswith("val_") and k != "lr"]
    return candidates[0] if candidates else None


def plot_history(history, path, metric=None, title="Training"):
    """Loss (and one metric) per epoch, training and validation, as a PNG.

    history: a History (uses its .history dict) or a dict like
    {"loss": [...], "val_loss": [...], "accuracy": [...], "val_accuracy": [...]}.
    The overfitting point (see overfitting_epoch) is marked with a dashed line.
    """
    logs = _history_dict(history)
    metric = _metric_names(logs, metric)
    path = check_writable(path)
    plt = pyplot()
    panels = [("loss", "loss")] + ([(metric, metric)] if metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    turn = overfitting_epoch(logs)
    for ax, (key, label) in zip(axes[0], panels):
        _plot_curve(ax, logs, key, label, turn)
    fig.suptitle(title)
    fig.tight_layout()
    return _save_figure(fig, path)


def _plot_curve(ax, logs, key, label, turn):
    epochs = np.arange(1, len(logs[key]) + 1)
    ax.plot(epochs, logs[key], marker="o", markersize=3, label=f"training {label}")
    val_key = "val_" + key
    if logs.get(val_key):
        ax.plot(np.arange(1, len(logs[val_key]) + 1), logs[val_key], marker="o", markersize=3,
                label=f"validation {label}")
    if turn is not None:
        ax.axvline(turn + 1, color="crimson", linestyle="--", linewidth=1)
        ax.annotate("overfitting starts", xy=(turn + 1, ax.get_ylim()[1]), xytext=(4, -14),
                    textcoords="offset points", color="crimson", fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()


# ---------------------------------------------------------------- representations
def pca_basis(vectors):
    """The centre and the two main directions of row vectors: (mean (d,), directions (d, 2)), float64.

    Centre the rows, take the covariance (a d x d matmul on our kernels),
    keep the eigenvectors of the two largest eigenvalues. Each direction's
    sign is fixed (largest coefficient positive) so the picture does not
    flip between runs. Project any vector v with (v - mean) @ directions,
    which is how the served map places a new sentence among fixed ones.
    """
    from fastnet import ops

    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, d) array of vectors, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("representation vectors contain NaN or infinity")
    mean = x.mean(axis=0)
    centred = np.ascontiguousarray(x - mean)
    cov = ops.matmul(centred, centred, trans_a=True) / max(x.shape[0] - 1, 1)
    values, vecs = np.linalg.eigh(cov)
    top = vecs[:, np.argsort(values)[::-1][:2]]
    if top.shape[1] < 2:  # d == 1: the second direction does not exist
        top = np.hstack([top, np.zeros((top.shape[0], 2 - top.shape[1]))])
    signs = np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(2)])
    signs[signs == 0] = 1.0
    return mean, top * signs


def pca_2d(vectors):
    """Project row vectors onto their two main directions (see pca_basis): (N, 2) float64."""
    mean, directions = pca_basis(vectors)
    return (np.asarray(vectors, dtype=np.float64) - mean) @ directions


def _sentences(sentences):
    if isinstance(sentences, str):
        raise TypeError("give a list of sentences, not one string")
    sentences = list(sentences)
    if not sentences:
        raise ValueError("the sentence list is empty: give at least one sentence to plot")
    bad = [s for s in sentences if not isinstance(s, str)]
    if bad:
        raise TypeError(f"sentences must be strings, got {bad[0]!r}")
    return sentences


def _projected(model, sentences):
    if not hasattr(model, "represent"):
        raise TypeError(f"{type(model).__name__} has no represent(sentences); give a Translator")
    reps = np.asarray(model.represent(sentences))
    if reps.ndim != 2 or reps.shape[0] != len(sentences):
        raise ValueError(f"represent() returned shape {reps.shape} for {len(sentences)} sentences")
    return pca_2d(reps), reps.shape[1]


def representations_to_csv(model, sentences, path):
    """Write sentence, x, y (the 2-D PCA projection of each representation) as CSV."""
    sentences = _sentences(sentences)
    path = check_writable(path)
    points, _ = _projected(model, sentences)
    _write_points_csv(sentences, points, path)
    return path


def _write_points_csv(sentences, points, path):
    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "x", "y"])
        for sentence, (px, py) in zip(sentences, points):
            writer.writerow([sentence, f"{px:.6g}", f"{py:.6g}"])


def _label_shifts(points):
    """How many earlier points sit (nearly) on each point: their labels are stacked, not overprinted."""
    span = max(float(np.ptp(points)) if points.size else 0.0, 1e-12)
    shifts = []
    for i, point in enumerate(points):
        near = np.linalg.norm(points[:i] - point, axis=1) < 0.04 * span
        shifts.append(int(near.sum()))
    return shifts


def representations(model, sentences, path, to_csv=None, title=None):
    """The sentences' representations as labelled dots in 2-D (PCA), as a PNG.

    model: anything with represent(sentences) -> (N, d), e.g. a Translator.
    to_csv: also write the projected points to this CSV path.
    Sentences close in meaning should land close together.
    """
    sentences = _sentences(sentences)
    path = check_writable(path)
    if to_csv is not None:
        to_csv = check_writable(to_csv)
    points, d_model = _projected(model, sentences)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.scatter(points[:, 0], points[:, 1], s=30, c=np.arange(len(sentences)), cmap="viridis")
    for sentence, (px, py), shift in zip(sentences, points, _label_shifts(points)):
        ax.annotate(sentence, (px, py), xytext=(4, 3 - 10 * shift), textcoords="offset points", fontsize=8)
    ax.set_xlabel("first principal direction")
    ax.set_ylabel("second principal direction")
    ax.set_title(title or f"Sentence representations ({d_model} numbers each) seen in 2-D")
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    fig.tight_layout()
    _save_figure(fig, path)
    if to_csv is not None:
        _write_points_csv(sentences, points, to_csv)
    return path


# ---------------------------------------------------------------- pictures
def pictures(images, captions, path, columns=None, title=None):
    """A grid of pictures (N, H, W, 3), uint8 or floats in [0, 1], each with its caption."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"pictures must have shape (N, H, W, 3) with N >= 1, got {images.shape}")
    captions = [captions] if isinstance(captions, str) else list(captions)
    if len(captions) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} pictures but {len(captions)} captions")
    if images.dtype != np.uint8:
        from fastnet.image import pictures_to_float, to_uint8
        images = to_uint8(pictures_to_float(images))
    path = check_writable(path)
    plt = pyplot()
    n = images.shape[0]
    columns = columns or min(n, 4)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            picture = images[i] if images.shape[-1] == 3 else images[i, :, :, 0]
            ax.imshow(picture, interpolation="nearest", cmap=None if images.shape[-1] == 3 else "gray")
            ax.set_title(_wrap(captions[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_figure(fig, path)


def _wrap(caption, width=24):
    """Break a caption into lines of about `width` characters at spaces."""
    lines, line = [], ""
    for word in str(caption).split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)
