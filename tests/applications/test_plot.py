"""fastnet.plot: training curves, representation dots, picture grids -- valid, non-blank PNGs."""
import csv
import io
import os
import sys

import numpy as np
import pytest

from fastnet import plot
from fastnet.datasets import toy_pictures
from fastnet.history import History
from fastnet.image import attribute_vectors

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png_with_content(path, min_side=100):
    data = open(path, "rb").read()
    assert data[:8] == PNG_SIGNATURE
    picture = Image.open(io.BytesIO(data))
    picture.load()
    assert picture.format == "PNG"
    assert min(picture.size) >= min_side, picture.size
    pixels = np.asarray(picture.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2, "the picture is blank"
    return pixels


class AttributeModel:
    """Anything with represent(sentences) can be plotted; here the hand-made attribute vectors."""

    def represent(self, sentences):
        return attribute_vectors(sentences)


SENTENCES = ["a big red circle on the left", "a big red circle on the right", "two small blue squares",
             "three small blue squares", "a cute orange cat", "a cute green cat at the top"]


# ---------------------------------------------------------------- history
def _overfitting_logs():
    return {"loss": [1.0, 0.6, 0.4, 0.3, 0.2, 0.1], "val_loss": [1.1, 0.7, 0.5, 0.55, 0.7, 0.9],
            "accuracy": [0.5, 0.7, 0.8, 0.85, 0.9, 0.95], "val_accuracy": [0.5, 0.65, 0.75, 0.74, 0.7, 0.68]}


def test_overfitting_epoch_is_where_validation_turns_up():
    assert plot.overfitting_epoch(_overfitting_logs()) == 2
    assert plot.overfitting_epoch({"loss": [3, 2, 1], "val_loss": [3, 2, 1]}) is None
    assert plot.overfitting_epoch({"loss": [3, 2, 1]}) is None
    # validation up but training up too: not overfitting, just a bad step
    assert plot.overfitting_epoch({"loss": [3, 2, 2.5], "val_loss": [3, 2, 2.6]}) is None


def test_plot_history_writes_a_png(tmp_path):
    path = plot.plot_history(_overfitting_logs(), tmp_path / "history.png")
    pixels = assert_png_with_content(path)
    # the overfitting marker is drawn in crimson (220, 20, 60)
    crimson = np.all(np.abs(pixels.astype(int) - [220, 20, 60]) < 40, axis=-1)
    assert crimson.sum() > 50


def test_history_plot_method_draws_through_plot_history(tmp_path):
    hist = History()
    for epoch, (loss, val) in enumerate(zip([1.0, 0.5, 0.3], [1.0, 0.6, 0.5])):
        hist.append(epoch, {"loss": loss, "val_loss": val})
    assert_png_with_content(hist.plot(tmp_path / "h.png"))


def test_plot_history_errors(tmp_path):
    with pytest.raises(ValueError, match="no 'loss'"):
        plot.plot_history({}, tmp_path / "h.png")
    with pytest.raises(ValueError, match="metric 'f1'"):
        plot.plot_history(_overfitting_logs(), tmp_path / "h.png", metric="f1")
    with pytest.raises(TypeError, match="History or a dict"):
        plot.plot_history([1, 2, 3], tmp_path / "h.png")


# ---------------------------------------------------------------- representations
def test_pca_2d_matches_the_svd_projection(rng):
    x = rng.standard_normal((30, 7)) @ np.diag([5.0, 3.0, 1, 0.5, 0.2, 0.1, 0.05])
    points = plot.pca_2d(x)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    for k in range(2):
        assert np.allclose(points[:, k], expected[:, k], atol=1e-8) or \
            np.allclose(points[:, k], -expected[:, k], atol=1e-8)
    np.testing.assert_array_equal(plot.pca_2d(x), points)  # same input, same signs
    assert plot.pca_2d(x[:1]).shape == (1, 2)


def test_representations_png_and_csv(tmp_path):
    model = AttributeModel()
    path = plot.representations(model, SENTENCES, tmp_path / "dots.png", to_csv=tmp_path / "dots.csv")
    assert_png_with_content(path)
    rows = list(csv.reader(open(tmp_path / "dots.csv", encoding="utf-8")))
    assert rows[0] == ["sentence", "x", "y"]
    assert [r[0] for r in rows[1:]] == SENTENCES
    points = np.array([[float(r[1]), float(r[2])] for r in rows[1:]])
    np.testing.assert_allclose(points, plot.pca_2d(model.represent(SENTENCES)), rtol=1e-5, atol=1e-6)
    only_csv = plot.representations_to_csv(model, SENTENCES[:3], tmp_path / "three.csv")
    assert len(list(csv.reader(open(only_csv, encoding="utf-8")))) == 4


def test_representations_errors(tmp_path):
    model = AttributeModel()
    with pytest.raises(ValueError, match="sentence list is empty"):
        plot.representations(model, [], tmp_path / "dots.png")
    with pytest.raises(ValueError, match="sentence list is empty"):
        plot.representations_to_csv(model, [], tmp_path / "dots.csv")
    with pytest.raises(TypeError, match="not one string"):
        plot.representations(model, "a red circle", tmp_path / "dots.png")
    with pytest.raises(TypeError, match="no represent"):
        plot.representations(object(), SENTENCES, tmp_path / "dots.png")


# ---------------------------------------------------------------- pictures
def test_pictures_grid_png(tmp_path):
    data = toy_pictures(6, seed=3)
    pixels = assert_png_with_content(plot.pictures(data.images, data.texts, tmp_path / "grid.png"))
    assert pixels.shape[1] > pixels.shape[0]  # 4 columns, 2 rows: wider than tall
    floats = plot.pictures(data.float_images()[:1], data.texts[:1], tmp_path / "one.png")
    assert_png_with_content(floats)


def test_pictures_errors(tmp_path):
    data = toy_pictures(3, seed=3)
    with pytest.raises(ValueError, match="3 pictures but 2 captions"):
        plot.pictures(data.images, data.texts[:2], tmp_path / "grid.png")
    with pytest.raises(ValueError, match=r"shape \(N, H, W, 3\)"):
        plot.pictures(data.images[:0], [], tmp_path / "grid.png")
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        plot.pictures(data.images.astype(np.float32), data.texts, tmp_path / "grid.png")


# ---------------------------------------------------------------- paths and the missing extra
@pytest.mark.parametrize("draw", [
    lambda p: plot.plot_history(_overfitting_logs(), p),
    lambda p: plot.representations(AttributeModel(), SENTENCES, p),
    lambda p: plot.pictures(toy_pictures(2, seed=0).images, ["a", "b"], p),
])
def test_unwritable_paths_fail_before_drawing(tmp_path, draw):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        draw(tmp_path / "no" / "such" / "folder" / "x.png")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        draw(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r'pip install "fastnet\[plot\]"'):
        plot.pictures(toy_pictures(1, seed=0).images, ["x"], tmp_path / "x.png")


def test_representations_of_a_translator(tmp_path):
    import fastnet

    data = toy_pictures(40, seed=0)
    tr = fastnet.Translator.build(data.texts, {"sv": data.sv}, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                  tokenizer="word", seed=0)
    path = plot.representations(tr, data.texts[:8], tmp_path / "dots.png", to_csv=tmp_path / "dots.csv")
    assert_png_with_content(path)
    assert len(list(csv.reader(open(tmp_path / "dots.csv", encoding="utf-8")))) == 9


def test_read_only_folder_is_refused(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod does not stop writes: ask os.access to say no.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="is not writable"):
        plot.pictures(toy_pictures(1, seed=0).images, ["x"], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_pictures_are_readable_by_others_like_any_new_file(tmp_path):
    path = plot.pictures(toy_pictures(1, seed=0).images, ["x"], tmp_path / "x.png")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
