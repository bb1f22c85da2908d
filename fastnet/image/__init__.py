"""Pixels: decode the intermediate representation into pictures.

ImageDecoder turns the vector an Encoder makes of a sentence into a picture.
"""
from fastnet.image.decoder import ImageDecoder, load_image_decoder, pictures_to_float, to_uint8
from fastnet.image._training import mean_picture_baseline

__all__ = ["ImageDecoder", "load_image_decoder", "mean_picture_baseline", "pictures_to_float",
           "to_uint8"]
