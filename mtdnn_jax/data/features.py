"""Tokenized features of one task split, and their on-disk cache.

Tokenizing is the slow step of loading data, so its result is kept in
`<cache_dir>/<task>_<split>.npz`: all token ids back to back plus offsets (no padding; padding is
the batcher's business), labels and uids. The cache records what it was built from (the
tokenizer's fingerprint, `max_seq_len`, the canonical file's size and sha256, the task's label
layout) and is rebuilt when any of them changes, reused otherwise. It is written atomically and
read with `allow_pickle=False`.

Layouts: `[CLS] text [SEP]` and `[CLS] premise [SEP] hypothesis [SEP]` (segment ids 0… then
1…), pairs truncated longest-first to `max_seq_len`. A ranking example has one sequence per
candidate. For sequence labelling, each word is tokenized on its own and its first sub-word
carries its label; other sub-words and [CLS]/[SEP] carry IGNORE_LABEL.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from mtdnn_jax.data.canonical import Row, canonical_path, read_canonical
from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import atomic_file
from mtdnn_jax.tasks import DataFormat, TaskDef, TaskType
from mtdnn_jax.tokenization import Encoding, Tokenizer

IGNORE_LABEL = -1
CACHE_FORMAT = 1  # bump when the arrays' meaning changes, so old caches are rebuilt
_CHUNK = 4096  # examples per tokenizer call: large enough to be fast, small for the progress bar


@dataclasses.dataclass(frozen=True)
class Features:
  """Tokenized examples of one task split, unpadded.

  Sequence s is `input_ids[seq_offsets[s]:seq_offsets[s + 1]]`; example e owns sequences
  `example_offsets[e]:example_offsets[e + 1]` (one, or one per candidate for ranking).
  `labels` is per example (int32 class / best-candidate index, float32 for regression), or per
  token aligned with `input_ids` for sequence labelling.
  """
  input_ids: np.ndarray  # int32 [n_tokens]
  segment_ids: np.ndarray  # int8 [n_tokens]
  seq_offsets: np.ndarray  # int64 [n_sequences + 1]
  example_offsets: np.ndarray  # int64 [n_examples + 1]
  labels: np.ndarray
  uids: np.ndarray  # str [n_examples]

  def __len__(self) -> int:
    return len(self.uids)

  @property
  def seq_lengths(self) -> np.ndarray:
    return np.diff(self.seq_offsets)

  @property
  def example_lengths(self) -> np.ndarray:
    """The longest sequence of each example (what decides its bucket)."""
    return np.maximum.reduceat(self.seq_lengths, self.example_offsets[:-1])

  @property
  def candidates_per_example(self) -> np.ndarray:
    return np.diff(self.example_offsets)

  @property
  def max_candidates(self) -> int | None:
    """Candidates per example of a ranking split (the most any example has); None otherwise."""
    counts = self.candidates_per_example
    return int(counts.max()) if len(counts) and len(self.seq_offsets) - 1 != len(self) else None

  @property
  def labels_per_token(self) -> bool:
    # Every sequence has at least [CLS] and [SEP], so per-token labels outnumber examples.
    return len(self.labels) != len(self)


WINDOW_MARK = "@w"  # uid of a window of a long sentence: <uid>@w<index of its first word>


def split_long_sentences(rows: Sequence[Row], tokenizer: Tokenizer, max_seq_len: int) -> list[Row]:
  """Sentences whose word pieces do not fit `max_seq_len` (with [CLS] and [SEP]) become
  consecutive windows of whole words, so that no word loses its label; `rejoin_windows`
  puts their predictions back together."""
  room = max_seq_len - 2
  words = [w for row in rows for w in row.texts]
  pieces = iter(max(1, len(e) - 2) for e in tokenizer.encode_batch(words, None, max_seq_len))
  out = []
  for row in rows:
    lengths = [next(pieces) for _ in row.texts]
    if sum(lengths) <= room:
      out.append(row)
      continue
    start, used = 0, 0
    for i, length in enumerate(lengths + [room + 1]):  # a sentinel closes the last window
      if i == len(lengths) or (used + length > room and i > start):
        out.append(Row(f"{row.uid}{WINDOW_MARK}{start}", row.label[start:i], row.texts[start:i]))
        start, used = i, 0
      used += length
  return out


def rejoin_windows(uids: Sequence[str], per_example: Sequence[list]) -> tuple[list[str], list[list]]:
  """Windows' per-word values concatenated back into their sentences (in uid order of first
  appearance; windows are in order within the input, as `split_long_sentences` makes them)."""
  merged: dict[str, list] = {}
  for uid, values in zip(uids, per_example):
    base, mark, start = uid.rpartition(WINDOW_MARK)
    key = base if mark and start.isdigit() else uid
    merged.setdefault(key, []).extend(values)
  return list(merged), list(merged.values())


def tokenize_rows(rows: Sequence[Row], task: TaskDef, tokenizer: Tokenizer, max_seq_len: int,
                  description: str = "tokenizing") -> Features:
  """Canonical rows → features (rows are assumed checked, as `read_canonical` returns them).
  Sentences of a sequence-labelling task that do not fit are split into windows."""
  fmt = task.data_format
  if fmt is DataFormat.SEQUENCE:
    rows = split_long_sentences(rows, tokenizer, max_seq_len)
  encodings: list[Encoding] = []
  candidates: list[int] = []
  labels: list = []
  with tqdm(total=len(rows), desc=description, unit="ex", disable=len(rows) < 10 * _CHUNK,
            leave=False) as progress:
    for start in range(0, len(rows), _CHUNK):
      chunk = rows[start:start + _CHUNK]
      if fmt is DataFormat.SEQUENCE:
        chunk_encodings, token_labels = _tokenize_words(chunk, task, tokenizer, max_seq_len)
        encodings += chunk_encodings
        labels += token_labels
        candidates += [1] * len(chunk)
      else:
        premises = [text for row in chunk for text in _premises(row, fmt)]
        hypotheses = [text for row in chunk for text in row.texts[1:]] or None
        encodings += tokenizer.encode_batch(premises, hypotheses, max_seq_len)
        candidates += [max(1, len(row.texts) - 1) for row in chunk]
        labels += [task.encode_label(row.label) for row in chunk]
      progress.update(len(chunk))

  lengths = np.fromiter((len(e) for e in encodings), np.int64, len(encodings))
  seq_offsets = np.zeros(len(encodings) + 1, np.int64)
  np.cumsum(lengths, out=seq_offsets[1:])
  example_offsets = np.zeros(len(rows) + 1, np.int64)
  np.cumsum(candidates, out=example_offsets[1:])
  label_dtype = np.float32 if task.task_type is TaskType.REGRESSION else np.int32
  return Features(
      input_ids=np.fromiter((t for e in encodings for t in e.input_ids), np.int32,
                            int(seq_offsets[-1])),
      segment_ids=np.fromiter((s for e in encodings for s in e.segment_ids), np.int8,
                              int(seq_offsets[-1])),
      seq_offsets=seq_offsets, example_offsets=example_offsets,
      labels=np.asarray(labels, label_dtype).reshape(-1),
      uids=np.asarray([row.uid for row in rows], dtype=str))


def _premises(row: Row, fmt: DataFormat) -> list[str]:
  if fmt is DataFormat.PREMISE_AND_MULTI_HYPOTHESIS:
    return [row.texts[0]] * (len(row.texts) - 1)  # the premise, paired with each candidate
  return [row.texts[0]]


def _tokenize_words(rows: Sequence[Row], task: TaskDef, tokenizer: Tokenizer,
                    max_seq_len: int) -> tuple[list[Encoding], list[int]]:
  words = [word for row in rows for word in row.texts]
  pieces = iter(tokenizer.encode_batch(words, None, max_seq_len))
  encodings, token_labels = [], []
  for row in rows:
    ids, tags = [tokenizer.cls_id], [IGNORE_LABEL]
    for tag in task.encode_label(row.label):
      # A word the tokenizer drops entirely (a lone control character) still needs a position
      # for its label; [UNK] stands in.
      sub_words = next(pieces).input_ids[1:-1] or [tokenizer.unk_id]
      ids += sub_words
      tags += [tag] + [IGNORE_LABEL] * (len(sub_words) - 1)
    ids, tags = ids[:max_seq_len - 1] + [tokenizer.sep_id], tags[:max_seq_len - 1] + [IGNORE_LABEL]
    encodings.append(Encoding(ids, [0] * len(ids)))
    token_labels += tags
  return encodings, token_labels


def file_digest(path: str | os.PathLike) -> dict:
  """Size and sha256 of a file: what identifies a canonical file's content."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return {"size": os.path.getsize(path), "sha256": h.hexdigest()}


