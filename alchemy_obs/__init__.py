"""alchemy-obs: paired galaxy maps, SKA-MID mock observations and translators between them."""

__version__ = "0.1.0"

from alchemy_obs.errors import AlchemyObsError, AlchemyObsWarning, UsageError  # noqa: E402

__all__ = ["__version__", "AlchemyObsError", "AlchemyObsWarning", "UsageError"]
