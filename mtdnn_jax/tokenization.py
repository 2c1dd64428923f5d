"""Text → token ids, segment ids and attention mask, with transformers' BERT tokenizer.

The tokenizer is transformers' Rust-backed `BertTokenizer` over a model directory's
`vocab.txt`. Note the transformers 5 trap: the constructor argument is `vocab=`; the old
`vocab_file=` is silently ignored and yields a 5-token vocabulary, so we check the size.
Layouts follow BERT: `[CLS] a [SEP]` and `[CLS] a [SEP] b [SEP]` with segment ids 0…0 1…1,
and pairs are truncated longest-first.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mtdnn_jax.errors import InputError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclasses.dataclass(frozen=True)
class TokenizerSettings:
  """What, besides the vocabulary, decides how text becomes tokens."""
  do_lower_case: bool = True
  tokenize_chinese_chars: bool = True  # split CJK ideographs into single characters
  strip_accents: bool | None = None  # None: follow do_lower_case, as BERT does

  @classmethod
  def from_dict(cls, d: dict, path: str | os.PathLike | None = None) -> TokenizerSettings:
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k in known}
    for key, value in kwargs.items():
      if value is not None and not isinstance(value, bool):
        raise InputError(path, f"must be true/false, got {value!r}", field=key)
    return cls(**kwargs)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Encoding:
  """One tokenized example, unpadded."""
  input_ids: list[int]
  segment_ids: list[int]

  def __len__(self) -> int:
    return len(self.input_ids)


def read_vocab(path: str | os.PathLike) -> list[str]:
  """The tokens of a BERT `vocab.txt`, one per line (the last line may lack its newline)."""
  try:
    with open(path, encoding="utf-8") as f:
      tokens = f.read().split("\n")
  except FileNotFoundError:
    raise InputError(path, "vocabulary file not found") from None
  except UnicodeDecodeError as e:
    raise InputError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
  if tokens and tokens[-1] == "":
    tokens.pop()
  tokens = [t.rstrip("\r") for t in tokens]
  missing = [t for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]") if t not in tokens]
  if missing:
    raise InputError(path, f"vocabulary lacks the special tokens {missing}")
  return tokens


class Tokenizer:
  """BERT WordPiece tokenization over a vocabulary file."""

  def __init__(self, vocab_path: str | os.PathLike, settings: TokenizerSettings = TokenizerSettings()):
    from transformers import BertTokenizer  # imported late: transformers is slow to import

    self.vocab_path = Path(vocab_path)
    self.settings = settings
    self.vocab = read_vocab(vocab_path)
    # A dict as Google's BERT builds it: a duplicated line keeps its last id.
    self._tok = BertTokenizer(
        vocab={token: i for i, token in enumerate(self.vocab)},
        do_lower_case=settings.do_lower_case,
        tokenize_chinese_chars=settings.tokenize_chinese_chars,
        strip_accents=settings.strip_accents)
    if self._tok.vocab_size != len(set(self.vocab)):
      raise InputError(self.vocab_path, f"tokenizer built {self._tok.vocab_size} tokens from "
                       f"a {len(self.vocab)}-line vocabulary")
    ids = self._tok.convert_tokens_to_ids(list(SPECIAL_TOKENS[:4]))
    self.pad_id, self.unk_id, self.cls_id, self.sep_id = ids

  @classmethod
  def from_model_dir(cls, model_dir: str | os.PathLike) -> Tokenizer:
    model_dir = Path(model_dir)
    settings_path = model_dir / "tokenizer_config.json"
    try:
      settings = json.loads(settings_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
      raise InputError(settings_path, "tokenizer settings not found") from None
    except json.JSONDecodeError as e:
      raise InputError(settings_path, f"not valid JSON: {e.msg}", line=e.lineno) from None
    return cls(model_dir / "vocab.txt", TokenizerSettings.from_dict(settings, settings_path))

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def fingerprint(self) -> str:
    """Changes whenever the vocabulary or the settings would change any tokenization."""
    h = hashlib.sha256()
    h.update("\n".join(self.vocab).encode("utf-8"))
    h.update(json.dumps(self.settings.to_dict(), sort_keys=True).encode("utf-8"))
    return h.hexdigest()

  def tokenize(self, text: str) -> list[str]:
    return self._tok.tokenize(text)

  def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
    return self._tok.convert_ids_to_tokens(list(ids))

  def encode(self, text_a: str, text_b: str | None = None, max_seq_len: int = 512) -> Encoding:
    return self.encode_batch([text_a], None if text_b is None else [text_b], max_seq_len)[0]

  def encode_batch(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None,
                   max_seq_len: int = 512) -> list[Encoding]:
    """Tokenizes single texts or pairs (longest-first truncation to `max_seq_len`)."""
    if max_seq_len < (3 if texts_b is not None else 2):
      raise ValueError(f"max_seq_len={max_seq_len} leaves no room for text")
    out = self._tok(list(texts_a), None if texts_b is None else list(texts_b),
                    truncation="longest_first", max_length=max_seq_len,
                    return_attention_mask=False, return_token_type_ids=True)
    return [Encoding(ids, seg) for ids, seg in zip(out["input_ids"], out["token_type_ids"])]


def pad_encodings(encodings: Sequence[Encoding], length: int, pad_id: int = 0) -> dict[str, np.ndarray]:
  """Right-pads encodings to one `length`: int32 `input_ids`, `segment_ids`, `attention_mask`."""
  n = len(encodings)
  input_ids = np.full((n, length), pad_id, np.int32)
  segment_ids = np.zeros((n, length), np.int32)
  attention_mask = np.zeros((n, length), np.int32)
  for i, enc in enumerate(encodings):
    if len(enc) > length:
      raise ValueError(f"encoding of length {len(enc)} does not fit in {length}")
    input_ids[i, :len(enc)] = enc.input_ids
    segment_ids[i, :len(enc)] = enc.segment_ids
    attention_mask[i, :len(enc)] = 1
  return {"input_ids": input_ids, "segment_ids": segment_ids, "attention_mask": attention_mask}


def guess_do_lower_case(checkpoint_name: str) -> bool:
  """Google's naming: `cased_L-12_H-768_A-12` keeps case, `uncased_…` and Chinese lower-case."""
  name = checkpoint_name.lower()
  return not ("cased" in name and "uncased" not in name)
