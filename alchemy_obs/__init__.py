"""alchemy-obs: paired galaxy maps, SKA-MID mock observations and translators between them."""

__version__ = "0.1.0"
