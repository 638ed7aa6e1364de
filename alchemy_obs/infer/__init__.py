"""Inference on real observations: FITS cube or image -> translator -> FITS on the same grid.

Stages, one module each: :mod:`~alchemy_obs.infer.read` (FITS -> checked
:class:`~alchemy_obs.infer.read.Observation`), :mod:`~alchemy_obs.infer.preprocess`
(moment-0, units, distance, model grid, reprojection), :mod:`~alchemy_obs.infer.tiles`
(overlapping model fields over all the emission, blended), :mod:`~alchemy_obs.infer.predict`
(the translator), :mod:`~alchemy_obs.infer.write` (atomic FITS with the input's WCS), chained
by :func:`~alchemy_obs.infer.pipeline.infer_file`; models are found through
:mod:`~alchemy_obs.infer.registry`.
"""

from alchemy_obs.infer.errors import InferError
from alchemy_obs.infer.pipeline import InferResult, Translator, infer_file, load_translator
from alchemy_obs.infer.read import Observation, parse_beam, read_observation

__all__ = [
    "InferError",
    "InferResult",
    "Observation",
    "Translator",
    "infer_file",
    "load_translator",
    "parse_beam",
    "read_observation",
]
