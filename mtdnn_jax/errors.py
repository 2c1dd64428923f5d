"""The one error type for bad user input.

Every message names where the problem is (file, and line or field when there is one) and what
is wrong, in the `file:line: what is wrong` shape that editors and terminals make clickable.
Command-line entry points catch it, print it, and exit non-zero (see `mtdnn_jax.cli`).
"""
from __future__ import annotations

import os


class InputError(ValueError):
  """A file, argument or config the user gave us is unusable."""

  def __init__(self, path: str | os.PathLike | None, problem: str, *,
               line: int | None = None, field: str | None = None):
    self.path = None if path is None else str(path)
    self.line = line
    self.field = field
    self.problem = problem
    where = self.path or "<input>"
    if line is not None:
      where += f":{line}"
    if field is not None:
      problem = f"{field}: {problem}"
    super().__init__(f"{where}: {problem}")
