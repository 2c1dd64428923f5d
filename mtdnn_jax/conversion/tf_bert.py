"""Google TF v1 BERT checkpoints (e.g. `chinese_L-12_H-768_A-12`) → a model directory.

Read with TensorFlow's own checkpoint reader (`tf.train.load_checkpoint`), the `tf` extra.
Optimizer slots and pre-training heads are skipped and reported; a variable under `bert/` that
the encoder does not know (say, a 13th layer for a 12-layer config) is an error, not a skip.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from mtdnn_jax.conversion.result import ConversionReport, write_converted
from mtdnn_jax.errors import InputError
from mtdnn_jax.models.config import EncoderConfig

_OPTIMIZER = re.compile(r"(^|/)(adam_[mv]|Adam(_\d+)?|Momentum|global_step|beta[12]_power|"
                        r"lamb_[mv]|ExponentialMovingAverage|good_steps|loss_scale)(/|$)")


def skip_reason(name: str) -> str | None:
  """Why a variable that the encoder does not use may be dropped; None if it may not."""
  if _OPTIMIZER.search(name):
    return "optimizer slots"
  if name.startswith("cls/"):
    return "pre-training heads (cls/)"
  if name.startswith("bert/"):
    return None
  return "variables outside the BERT encoder"


def find_checkpoint(root: Path) -> tuple[Path, Path]:
  """(folder, checkpoint prefix) from a folder or from a checkpoint prefix."""
  if Path(f"{root}.index").is_file():
    return root.parent, root
  if not root.is_dir():
    raise InputError(root, "checkpoint folder not found")
  if (root / "bert_model.ckpt.index").is_file():
    return root, root / "bert_model.ckpt"
  indices = sorted(root.glob("*.index"))
  if not indices:
    raise InputError(root / "bert_model.ckpt.index", "no TensorFlow checkpoint found "
                     "(expected bert_model.ckpt.index and bert_model.ckpt.data-*)")
  if len(indices) > 1:
    raise InputError(root, "several checkpoints found (" + ", ".join(p.name for p in indices) +
                     "); pass the prefix of the one to convert, e.g. DIR/model.ckpt-1000")
  return root, indices[0].with_suffix("")


def _open_reader(prefix: Path):
  try:
    import tensorflow as tf
  except ImportError:
    raise InputError(prefix, "reading TensorFlow checkpoints needs TensorFlow: "
                     "pip install 'mtdnn_jax[tf]'") from None
  try:
    return tf.train.load_checkpoint(str(prefix))
  except Exception as e:  # TF raises its own error types (DataLossError, NotFoundError, ...)
    raise InputError(prefix, f"TensorFlow cannot read this checkpoint: {e}") from None


def convert_tf_checkpoint(root: str | os.PathLike, output: str | os.PathLike, *,
                          do_lower_case: bool | None = None, config_file: str | None = None,
                          overwrite: bool = False) -> ConversionReport:
  folder, prefix = find_checkpoint(Path(root))
  config_path = Path(config_file) if config_file else folder / "bert_config.json"
  if not config_path.is_file() and not config_file and (folder / "config.json").is_file():
    config_path = folder / "config.json"
  config = EncoderConfig.from_json_file(config_path)
  reader = _open_reader(prefix)
  available = reader.get_variable_to_shape_map()
  return write_converted(
      source=prefix, output=output, config=config, config_name=config_path.name, fmt="tf",
      names=available, read=lambda n: reader.get_tensor(n) if n in available else None,
      skip_reason=skip_reason, vocab_path=folder / "vocab.txt", do_lower_case=do_lower_case,
      name_for_guess=folder.name, source_format="google-tf-bert", overwrite=overwrite)