def cache_key(task: TaskDef, source: str | os.PathLike, tokenizer: Tokenizer,
              max_seq_len: int) -> dict:
  """Everything the cached arrays depend on."""
  return {"format": CACHE_FORMAT, "tokenizer": tokenizer.fingerprint(),
          "max_seq_len": max_seq_len, "source": file_digest(source),
          "task": {"task_type": task.task_type.value, "data_format": task.data_format.value,
                   "n_class": task.n_class, "labels": list(task.labels or [])}}


def feature_cache_path(cache_dir: str | os.PathLike, task: str, split: str) -> Path:
  return Path(cache_dir) / f"{task}_{split}.npz"


def save_features(path: str | os.PathLike, features: Features, key: dict) -> None:
  with atomic_file(path, "wb") as f:
    np.savez(f, key=np.asarray(json.dumps(key, sort_keys=True)),
             **{field.name: getattr(features, field.name) for field in dataclasses.fields(Features)})


def load_features(path: str | os.PathLike) -> tuple[Features, dict]:
  """(features, the key they were built under)."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      key = json.loads(str(npz["key"]))
      return Features(**{f.name: npz[f.name] for f in dataclasses.fields(Features)}), key
  except (OSError, ValueError, KeyError) as e:
    raise InputError(path, f"unreadable feature cache ({e}); delete it to rebuild") from None


def _stored_key(path: Path) -> dict | None:
  try:
    with np.load(path, allow_pickle=False) as npz:
      return json.loads(str(npz["key"]))
  except (OSError, ValueError, KeyError):
    return None  # absent or damaged: rebuild


def load_or_build_features(task: TaskDef, split: str, canonical_dir: str | os.PathLike,
                           cache_dir: str | os.PathLike, tokenizer: Tokenizer,
                           max_seq_len: int) -> tuple[Features, bool]:
  """Features of `<canonical_dir>/<task>_<split>.tsv`, from the cache when it is current.

  Returns (features, whether they were (re)built).
  """
  source = canonical_path(canonical_dir, task.name, split)
  if not source.is_file():
    raise InputError(source, "canonical file not found (run scripts/prepro.py first)")
  key = cache_key(task, source, tokenizer, max_seq_len)
  cache = feature_cache_path(cache_dir, task.name, split)
  if cache.is_file() and _stored_key(cache) == key:
    return load_features(cache)[0], False
  rows = read_canonical(source, task)
  features = tokenize_rows(rows, task, tokenizer, max_seq_len, f"tokenizing {source.name}")
  save_features(cache, features, key)
  return features, True
