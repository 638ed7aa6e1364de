"""Prefect flows for alchemy-obs.

The flows are thin: each task calls one function of the ``alchemy_obs`` package and adds
what orchestration brings (retries, caching, mapping over galaxies, a task runner). Run
them from the repository root so that ``flows`` is importable, e.g.
``python -m flows.pipeline --config configs/flows/demo.yaml``.
"""
