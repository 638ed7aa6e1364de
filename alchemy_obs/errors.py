"""The package's exception and warning classes.

Every error that alchemy-obs raises on purpose derives from :class:`AlchemyObsError`, so a
script can catch the package's problems apart from bugs::

    try:
        ...
    except alchemy_obs.AlchemyObsError as exc:
        print(exc)

and every warning from :class:`AlchemyObsWarning`, so it can be filtered or made an error
with the standard :mod:`warnings` machinery, e.g.
``warnings.simplefilter("error", AlchemyObsWarning)``. Messages are one line that starts
with the file or option concerned; the ``alchemy-obs`` command prints them as they are.
"""

from __future__ import annotations

__all__ = ["AlchemyObsError", "UsageError", "AlchemyObsWarning"]


class AlchemyObsError(Exception):
    """Base class of the errors alchemy-obs raises on purpose (bad input, missing files)."""


class UsageError(AlchemyObsError, ValueError):
    """A command-line option or a function argument has a value that cannot be used."""


class AlchemyObsWarning(UserWarning):
    """Base class of the warnings alchemy-obs issues (results that need a second look)."""
