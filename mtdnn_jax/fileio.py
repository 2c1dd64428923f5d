"""Atomic writes: a reader sees the old output or the complete new one, never half of one.

Files are written to a temporary sibling and moved into place with `os.replace` (atomic on
POSIX within one file system); directories are built in a temporary sibling and renamed.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mtdnn_jax.errors import InputError


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[Any]:
  """Opens a temporary sibling of `path` for writing; moves it onto `path` on success."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; outputs are ordinary files
  try:
    if "b" not in mode:
      open_kwargs.setdefault("encoding", "utf-8")
    with open(tmp, mode, **open_kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
  """A JSON document; a missing or malformed file is an InputError naming it (and the line)."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise InputError(path, f"{what} not found") from None
  except json.JSONDecodeError as e:
    raise InputError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
  except UnicodeDecodeError as e:
    raise InputError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
  with atomic_file(path) as f:
    json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
    f.write("\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
  """Yields an empty temporary directory that becomes `path` when the block succeeds.

  If the block raises, the temporary directory is removed and `path` is left as it was. An
  existing non-empty `path` is an error unless `overwrite`, in which case it is replaced only
  after the new content is complete.
  """
  path = Path(path)
  if path.exists() and not path.is_dir():
    raise InputError(path, "output path exists and is not a directory")
  if path.is_dir() and any(path.iterdir()) and not overwrite:
    raise InputError(path, "output directory exists and is not empty (pass --overwrite to "
                     "replace it)")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
  os.chmod(tmp, 0o777 & ~_umask())
  try:
    yield tmp
    for file in tmp.rglob("*"):  # some writers (safetensors) create private files
      if file.is_file():
        os.chmod(file, 0o666 & ~_umask())
    if path.exists():
      old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
      os.replace(path, old / "content")
      os.replace(tmp, path)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
