"""The demo's last part: the representation that became Swedish and Spanish becomes pictures.

    from fastnet.demo import demo_pictures
    result = demo_pictures(out_dir="pictures", translator=tr, minutes=1.5)
    result["pictures"]          # path of the grid: drawn vs true, held-out descriptions

A pixel decoder learns, from the package's own toy pictures, to draw from the
Translator's (frozen) representation of a description. It is then asked to
draw descriptions whose colour and shape were never drawn together in
training ("a blue circle" when every circle it saw was another colour).
"""
import builtins
import os

import numpy as np

from fastnet import plot
from fastnet.datasets import toy_pictures, toy_translations
from fastnet.demo.translation import DEMO_ARCH
from fastnet.image import ImageDecoder, draw, mean_picture_baseline, train_pixels
from fastnet.seq2seq import Translator

DEFAULT_OUT_DIR = "fastnet-pictures"
# Sentences for the "dots in a chart" picture, and the fixed reference points of
# the served page's map: cats, circles, squares and triangles of several sizes
# and colours (so the shape word, not one shared colour, tells them apart), and
# sentences from the translation story for contrast.
DOTS_SENTENCES = [
    "a small orange cat", "a big brown cat", "a cute red cat", "two small pink cats", "a big yellow cat at the top",
    "a big blue circle on the left", "a small purple circle", "two red circles", "three green circles at the bottom",
    "a big blue square on the right", "a small yellow square", "two orange squares",
    "two yellow triangles at the top", "a small purple triangle",
    "cats are cute", "the dog is big", "dogs sleep", "the old dogs are heavy", "we see two red horses",
]


def demo_pictures(print=builtins.print, out_dir=None, translator=None, minutes=1.5, seed=0,
                  n_train=3000, n_test=300, n_drawn=8):
    """Train a pixel decoder briefly, draw held-out descriptions, save the plots; return what happened.

    translator: a trained Translator whose encoder knows the picture words
    (train it on toy_translations(..., pictures=0.3) for instance). None
    trains a small one on such data first (about a third of `minutes`).
    Returns a dict: paths ("pictures", "representations", "representations_csv",
    "history_plot"; None when matplotlib is missing), "mse" on held-out
    descriptions, "baseline_mse" (predicting the mean training picture),
    "ratio", "translator", "decoder" (its name there), "history".
    """
    out_dir = os.path.abspath(out_dir or DEFAULT_OUT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    train = toy_pictures(n_train, seed=seed, split="train")
    val = toy_pictures(max(n_test // 2, 1), seed=seed + 2, split="train")
    test = toy_pictures(n_test, seed=seed + 1, split="test")
    if translator is None:
        translator = _small_translator(minutes / 3, seed, print)
        minutes = minutes * 2 / 3
    print(f"Teaching a pixel decoder to draw from the encoder's representation "
          f"({len(train.texts)} toy pictures, about {minutes:g} minute(s))...")
    name = "pixels" if "pixels" not in translator.decoders else "pixels_demo"
    decoder = ImageDecoder(translator.d_model, size=train.images.shape[1], seed=seed)
    history = train_pixels(translator, train.texts, train.images, decoder=decoder, name=name,
                           epochs=200, minutes=minutes, verbose=False, seed=seed,
                           validation_data=(val.texts, val.images))
    mse = decoder.evaluate(translator.represent(test.texts), test.images)
    baseline = mean_picture_baseline(train.images, test.images)
    print(f"  held-out descriptions (colour and shape never drawn together in training): "
          f"pixel error {mse:.4f} vs {baseline:.4f} for the mean picture ({mse / baseline:.0%} of it)")
    paths = _save_plots(translator, name, test, history, out_dir, n_drawn, print)
    return dict(paths, mse=mse, baseline_mse=baseline, ratio=mse / baseline, translator=translator,
                decoder=name, history=history)


def _small_translator(minutes, seed, print):
    data = toy_translations(2000, seed=seed, split="train", pictures=0.4)
    print(f"Training a small English -> Swedish + Spanish translator whose sentences include "
          f"picture descriptions (about {minutes:g} minute(s))...")
    tr = Translator.build(data.en, {"sv": data.sv, "es": data.es}, seed=seed, **DEMO_ARCH)
    tr.fit(data.en, {"sv": data.sv, "es": data.es}, epochs=60, batch_size=32, lr=3e-3, warmup=100,
           max_minutes=minutes, verbose=0)
    return tr


def _pick_drawn(test, n):
    """Up to n held-out descriptions, one per (colour, shape) first, so the grid shows variety."""
    chosen, seen = [], set()
    for i, attributes in enumerate(test.attributes):
        key = (attributes["colour"], attributes["shape"])
        if key not in seen:
            seen.add(key)
            chosen.append(i)
    rest = [i for i in range(len(test.texts)) if i not in chosen]
    return (chosen + rest)[:n]


def _save_plots(translator, name, test, history, out_dir, n_drawn, print):
    paths = {"pictures": None, "representations": None, "representations_csv": None, "history_plot": None}
    try:
        plot.pyplot()  # matplotlib and Pillow present? say so once, before drawing
    except ImportError as exc:
        print(f"  (no plots: {exc})")
        return paths
    idx = _pick_drawn(test, n_drawn)
    texts = [test.texts[i] for i in idx]
    drawn = draw(translator, texts, decoder=name)
    grid = np.concatenate([drawn, test.images[idx]])
    captions = [f"drawn: {t}" for t in texts] + ["true picture"] * len(texts)
    paths["pictures"] = plot.pictures(grid, captions, os.path.join(out_dir, "pictures.png"),
                                      columns=len(texts),
                                      title="Drawn from held-out descriptions (top) and the true pictures")
    paths["representations_csv"] = os.path.join(out_dir, "representations.csv")
    paths["representations"] = plot.representations(
        translator, DOTS_SENTENCES, os.path.join(out_dir, "representations.png"),
        to_csv=paths["representations_csv"])
    paths["history_plot"] = plot.plot_history(history, os.path.join(out_dir, "pixel_history.png"),
                                              title="Pixel decoder training")
    for key in ("pictures", "representations", "representations_csv", "history_plot"):
        print(f"  saved {key.replace('_', ' ')}: {paths[key]}")
    return paths
