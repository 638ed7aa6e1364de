"""The one exception of the inference stage.

Every problem with one input file becomes an :class:`InferError` whose message is a single
line that starts with the file name, so a batch run can print one line per failed file and
go on with the next.
"""

from __future__ import annotations

import os

from alchemy_obs.errors import AlchemyObsError

__all__ = ["InferError"]


class InferError(AlchemyObsError, ValueError):
    """An input file (or its output) cannot be processed; the message names the file.

    Parameters
    ----------
    path : path-like
        The file the problem belongs to.
    problem : str
        What is wrong and, where there is one, what to do about it.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        super().__init__(f"{self.path}: {self.problem}")
