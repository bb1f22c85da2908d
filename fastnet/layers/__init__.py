"""Layers: Dense, Activation, Dropout, and the base class they share.

`register_layer` makes a layer class known to model files, so a saved
network's architecture (class name + config) can be rebuilt on load.
"""
from fastnet.layers.base import Layer, ParameterStore, ParameterView
from fastnet.layers.core import Activation, Dense, Dropout

LAYERS = {}


def register_layer(cls):
    """Make `cls` rebuildable from {'class': cls.__name__, 'config': layer.config()}; returns cls."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer expects a Layer subclass, got {cls!r}")
    LAYERS[cls.__name__] = cls
    return cls


for _cls in (Dense, Activation, Dropout):
    register_layer(_cls)


def layer_to_config(layer):
    return {"class": type(layer).__name__, "config": layer.config()}


def layer_from_config(spec):
    name = spec.get("class") if isinstance(spec, dict) else None
    if name not in LAYERS:
        raise ValueError(f"unknown layer class {name!r}; known layers: {', '.join(sorted(LAYERS))}")
    return LAYERS[name](**spec.get("config", {}))


__all__ = ["Layer", "ParameterStore", "ParameterView", "Dense", "Activation", "Dropout", "LAYERS", "register_layer",
           "layer_to_config", "layer_from_config"]
