"""Pixels: decode the intermediate representation into pictures.

    dec = fn.ImageDecoder(d_model=128)                 # representation -> 32x32x3
    dec.fit(tr.represent(texts), images, epochs=20)    # or train_pixels(tr, texts, images)
    draw(tr, "a big red circle")                       # (32, 32, 3) uint8
    demo_pictures(out_dir="pictures")                  # the demo's last part
"""
from fastnet.image.attributes import ATTRIBUTE_DIM, attribute_vectors
from fastnet.image.decoder import ImageDecoder, load_image_decoder, pictures_to_float, to_uint8
from fastnet.image._training import mean_picture_baseline
from fastnet.image.translator import draw, draw_to_png, pixel_decoder_names, png_bytes, save_png, train_pixels
from fastnet.image.demo import demo_pictures
from fastnet.seq2seq.translator import register_decoder_kind

# A Translator saved with a pixel decoder rebuilds it by this name when loaded.
register_decoder_kind(ImageDecoder)

__all__ = ["ImageDecoder", "load_image_decoder", "mean_picture_baseline", "pictures_to_float",
           "to_uint8", "attribute_vectors", "ATTRIBUTE_DIM", "draw", "draw_to_png",
           "pixel_decoder_names", "png_bytes", "save_png", "train_pixels", "demo_pictures"]
