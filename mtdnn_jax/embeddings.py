"""Embedding extraction: texts (or pairs) → tokens, [CLS] vector and token vectors of a layer.

Batches have static shapes: each text goes to the smallest length bucket that holds it and
every batch is padded to `batch_size` rows, so the jitted encoder compiles at most once per
bucket. Input is processed in chunks so that memory stays flat on large files, and the output
keeps the input's order.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import atomic_file
from mtdnn_jax.model_dir import ModelDir
from mtdnn_jax.models.bert import BertEncoder
from mtdnn_jax.tokenization import Encoding, pad_encodings

PAIR_SEPARATOR = " ||| "


def default_buckets(max_seq_len: int, smallest: int = 16) -> list[int]:
  """Powers of two from `smallest` up to, and ending with, `max_seq_len`."""
  buckets = []
  length = smallest
  while length < max_seq_len:
    buckets.append(length)
    length *= 2
  return buckets + [max_seq_len]


def bucket_length(length: int, buckets: Sequence[int]) -> int:
  for bucket in buckets:
    if length <= bucket:
      return bucket
  raise ValueError(f"length {length} exceeds the largest bucket {buckets[-1]}")


def read_texts(path: str | os.PathLike) -> Iterator[tuple[int, str, str | None]]:
  """(line number, text_a, text_b or None) per line; a pair is written `a ||| b`."""
  try:
    f = open(path, encoding="utf-8", newline="")
  except FileNotFoundError:
    raise InputError(path, "input file not found") from None
  with f:
    line_no = 0
    while True:
      try:
        line = f.readline()
      except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text ({e.reason})", line=line_no + 1) from None
      if not line:
        return
      line_no += 1
      parts = line.rstrip("\r\n").split(PAIR_SEPARATOR)
      if len(parts) > 2:
        raise InputError(path, f"more than one {PAIR_SEPARATOR.strip()!r} separator",
                         line=line_no)
      if any(not part.strip() for part in parts):
        raise InputError(path, "empty text", line=line_no)
      yield line_no, parts[0], (parts[1] if len(parts) == 2 else None)


class EmbeddingExtractor:
  def __init__(self, model: ModelDir, *, layer: int = -1, batch_size: int = 32,
               max_seq_len: int = 128, buckets: Sequence[int] | None = None,
               dtype=jnp.float32):
    config = model.config
    num_states = config.num_hidden_layers + 1  # the embedding output, then every layer
    if not -num_states <= layer < num_states:
      raise InputError(None, f"must be in [{-num_states}, {num_states - 1}] for a "
                       f"{config.num_hidden_layers}-layer encoder (0 = embedding output)",
                       field="--layer")
    if max_seq_len > config.max_position_embeddings:
      raise InputError(None, f"{max_seq_len} exceeds the model's max_position_embeddings="
                       f"{config.max_position_embeddings}", field="--max_seq_len")
    self.layer = layer % num_states
    self.batch_size = batch_size
    self.max_seq_len = max_seq_len
    self.buckets = sorted(buckets) if buckets else default_buckets(max_seq_len)
    self.tokenizer = model.tokenizer()
    self.params = jax.tree_util.tree_map(jnp.asarray, model.params)
    encoder = BertEncoder(config, dtype=dtype)
    last = self.layer == config.num_hidden_layers

    @jax.jit
    def forward(params, input_ids, segment_ids, attention_mask):
      out = encoder.apply({"params": params}, input_ids, segment_ids, attention_mask,
                          output_hidden_states=not last)
      states = out.last_hidden_state if last else out.hidden_states[self.layer]
      return states.astype(jnp.float32)

    self._forward = forward

  def embed(self, encodings: Sequence[Encoding]) -> list[np.ndarray]:
    """Token vectors [len(encoding), hidden] of the chosen layer, one array per encoding."""
    by_bucket: dict[int, list[int]] = {}
    for i, enc in enumerate(encodings):
      by_bucket.setdefault(bucket_length(len(enc), self.buckets), []).append(i)
    results: list[np.ndarray | None] = [None] * len(encodings)
    for length, indices in sorted(by_bucket.items()):
      for start in range(0, len(indices), self.batch_size):
        rows = indices[start:start + self.batch_size]
        # Pad the batch with copies of its first row: fixed shapes, results discarded.
        batch = pad_encodings([encodings[i] for i in rows] +
                              [encodings[rows[0]]] * (self.batch_size - len(rows)),
                              length, self.tokenizer.pad_id)
        states = np.asarray(self._forward(self.params, batch["input_ids"],
                                          batch["segment_ids"], batch["attention_mask"]))
        for row, i in enumerate(rows):
          results[i] = states[row, :len(encodings[i])]
    return results

  def extract_file(self, finput: str | os.PathLike, foutput: str | os.PathLike,
                   chunk_size: int = 4096, show_progress: bool = True) -> int:
    """Writes one JSON object per input line to `foutput` (atomically); returns the count."""
    total = sum(1 for _ in open(finput, "rb")) if Path(finput).is_file() else None
    count = 0
    with atomic_file(foutput) as out, tqdm(total=total, unit="text", disable=not show_progress,
                                           desc="extracting") as progress:
      chunk: list[tuple[int, str, str | None]] = []
      for item in read_texts(finput):
        chunk.append(item)
        if len(chunk) == chunk_size:
          count += self._write_chunk(chunk, out)
          progress.update(len(chunk))
          chunk = []
      if chunk:
        count += self._write_chunk(chunk, out)
        progress.update(len(chunk))
    return count

  def _write_chunk(self, chunk, out) -> int:
    encodings = [self.tokenizer.encode(a, b, self.max_seq_len) for _, a, b in chunk]
    for (line_no, text_a, text_b), enc, vectors in zip(chunk, encodings, self.embed(encodings)):
      record = {"line": line_no, "text_a": text_a, "layer": self.layer,
                "tokens": self.tokenizer.convert_ids_to_tokens(enc.input_ids),
                "cls": vectors[0].tolist(), "token_vectors": vectors.tolist()}
      if text_b is not None:
        record["text_b"] = text_b
      out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(chunk)
