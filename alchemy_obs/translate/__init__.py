"""Generative translators between map domains: data, networks, methods, training, metrics.

Importing this package does not import torch-heavy submodules eagerly beyond what is named
here; inference code needs only :func:`alchemy_obs.translate.checkpoint.load_model`.
"""
