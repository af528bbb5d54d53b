"""Shared test helpers: a hand-set colour model, bad files, a Keras 2 .h5 writer, Ray comparisons."""
