"""The model directory: the one on-disk format every script reads and writes.

    <model_dir>/
      mtdnn_jax.json          marker: format name and version, and provenance (source, what the
                              converter skipped)
      config.json             encoder architecture, BERT/HF keys (`EncoderConfig`)
      vocab.txt               WordPiece vocabulary, one token per line; line count == vocab_size
      tokenizer_config.json   do_lower_case, tokenize_chinese_chars, strip_accents
      params.safetensors      encoder parameters, float32, keyed by their Flax path joined with
                              "/" (e.g. "layers/attention/query/kernel"); layer parameters are
                              stacked on a leading `layers` axis, dense kernels are [in, out]
      heads.safetensors       optional: task heads imported from a reference MT-DNN checkpoint,
      heads.json              under their original names and layout, with that run's config

safetensors holds plain arrays with no code, so loading never unpickles anything. A directory
is written atomically (built beside its destination, then renamed) after its content has been
checked, so a failed conversion leaves nothing behind.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import atomic_directory, write_json
from mtdnn_jax.models.config import EncoderConfig
from mtdnn_jax.tokenization import Tokenizer, TokenizerSettings, read_vocab

FORMAT = "mtdnn_jax.model_dir"
FORMAT_VERSION = 1
MARKER_FILE = "mtdnn_jax.json"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer_config.json"
PARAMS_FILE = "params.safetensors"
HEADS_FILE = "heads.safetensors"
HEADS_META_FILE = "heads.json"

Params = dict[str, Any]  # nested dict of arrays, as `model.init(...)["params"]` (unboxed)


def flatten_params(params: Params) -> dict[str, Any]:
  """{"layers/attention/query/kernel": leaf, ...}: leaves are returned as they are."""
  flat = {}

  def walk(prefix, node):
    for key, value in node.items():
      path = f"{prefix}/{key}" if prefix else key
      if isinstance(value, dict):
        walk(path, value)
      else:
        flat[path] = value

  walk("", params)
  return flat


def unflatten_params(flat: dict[str, np.ndarray]) -> Params:
  params: Params = {}
  for path, value in flat.items():
    node = params
    *parents, leaf = path.split("/")
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return params


def expected_param_shapes(config: EncoderConfig) -> dict[str, tuple[int, ...]]:
  """Shape of every encoder parameter for `config`, derived from the model without computing."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from mtdnn_jax.models.bert import BertEncoder

  ids = jnp.zeros((1, 2), jnp.int32)
  shapes = jax.eval_shape(lambda: nn.unbox(
      BertEncoder(config).init(jax.random.PRNGKey(0), ids, ids, ids)["params"]))
  return {path: tuple(s.shape) for path, s in flatten_params(shapes).items()}


def check_params(flat: dict[str, np.ndarray], config: EncoderConfig, source) -> None:
  """Every parameter present with the shape the config implies, and nothing else."""
  expected = expected_param_shapes(config)
  missing = sorted(set(expected) - set(flat))
  if missing:
    raise InputError(source, f"missing parameters: {', '.join(missing)}")
  unexpected = sorted(set(flat) - set(expected))
  if unexpected:
    raise InputError(source, f"unexpected parameters: {', '.join(unexpected)}")
  for path, shape in expected.items():
    if tuple(flat[path].shape) != shape:
      raise InputError(source, f"parameter {path!r} has shape {tuple(flat[path].shape)}, but "
                       f"the config implies {shape}")


def check_vocab(vocab: list[str], config: EncoderConfig, vocab_source) -> None:
  if len(vocab) != config.vocab_size:
    raise InputError(vocab_source, f"vocabulary has {len(vocab)} tokens but the word-embedding "
                     f"table has {config.vocab_size} rows (vocab_size)")


@dataclasses.dataclass
class ModelDir:
  path: Path
  config: EncoderConfig
  params: Params  # nested dict of float32 numpy arrays
  tokenizer_settings: TokenizerSettings
  provenance: dict[str, Any]
  heads: dict[str, np.ndarray] | None = None
  heads_meta: dict[str, Any] | None = None

  def tokenizer(self) -> Tokenizer:
    return Tokenizer(self.path / VOCAB_FILE, self.tokenizer_settings)


def save_model_dir(path: str | os.PathLike, *, config: EncoderConfig,
                   params: Params, vocab: list[str],
                   tokenizer_settings: TokenizerSettings, provenance: dict[str, Any] | None = None,
                   heads: dict[str, np.ndarray] | None = None,
                   heads_meta: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
  """Checks, then atomically writes, a model directory."""
  from safetensors.numpy import save_file

  flat = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flatten_params(params).items()}
  check_params(flat, config, path)
  check_vocab(vocab, config, path)
  with atomic_directory(path, overwrite=overwrite) as tmp:
    write_json(tmp / MARKER_FILE, {"format": FORMAT, "version": FORMAT_VERSION,
                                   "provenance": provenance or {}})
    write_json(tmp / CONFIG_FILE, config.to_dict())
    write_json(tmp / TOKENIZER_FILE, tokenizer_settings.to_dict())
    (tmp / VOCAB_FILE).write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    save_file(flat, str(tmp / PARAMS_FILE), metadata={"format": FORMAT,
                                                      "version": str(FORMAT_VERSION)})
    if heads:
      save_file({k: np.ascontiguousarray(v) for k, v in heads.items()}, str(tmp / HEADS_FILE))
      write_json(tmp / HEADS_META_FILE, heads_meta or {})
  return Path(path)


def load_model_dir(path: str | os.PathLike) -> ModelDir:
  """Opens a model directory, checking that its parts agree with each other."""
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  path = Path(path)
  if not path.is_dir():
    raise InputError(path, "model directory not found")
  marker_path = path / MARKER_FILE
  try:
    marker = json.loads(marker_path.read_text(encoding="utf-8"))
  except FileNotFoundError:
    raise InputError(marker_path, "not a model directory (no marker file); convert a checkpoint "
                     "with convert/tf_checkpoint.py or convert/torch_checkpoint.py") from None
  except json.JSONDecodeError as e:
    raise InputError(marker_path, f"not valid JSON: {e.msg}", line=e.lineno) from None
  if marker.get("format") != FORMAT or marker.get("version") != FORMAT_VERSION:
    raise InputError(marker_path, f"unsupported format {marker.get('format')!r} version "
                     f"{marker.get('version')!r} (this version reads {FORMAT!r} {FORMAT_VERSION})")
  config = EncoderConfig.from_json_file(path / CONFIG_FILE)
  settings_path = path / TOKENIZER_FILE
  try:
    settings = TokenizerSettings.from_dict(
        json.loads(settings_path.read_text(encoding="utf-8")), settings_path)
  except FileNotFoundError:
    raise InputError(settings_path, "tokenizer settings not found") from None
  check_vocab(read_vocab(path / VOCAB_FILE), config, path / VOCAB_FILE)

  def read_safetensors(file):
    try:
      return load_file(str(file))
    except FileNotFoundError:
      raise InputError(file, "file not found") from None
    except SafetensorError as e:
      raise InputError(file, f"not a readable safetensors file: {e}") from None

  flat = read_safetensors(path / PARAMS_FILE)
  check_params(flat, config, path / PARAMS_FILE)
  heads = heads_meta = None
  if (path / HEADS_FILE).exists():
    heads = read_safetensors(path / HEADS_FILE)
    heads_meta = json.loads((path / HEADS_META_FILE).read_text(encoding="utf-8"))
  return ModelDir(path, config, unflatten_params(flat), settings,
                  marker.get("provenance", {}), heads, heads_meta)
