"""Process settings that decide speed on CPU hosts, applied by every script before JAX starts:
`use_fast_cpu_settings()` = the matrix-multiply kernels, then the allocator.

The matrix multiplies. XLA:CPU hands its dots to YNNPACK by default; on an AVX-512 host its
float32 matmul reached 250-275 GFLOP/s against oneDNN's (PyTorch's library) 330-360. XLA can
call oneDNN for each dot instead (ONEDNN_OPTIONS; YNNPACK keeps the fusions without a dot):
BERT-base and MiniLM train steps 1.09-1.14x and evaluation 1.06-1.07x faster there, MiniLM's
1.09x and 1.06x on an AVX2 host, with XLA's float32 results to rounding (docs/PERFORMANCE.md;
`python scripts/ablations.py xla_cpu xla_cpu_eval` measures it on yours).
`use_onednn_matmuls()` adds those flags to XLA_FLAGS on x86-64 unless the user set them or
MTDNN_JAX_CPU_MATMULS=xla, and only for the jaxlib releases they were checked on: XLA aborts
the process on a flag it does not know.

The allocator. XLA:CPU allocates a step's large temporary buffers afresh on every step. glibc's
malloc serves blocks that large with fresh mappings (mmap, and arena heaps it grows and shrinks)
and gives them back on free, so the kernel maps, faults in and zeroes the same gigabytes again
each step: for BERT-base at batch 16 on 2 cores, 13-16 s of system time against ~62 s of user
time over 4 steps. jemalloc told never to return freed pages (`dirty_decay_ms:-1`) keeps them:
system time ~0.2 s and the step ~1.2x faster, for a peak resident memory only a little above
glibc's (the same buffers are reused; docs/PERFORMANCE.md has the figures). mimalloc (tried,
also with purging off) and glibc's tunables (mmap off, no trimming) did not remove the cost.

`use_fast_allocator()` re-executes the running script once with jemalloc preloaded when the
library is installed (Debian/Ubuntu `libjemalloc2`, which scripts/install.sh installs when it
may) and not already in use. MTDNN_JAX_ALLOCATOR=system keeps the system allocator;
MTDNN_JAX_ALLOCATOR=/path/to/libjemalloc.so names the library. This module imports no JAX,
so scripts call it before anything heavy is loaded.
"""
from __future__ import annotations

import glob
import importlib.metadata
import os
import platform
import sys

MATMULS_ENV = "MTDNN_JAX_CPU_MATMULS"  # "xla": XLA:CPU's default kernels; "onednn" or unset: oneDNN
# As jax.jit's compiler_options take them; XLA_FLAGS spells the same settings as --name=value.
# Each dot is its own oneDNN call: the grouped type (LIBRARY_FUSION_TYPE_DOT) puts chained dots
# (x @ w1 @ w2, attention's two matmuls around a softmax) into one oneDNN graph, which oneDNN
# failed to compile on an AVX2 host ("partition compile failed", then the process died of an
# illegal instruction); on BERT's steps the two types build the same fusions, at the same speed
# (docs/PERFORMANCE.md).
ONEDNN_OPTIONS = {"xla_cpu_use_onednn": True,
                  "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
# jaxlib releases whose XLA has both flags (checked by tests/test_runtime.py on the installed one;
# 0.11 in a Python 3.12 environment, 2026-12-05, with tests/test_mixed_precision.py).
ONEDNN_CHECKED_JAXLIB = ("0.10.", "0.11.")
ALLOCATOR_ENV = "MTDNN_JAX_ALLOCATOR"
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
_REEXECUTED = "_MTDNN_JAX_REEXECUTED"  # set in the re-executed process, so it happens once
_JEMALLOC_PATTERNS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                      "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                      "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2",
                      "/usr/local/lib/libjemalloc.so*", "/opt/homebrew/lib/libjemalloc*.dylib")


def find_jemalloc() -> str | None:
  chosen = os.environ.get(ALLOCATOR_ENV, "")
  if chosen and chosen != "system":
    return chosen if os.path.isfile(chosen) else None
  for pattern in _JEMALLOC_PATTERNS:
    found = sorted(glob.glob(pattern))
    if found:
      return found[0]
  return None


def jemalloc_in_use() -> bool:
  return "jemalloc" in os.environ.get("LD_PRELOAD", "")


def onednn_flags_supported() -> bool:
  """Whether this host (x86-64) and jaxlib (ONEDNN_CHECKED_JAXLIB) take ONEDNN_OPTIONS."""
  if platform.machine().lower() not in ("x86_64", "amd64"):
    return False
  try:
    jaxlib = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return False
  return jaxlib.startswith(ONEDNN_CHECKED_JAXLIB)


def use_onednn_matmuls() -> None:
  """Adds ONEDNN_OPTIONS to XLA_FLAGS where they are supported, unless MTDNN_JAX_CPU_MATMULS=xla;
  flags the user already set win. Must run before JAX compiles anything: XLA reads XLA_FLAGS
  once."""
  chosen = os.environ.get(MATMULS_ENV, "")
  if chosen not in ("", "xla", "onednn"):
    print(f"warning: {MATMULS_ENV}={chosen} is neither 'xla' nor 'onednn'; using oneDNN where "
          "supported", file=sys.stderr)
  if chosen == "xla" or not onednn_flags_supported():
    return
  flags = os.environ.get("XLA_FLAGS", "")
  ours = [_as_flag(name, value) for name, value in ONEDNN_OPTIONS.items()
          if f"--{name}=" not in flags]
  if ours:
    os.environ["XLA_FLAGS"] = " ".join([flags, *ours]).strip()


def _as_flag(name: str, value) -> str:
  """A compiler option as XLA_FLAGS spells it."""
  return f"--{name}={str(value).lower() if isinstance(value, bool) else value}"


def onednn_matmuls_requested() -> bool:
  """Whether XLA_FLAGS asks XLA:CPU for oneDNN (by us or by the user)."""
  return _as_flag("xla_cpu_use_onednn", True) in os.environ.get("XLA_FLAGS", "")


def use_fast_cpu_settings() -> None:
  """Both settings of this module; the flags first, so a re-executed process inherits them."""
  use_onednn_matmuls()
  use_fast_allocator()


def use_fast_allocator() -> None:
  """Re-executes this process with jemalloc preloaded (see the module's docstring); returns
  without doing anything when that is not possible or not wanted."""
  if (not sys.platform.startswith("linux") or os.environ.get(ALLOCATOR_ENV) == "system"
      or jemalloc_in_use() or os.environ.get(_REEXECUTED)):
    return
  library = find_jemalloc()
  if library is None:
    if os.environ.get(ALLOCATOR_ENV):
      print(f"warning: {ALLOCATOR_ENV}={os.environ[ALLOCATOR_ENV]} is not a file; keeping the "
            "system allocator", file=sys.stderr)
    return
  preload = ":".join(p for p in (library, os.environ.get("LD_PRELOAD", "")) if p)
  conf = ",".join(c for c in (JEMALLOC_CONF, os.environ.get("MALLOC_CONF", "")) if c)
  env = dict(os.environ, LD_PRELOAD=preload, MALLOC_CONF=conf, **{_REEXECUTED: "1"})
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def describe() -> dict[str, str]:
  """The settings in force, for benchmark records."""
  import jax
  return {"allocator": (f"jemalloc ({os.environ.get('MALLOC_CONF', '')})" if jemalloc_in_use()
                        else "system malloc"),
          "prng": str(jax.config.jax_default_prng_impl),
          "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
