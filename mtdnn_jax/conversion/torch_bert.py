"""PyTorch BERT weights → a model directory.

Two sources: a Hugging Face BERT folder (`config.json` + `model.safetensors` or
`pytorch_model.bin`, `vocab.txt`), and a reference MT-DNN checkpoint (a `.pt` dict with
`state`, its encoder under `bert.*` and its task heads under `scoring_list.*`, and `config`).
safetensors files are read without torch. Pickled files are read only with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers:
a checkpoint that needs arbitrary unpickling is refused, never executed.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mtdnn_jax.conversion.layout import num_layers_in
from mtdnn_jax.conversion.result import ConversionReport, write_converted
from mtdnn_jax.errors import InputError
from mtdnn_jax.models.config import EncoderConfig

REFERENCE_HEAD_PREFIX = "scoring_list."
_ENCODER_KEY = re.compile(r"^(embeddings|encoder|pooler)\.")


def torch_load_safely(path: Path) -> Any:
  try:
    import torch
  except ImportError:
    raise InputError(path, "reading PyTorch pickles needs PyTorch: pip install torch "
                     "(or convert the weights to safetensors)") from None
  try:
    return torch.load(str(path), map_location="cpu", weights_only=True)
  except FileNotFoundError:
    raise InputError(path, "file not found") from None
  except Exception as e:  # torch reports unsafe pickles as UnpicklingError, others vary
    raise InputError(path, "cannot be loaded with torch.load(weights_only=True), so it was not "
                     f"unpickled (it may hold arbitrary Python objects): {e}") from None


def _to_numpy(state: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
  out = {}
  for name, value in state.items():
    if hasattr(value, "detach"):
      value = value.detach().cpu()
      if str(value.dtype) == "torch.bfloat16":
        value = value.float()
      value = value.numpy()
    if not isinstance(value, np.ndarray):
      raise InputError(path, f"entry {name!r} is a {type(value).__name__}, not a tensor")
    out[name] = value
  return out


def read_hf_weights(folder: Path) -> tuple[dict[str, np.ndarray], Path]:
  safetensors_path = folder / "model.safetensors"
  if safetensors_path.is_file():
    from safetensors.numpy import load_file
    try:
      return load_file(str(safetensors_path)), safetensors_path
    except Exception as e:
      raise InputError(safetensors_path, f"not a readable safetensors file: {e}") from None
  bin_path = folder / "pytorch_model.bin"
  if bin_path.is_file():
    return _to_numpy(torch_load_safely(bin_path), bin_path), bin_path
  raise InputError(folder / "model.safetensors", "no weights found (expected model.safetensors "
                   "or pytorch_model.bin)")


def _strip_prefix(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(encoder tensors under HF BertModel names, everything else) — drops a `bert.` prefix."""
  prefix = "bert." if any(k.startswith("bert.embeddings.") for k in state) else ""
  encoder, rest = {}, {}
  for key, value in state.items():
    if prefix and key.startswith(prefix):
      encoder[key[len(prefix):]] = value
    elif not prefix and _ENCODER_KEY.match(key):
      encoder[key] = value
    else:
      rest[key] = value
  # Old HF checkpoints name LayerNorm parameters gamma/beta.
  encoder = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight",
                    re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v for k, v in encoder.items()}
  return encoder, rest


def _skip_reason(name: str) -> str | None:
  if name.endswith("position_ids"):
    return "buffers (position ids, recomputed)"
  if _ENCODER_KEY.match(name):
    return None
  if name.startswith("cls."):
    return "pre-training heads (cls.)"
  return "tensors outside the BERT encoder"


