"""Pixels: decode the intermediate representation into pictures.

    dec = fn.ImageDecoder(d_model=128)                 # representation -> 32x32x3
    dec.fit(tr.represent(texts), images, epochs=20)    # or train_pixels(tr, texts, images)
    draw(tr, "a big red circle")                       # (32, 32, 3) uint8

A Translator saved with a pixel decoder rebuilds it by its class name when
loaded (fastnet.seq2seq.translator imports this package then).
"""
from fastnet.image._training import mean_picture_baseline
from fastnet.image.attributes import ATTRIBUTE_DIM, attribute_vectors
from fastnet.image.decoder import ImageDecoder, load_image_decoder, pictures_to_float, to_uint8
from fastnet.image.translator import draw, draw_to_png, pixel_decoder_names, png_bytes, save_png, train_pixels

__all__ = ["ImageDecoder", "load_image_decoder", "mean_picture_baseline", "pictures_to_float",
           "to_uint8", "attribute_vectors", "ATTRIBUTE_DIM", "draw", "draw_to_png",
           "pixel_decoder_names", "png_bytes", "save_png", "train_pixels"]


def __getattr__(name):
    # The demo moved to the application layer (fastnet.demo); the old name still works, with a warning.
    if name == "demo_pictures":
        import warnings

        from fastnet.demo import pictures

        warnings.warn("fastnet.image.demo_pictures moved to fastnet.demo.demo_pictures", DeprecationWarning,
                      stacklevel=2)
        return pictures.demo_pictures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
