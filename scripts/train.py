#!/usr/bin/env python
"""Train and evaluate an MT-DNN as an experiment config describes.

  python scripts/train.py --config configs/demo.py --workdir demo_out
  python scripts/train.py --config configs/glue_mtl.py --workdir runs/mtl --config.optim.lr=2e-5

A workdir that holds checkpoints is resumed from the latest one. Writes metrics.jsonl,
TensorBoard events, training.png, predictions/ (score files, GLUE submissions), checkpoints/
and best/.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # so configs/*.py can import configs

from mtdnn_jax import runtime  # noqa: E402  (imports no JAX)

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file (configs/*.py; `file.py:arg` passes arg to "
    "get_config)", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs, predictions")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax reports every file it writes at INFO
  from mtdnn_jax.errors import InputError
  from mtdnn_jax.train import train_and_evaluate
  try:
    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print("final dev metrics:")
  for name, value in sorted(results.items()):
    if "/" in name:
      print(f"  {name} = {value:.2f}")
  print(f"plot: {Path(_WORKDIR.value) / 'training.png'}")


if __name__ == "__main__":
  runtime.use_fast_cpu_settings()  # oneDNN matmuls, jemalloc (mtdnn_jax/runtime.py)
  app.run(main)
