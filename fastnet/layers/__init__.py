"""Layers: Dense, Activation, Dropout, and the base class they share."""
