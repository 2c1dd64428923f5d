"""Process-wide runtime settings that decide speed on CPU hosts (see docs/PERFORMANCE.md)."""
from __future__ import annotations

import os

import jax


def describe() -> dict[str, str]:
  """The settings in force, for benchmark records."""
  return {"XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
          "prng": str(jax.config.jax_default_prng_impl),
          "LD_PRELOAD": os.environ.get("LD_PRELOAD", ""),
          "MALLOC_CONF": os.environ.get("MALLOC_CONF", "")}
