"""The encoder's architecture, as a standard `bert_config.json` or HF `config.json` gives it.

Only architecture lives here; how to run it (compute dtype, attention implementation, remat)
is the experiment config's business and is passed to the module directly.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import read_json

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish")

# Keys that Google's and Hugging Face's BERT configs carry but that do not change the encoder
# (bookkeeping, generation settings, the unused pooler_* fields of Google's Chinese configs).
# Anything outside this set and the dataclass fields is reported as unknown: a misspelt
# "hiden_size" must not silently fall back to a default.
_IGNORED_KEYS = frozenset("""
    _name_or_path architectures model_type transformers_version torch_dtype dtype
    gradient_checkpointing use_cache classifier_dropout is_decoder add_cross_attention
    directionality pooler_fc_size pooler_num_attention_heads pooler_num_fc_layers
    pooler_size_per_head pooler_type bos_token_id eos_token_id sep_token_id
    tie_word_embeddings output_attentions output_hidden_states return_dict id2label label2id
    problem_type tokenizer_class chunk_size_feed_forward is_encoder_decoder
    cross_attention_hidden_size finetuning_task prefix task_specific_params
    tie_encoder_decoder pruned_heads torchscript use_bfloat16 num_labels
""".split())


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  vocab_size: int
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0
  position_embedding_type: str = "absolute"

  def __post_init__(self):
    self.validate()

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  def validate(self) -> None:
    def bad(field, problem):
      raise InputError(None, problem, field=field)

    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        bad(name, f"must be a positive integer, got {value!r}")
    if self.hidden_size % self.num_attention_heads:
      bad("hidden_size", f"{self.hidden_size} is not divisible by num_attention_heads="
          f"{self.num_attention_heads}")
    if self.hidden_act not in ACTIVATIONS:
      bad("hidden_act", f"unsupported activation {self.hidden_act!r}; supported: "
          f"{', '.join(ACTIVATIONS)}")
    if self.position_embedding_type != "absolute":
      bad("position_embedding_type", f"only 'absolute' is supported, got "
          f"{self.position_embedding_type!r}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        bad(name, f"must be in [0, 1), got {value!r}")

  @classmethod
  def from_dict(cls, d: dict[str, Any], path: str | os.PathLike | None = None) -> EncoderConfig:
    """Reads a BERT/HF config dict; unknown keys are errors naming the key (and a guess)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
      if key in fields:
        kwargs[key] = value
      elif key not in _IGNORED_KEYS:
        guess = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        raise InputError(path, f"unknown config key {key!r}{hint}")
    if "vocab_size" not in kwargs:
      raise InputError(path, "required key 'vocab_size' is missing")
    if kwargs.get("pad_token_id") is None:
      kwargs.pop("pad_token_id", None)
    try:
      return cls(**kwargs)
    except InputError as e:  # raised by validate(), which does not know the file
      raise InputError(path, e.problem, field=e.field) from None
    except TypeError as e:
      raise InputError(path, f"invalid config: {e}") from None

  @classmethod
  def from_json_file(cls, path: str | os.PathLike) -> EncoderConfig:
    d = read_json(path, "config file")
    if not isinstance(d, dict):
      raise InputError(path, "expected a JSON object")
    return cls.from_dict(d, path)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def replace(self, **changes) -> EncoderConfig:
    return dataclasses.replace(self, **changes)