def _infer_config(encoder: dict[str, np.ndarray], given: dict[str, Any], source) -> EncoderConfig:
  """A reference checkpoint's config is its training options; the architecture fields that it
  lacks are read off the tensor shapes (all but the head count, which shapes cannot tell)."""
  known = {k: v for k, v in given.items() if k in EncoderConfig.__dataclass_fields__}
  shapes = {k: v.shape for k, v in encoder.items()}
  derived = {
      "vocab_size": shapes.get("embeddings.word_embeddings.weight", (None,))[0],
      "hidden_size": shapes.get("embeddings.word_embeddings.weight", (None, None))[1],
      "max_position_embeddings": shapes.get("embeddings.position_embeddings.weight", (None,))[0],
      "type_vocab_size": shapes.get("embeddings.token_type_embeddings.weight", (None,))[0],
      "intermediate_size": shapes.get("encoder.layer.0.intermediate.dense.weight", (None,))[0],
      "num_hidden_layers": num_layers_in(encoder, "torch") or None,
  }
  for key, value in derived.items():
    if key not in known and value is not None:
      known[key] = int(value)
  if "num_attention_heads" not in known:
    raise InputError(source, "the checkpoint's config does not give num_attention_heads; pass "
                     "the encoder's bert_config.json with --config")
  return EncoderConfig.from_dict(known, source)


def convert_torch_checkpoint(input_path: str | os.PathLike, output: str | os.PathLike, *,
                             vocab: str | None = None, config_file: str | None = None,
                             do_lower_case: bool | None = None,
                             overwrite: bool = False) -> ConversionReport:
  input_path = Path(input_path)
  if not input_path.exists():
    raise InputError(input_path, "input not found")
  heads: dict[str, np.ndarray] = {}
  heads_meta = None
  if input_path.is_dir():  # a Hugging Face folder
    folder = input_path
    config_path = Path(config_file) if config_file else folder / "config.json"
    config = EncoderConfig.from_json_file(config_path)
    config_name = config_path.name
    state, weights_path = read_hf_weights(folder)
    encoder, rest = _strip_prefix(state)
    vocab_path = Path(vocab) if vocab else folder / "vocab.txt"
    settings_file = folder / "tokenizer_config.json"
    if do_lower_case is None and settings_file.is_file():
      do_lower_case = json.loads(settings_file.read_text(encoding="utf-8")).get("do_lower_case")
    source_format = "hf-bert"
  else:  # a reference MT-DNN checkpoint
    weights_path = input_path
    checkpoint = torch_load_safely(input_path)
    if not isinstance(checkpoint, dict) or "state" not in checkpoint:
      raise InputError(input_path, "not a reference MT-DNN checkpoint (expected a dict with "
                       "'state' and 'config'); for Hugging Face weights pass their folder")
    encoder, rest = _strip_prefix(_to_numpy(checkpoint["state"], input_path))
    run_config = checkpoint.get("config") or {}
    config = (EncoderConfig.from_json_file(config_file) if config_file
              else _infer_config(encoder, run_config, input_path))
    config_name = Path(config_file).name if config_file else "the checkpoint's config"
    if not vocab:
      raise InputError(input_path, "a reference MT-DNN checkpoint carries no vocabulary; pass "
                       "the vocab.txt of its encoder with --vocab")
    vocab_path = Path(vocab)
    heads = {k: v for k, v in rest.items() if k.startswith(REFERENCE_HEAD_PREFIX)}
    rest = {k: v for k, v in rest.items() if k not in heads}
    heads_meta = {"source": str(input_path), "layout": "reference MT-DNN (PyTorch, [out, in])",
                  "reference_config": json.loads(json.dumps(run_config, default=str))}
    source_format = "reference-mtdnn"

  skipped_extra = {name: "tensors outside the BERT encoder" for name in rest}
  if not input_path.is_dir() and "optimizer" in checkpoint:
    skipped_extra["optimizer"] = "optimizer state"
  return write_converted(
      source=weights_path, output=output, config=config, config_name=config_name, fmt="torch",
      names=encoder, read=encoder.get, skip_reason=_skip_reason, vocab_path=vocab_path,
      do_lower_case=do_lower_case, name_for_guess=input_path.name, source_format=source_format,
      skipped_extra=skipped_extra, heads=heads, heads_meta=heads_meta, overwrite=overwrite)
