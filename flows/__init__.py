"""Prefect flows for alchemy-obs (install the ``flows`` extra: ``pip install 'alchemy-obs[flows]'``).

The flows are thin: each task calls one function of the ``alchemy_obs`` package and adds
what orchestration brings (retries, caching, mapping over galaxies, a task runner). They are
part of the installed package, e.g.
``python -m alchemy_obs.flows.pipeline --config configs/flows/demo.yaml``, and their Prefect
deployments are shipped beside them (``python -m alchemy_obs.flows`` prints the file).
"""

try:
    import prefect  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "alchemy_obs.flows needs Prefect: pip install 'alchemy-obs[flows]'") from exc
