"""A pixel decoder on a Translator: train it on the shared encoder, draw from English.

    tr = fn.load("translator.safetensors")          # any trained Translator
    fastnet.image.train_pixels(tr, texts, images, minutes=2)   # adds decoder "pixels"
    fastnet.image.draw(tr, "a big red circle")      # (32, 32, 3) uint8
    tr.save("with_pixels.safetensors")              # the pixel decoder is saved with it

With a frozen encoder the representation of a sentence never changes, so
train_pixels computes it once for every sentence and trains the decoder
alone on those vectors: much faster than running the encoder every epoch
(which tr.fit(texts, {"pixels": images}) does, and must when the encoder
learns too).
"""
import io
import os

import numpy as np

from fastnet.image.decoder import ImageDecoder
from fastnet.io import atomic_write, check_writable
from fastnet.io import load as load_model


def pixel_decoder_names(tr):
    """Names of the Translator's decoders that draw pictures."""
    return [name for name, dec in getattr(tr, "decoders", {}).items()
            if getattr(dec, "kind", None) == "pixels"]


def _pixel_decoder(tr, name):
    names = pixel_decoder_names(tr)
    if name is None:
        if not names:
            raise ValueError(f"this model has no pixel decoder (its decoders: "
                             f"{list(getattr(tr, 'decoders', {}))}); add one with "
                             f"fastnet.image.train_pixels(tr, texts, images)")
        if len(names) > 1:
            raise ValueError(f"say which pixel decoder draws: decoder= one of {names}")
        name = names[0]
    elif name not in names:
        raise ValueError(f"{name!r} is not a pixel decoder of this model (pixel decoders: {names})")
    if name not in getattr(tr, "trained", {name}):
        raise RuntimeError(f"the pixel decoder {name!r} has not been trained yet")
    return name, tr.decoders[name]


def _texts(texts, what):
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if not texts:
        raise ValueError(f"{what}: the list of descriptions is empty")
    bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"{what}: descriptions must be non-empty strings, got {bad[0]!r}")
    return texts, single


def draw(tr, texts, decoder=None):
    """Pictures for English text: (H, W, 3) uint8 for one string, (N, H, W, 3) for a list."""
    texts, single = _texts(texts, "draw")
    _, dec = _pixel_decoder(tr, decoder)
    pictures = dec.predict_uint8(tr.represent(texts))
    return pictures[0] if single else pictures


def train_pixels(tr, texts, images, decoder=None, name="pixels", epochs=20, batch_size=64,
                 validation_data=None, minutes=None, verbose=True, seed=None, **decoder_options):
    """Train a pixel decoder on the Translator's frozen representation of `texts`; returns a History.

    decoder: an ImageDecoder to attach under `name` (default: a new one with
    the Translator's d_model, the pictures' size and **decoder_options, e.g.
    hidden=(256, 512)).
    If `name` is already a pixel decoder of tr, training continues on it.
    validation_data: (texts, images).
    """
    texts, _ = _texts(texts, "train_pixels")
    if decoder is not None and decoder_options:
        raise ValueError(f"give a decoder or decoder options, not both (got {sorted(decoder_options)})")
    if name in tr.decoders:
        if decoder is not None and decoder is not tr.decoders[name]:
            raise ValueError(f"the model already has a decoder {name!r}; pick another name")
        if getattr(tr.decoders[name], "kind", None) != "pixels":
            raise ValueError(f"decoder {name!r} is not a pixel decoder")
        decoder = tr.decoders[name]
    else:
        if decoder is None:
            shape = np.shape(images)
            if len(shape) == 4 and "size" not in decoder_options:
                decoder_options["size"] = shape[1]
            decoder = ImageDecoder(tr.d_model, **decoder_options)
        if getattr(decoder, "kind", None) != "pixels":
            raise TypeError(f"decoder must be an ImageDecoder, got {type(decoder).__name__}")
        tr.add_decoder(name, decoder, freeze_encoder=True)
    val = None
    if validation_data is not None:
        val_texts, _ = _texts(validation_data[0], "train_pixels validation")
        val = (tr.represent(val_texts), validation_data[1])
    history = decoder.fit(tr.represent(texts), images, epochs=epochs, batch_size=batch_size,
                          validation_data=val, minutes=minutes, verbose=verbose, seed=seed)
    tr.trained.add(name)
    return history


def png_bytes(picture, scale=1):
    """One (H, W, 3) uint8 picture as PNG file contents, each pixel a scale x scale block."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('writing PNG files needs Pillow: pip install "fastnet[plot]"') from None
    picture = np.asarray(picture)
    if picture.ndim != 3 or picture.shape[-1] != 3 or picture.dtype != np.uint8:
        raise ValueError(f"a picture must be (H, W, 3) uint8, got {picture.shape} {picture.dtype}")
    if int(scale) < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    big = np.repeat(np.repeat(picture, int(scale), axis=0), int(scale), axis=1)
    buffer = io.BytesIO()
    Image.fromarray(big, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(picture, path, scale=8):
    """Write one (H, W, 3) uint8 picture as a PNG, each pixel a scale x scale block; atomic."""
    data = png_bytes(picture, scale)
    path = check_writable(path)
    with atomic_write(path) as handle:
        handle.write(data)
    return path


def draw_to_png(model_path, text, out_path, decoder=None, scale=8):
    """What `fastnet draw MODEL "a big red circle" -o out.png` does; returns out_path.

    MODEL is a saved Translator with a trained pixel decoder. The picture is
    written as a PNG with every pixel enlarged to a scale x scale block so it
    is big enough to look at (scale=1 keeps the decoder's own size).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("draw: give a non-empty description to draw")
    check_writable(out_path)
    model = load_model(model_path)
    if isinstance(model, ImageDecoder):
        raise ValueError(f"{os.fspath(model_path)!r} holds an ImageDecoder alone; drawing from text needs "
                         "a Translator with a pixel decoder (fastnet.image.train_pixels, then tr.save)")
    return save_png(draw(model, text, decoder=decoder), out_path, scale=scale)
