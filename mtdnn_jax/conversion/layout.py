"""Where each encoder parameter lives in Google's TF BERT and in Hugging Face's PyTorch BERT.

One table, read in both directions, so import and export cannot drift apart. Foreign
checkpoints store one tensor per layer and per projection, dense kernels as 2-D matrices
(TF [in, out], like Flax; PyTorch `nn.Linear.weight` [out, in]); we stack layers on a leading
axis and keep attention projections split into (heads, head_dim).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Literal

import numpy as np

from mtdnn_jax.errors import InputError
from mtdnn_jax.model_dir import expected_param_shapes
from mtdnn_jax.models.config import EncoderConfig

Format = Literal["tf", "torch"]


@dataclasses.dataclass(frozen=True)
class Entry:
  ours: str  # our flat parameter path
  tf: str  # Google TF variable name; "{i}" is the layer index
  torch: str  # Hugging Face BertModel key (no "bert." prefix); "{i}" is the layer index
  kernel_inputs: int = 0  # a dense kernel: how many of our (per-layer) axes are input axes

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.tf


def _layer(ours, tf, torch, kernel_inputs=0):
  return Entry(f"layers/{ours}", f"bert/encoder/layer_{{i}}/{tf}",
               f"encoder.layer.{{i}}.{torch}", kernel_inputs)


def _dense(ours, tf, torch, inputs=1):
  return [_layer(f"{ours}/kernel", f"{tf}/kernel", f"{torch}.weight", inputs),
          _layer(f"{ours}/bias", f"{tf}/bias", f"{torch}.bias")]


def _norm(ours, tf, torch):
  return [_layer(f"{ours}/scale", f"{tf}/gamma", f"{torch}.weight"),
          _layer(f"{ours}/bias", f"{tf}/beta", f"{torch}.bias")]


ENTRIES: tuple[Entry, ...] = (
    Entry("embeddings/word_embeddings/embedding", "bert/embeddings/word_embeddings",
          "embeddings.word_embeddings.weight"),
    Entry("embeddings/position_embeddings/embedding", "bert/embeddings/position_embeddings",
          "embeddings.position_embeddings.weight"),
    Entry("embeddings/token_type_embeddings/embedding", "bert/embeddings/token_type_embeddings",
          "embeddings.token_type_embeddings.weight"),
    Entry("embeddings/LayerNorm/scale", "bert/embeddings/LayerNorm/gamma",
          "embeddings.LayerNorm.weight"),
    Entry("embeddings/LayerNorm/bias", "bert/embeddings/LayerNorm/beta",
          "embeddings.LayerNorm.bias"),
    *_dense("attention/query", "attention/self/query", "attention.self.query"),
    *_dense("attention/key", "attention/self/key", "attention.self.key"),
    *_dense("attention/value", "attention/self/value", "attention.self.value"),
    *_dense("attention/out", "attention/output/dense", "attention.output.dense", inputs=2),
    *_norm("attention_norm", "attention/output/LayerNorm", "attention.output.LayerNorm"),
    *_dense("intermediate", "intermediate/dense", "intermediate.dense"),
    *_dense("output", "output/dense", "output.dense"),
    *_norm("output_norm", "output/LayerNorm", "output.LayerNorm"),
    Entry("pooler/kernel", "bert/pooler/dense/kernel", "pooler.dense.weight", kernel_inputs=1),
    Entry("pooler/bias", "bert/pooler/dense/bias", "pooler.dense.bias"),
)

ENTRY_BY_OURS = {entry.ours: entry for entry in ENTRIES}


def _foreign_shape(entry: Entry, ours_shape: tuple[int, ...], fmt: Format) -> tuple[int, ...]:
  if entry.kernel_inputs:
    fan_in = math.prod(ours_shape[:entry.kernel_inputs])
    fan_out = math.prod(ours_shape[entry.kernel_inputs:])
    return (fan_in, fan_out) if fmt == "tf" else (fan_out, fan_in)
  if entry.ours.endswith("/embedding"):
    return ours_shape
  return (math.prod(ours_shape),)


def foreign_names(config: EncoderConfig, fmt: Format) -> dict[str, tuple[Entry, int | None]]:
  """Every foreign name the encoder needs → (its entry, its layer index or None)."""
  names = {}
  for entry in ENTRIES:
    template = getattr(entry, fmt)
    for i in (range(config.num_hidden_layers) if entry.per_layer else [None]):
      names[template.format(i=i)] = (entry, i)
  return names


def import_params(read: Callable[[str], np.ndarray | None], config: EncoderConfig, fmt: Format,
                  source) -> dict[str, np.ndarray]:
  """Builds our flat float32 parameters from a foreign checkpoint.

  `read(name)` returns the foreign tensor or None when the checkpoint lacks it. A missing or
  mis-shaped tensor is an `InputError` naming it and `source`.
  """
  expected = expected_param_shapes(config)
  slices: dict[str, list[np.ndarray]] = {}
  for name, (entry, layer) in foreign_names(config, fmt).items():
    shape = expected[entry.ours][1:] if entry.per_layer else expected[entry.ours]
    value = read(name)
    if value is None:
      raise InputError(source, f"missing variable {name!r}")
    value = np.asarray(value)
    want = _foreign_shape(entry, shape, fmt)
    if tuple(value.shape) != want:
      raise InputError(source, f"variable {name!r} has shape {tuple(value.shape)}, but the config "
                       f"implies {want}")
    if entry.kernel_inputs and fmt == "torch":
      value = value.T
    slices.setdefault(entry.ours, []).append(value.reshape(shape).astype(np.float32))
  return {ours: np.stack(parts) if ENTRY_BY_OURS[ours].per_layer else parts[0]
          for ours, parts in slices.items()}


def export_params(flat: dict[str, np.ndarray], config: EncoderConfig,
                  fmt: Format) -> dict[str, np.ndarray]:
  """Our flat parameters → foreign names and layouts (the inverse of `import_params`)."""
  expected = expected_param_shapes(config)
  out = {}
  for name, (entry, layer) in foreign_names(config, fmt).items():
    value = np.asarray(flat[entry.ours])
    if entry.per_layer:
      value = value[layer]
    shape = expected[entry.ours][1:] if entry.per_layer else expected[entry.ours]
    if entry.kernel_inputs:
      fan_in = math.prod(shape[:entry.kernel_inputs])
      value = value.reshape(fan_in, -1)
      if fmt == "torch":
        value = value.T
    else:
      value = value.reshape(_foreign_shape(entry, shape, fmt))
    out[name] = np.ascontiguousarray(value)
  return out


_LAYER_INDEX = {"tf": re.compile(r"^bert/encoder/layer_(\d+)/"),
                "torch": re.compile(r"^encoder\.layer\.(\d+)\.")}


def num_layers_in(names, fmt: Format) -> int:
  """How many Transformer layers a checkpoint holds, from its variable names."""
  indices = {int(m.group(1)) for n in names if (m := _LAYER_INDEX[fmt].match(n))}
  return max(indices) + 1 if indices else 0
