"""SQuAD v1.1 / v2.0: the official JSON → examples → question-first windows over the context.

MRC data has no canonical TSV layout (SPEC.md §6), so this module reads the official JSON
directly and makes its own arrays, `SpanFeatures`, instead of `features.Features`: a window
needs per-token character offsets back into the context and the index of the example it came
from, which the flat GLUE-style container has no place for.

Windows follow Google BERT's `run_squad.py`: `[CLS] question [SEP] context-window [SEP]`, the
question cut to `max_query_len` tokens, the context split into windows of as many tokens as
fit in `max_seq_len`, each starting `doc_stride` tokens after the previous one, the last one
ending at the context's end. A training window's answer is the token span covering the answer's
characters when the whole span lies inside the window; otherwise, and for unanswerable
questions, it is the [CLS] position 0 ("no answer here"). A token seen by several windows is
scored only in the window where it has the most context on both sides (`token_is_max_context`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import ml_collections
import numpy as np

from mtdnn_jax.data.features import Features
from mtdnn_jax.errors import InputError
from mtdnn_jax.tokenization import Tokenizer

VERSIONS = ("1.1", "2.0")
NOT_CONTEXT = -1  # the character offset of question, special and padding tokens


@dataclasses.dataclass(frozen=True)
class SquadExample:
  id: str
  question: str
  context: str
  answers: tuple[tuple[str, int], ...]  # (text, character start in context); () if impossible
  is_impossible: bool = False


@dataclasses.dataclass(frozen=True)
class SpanFeatures:
  """Windows over SQuAD examples, right-padded to `max_seq_len`: arrays are [n_windows, L].

  The text of tokens s..e of window w is
  `context[token_char_start[w, s]:token_char_end[w, e]]` of example `example_index[w]`; the
  offsets are NOT_CONTEXT outside the context window. `start_positions`/`end_positions` are
  the gold span (0 = [CLS] = no answer in this window), present only for training windows.
  """
  input_ids: np.ndarray  # int32
  segment_ids: np.ndarray  # int32: 0 for [CLS] question [SEP], 1 for context [SEP]
  attention_mask: np.ndarray  # int32
  token_char_start: np.ndarray  # int32
  token_char_end: np.ndarray  # int32
  token_is_max_context: np.ndarray  # bool
  example_index: np.ndarray  # int32 [n_windows]
  start_positions: np.ndarray | None = None  # int32 [n_windows]
  end_positions: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.example_index)


def read_squad(path: str | os.PathLike, version: str) -> list[SquadExample]:
  """Examples of an official SQuAD JSON file, in file order; every answer offset is checked."""
  if version not in VERSIONS:
    raise ValueError(f"SQuAD version must be one of {VERSIONS}, got {version!r}")
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise InputError(path, "SQuAD file not found") from None
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise InputError(path, f"not UTF-8 text ({e.reason} at byte {e.start})",
                     line=raw[:e.start].count(b"\n") + 1) from None
  try:
    document = json.loads(text)
  except json.JSONDecodeError as e:
    raise InputError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
  if not isinstance(document, dict) or not isinstance(document.get("data"), list):
    raise InputError(path, "not a SQuAD file: no top-level \"data\" list of articles")

  def expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
      raise InputError(path, f"expected {kind.__name__}, got {type(value).__name__}", field=where)
    return value

  examples, seen_ids = [], set()
  for a, article in enumerate(document["data"]):
    paragraphs = expect(expect(article, dict, f"data[{a}]").get("paragraphs"), list,
                        f"data[{a}].paragraphs")
    for p, paragraph in enumerate(paragraphs):
      where_p = f"data[{a}].paragraphs[{p}]"
      context = expect(expect(paragraph, dict, where_p).get("context"), str, f"{where_p}.context")
      for q, qa in enumerate(expect(paragraph.get("qas"), list, f"{where_p}.qas")):
        where_q = f"{where_p}.qas[{q}]"
        expect(qa, dict, where_q)
        qid = expect(qa.get("id"), str, f"{where_q}.id")
        if qid in seen_ids:  # predictions are keyed by id
          raise InputError(path, f"question id {qid!r} appears twice", field=where_q)
        seen_ids.add(qid)
        is_impossible = qa.get("is_impossible", False)
        if not isinstance(is_impossible, bool):
          raise InputError(path, "must be true/false", field=f"{where_q}.is_impossible")
        if is_impossible and version == "1.1":
          raise InputError(path, f"question {qid!r} is marked is_impossible, which SQuAD v1.1 "
                           "does not have (read the file as version 2.0)", field=where_q)
        answers = []
        for i, answer in enumerate(expect(qa.get("answers"), list, f"{where_q}.answers")):
          where_a = f"{where_q}.answers[{i}]"
          answer_text = expect(expect(answer, dict, where_a).get("text"), str, f"{where_a}.text")
          start = expect(answer.get("answer_start"), int, f"{where_a}.answer_start")
          end = start + len(answer_text)
          if start < 0 or context[start:end] != answer_text:
            raise InputError(path, f"question {qid!r}: answer {answer_text!r} does not match the "
                             f"context at answer_start={start} (context[{start}:{end}] is "
                             f"{context[max(start, 0):end]!r})", field=where_a)
          answers.append((answer_text, start))
        if is_impossible and answers:
          raise InputError(path, f"question {qid!r} is marked is_impossible but has answers",
                           field=where_q)
        if not is_impossible and not answers:
          raise InputError(path, f"question {qid!r} has no answers and is not marked "
                           "is_impossible", field=where_q)
        examples.append(SquadExample(qid, expect(qa.get("question"), str, f"{where_q}.question"),
                                     context, tuple(answers), is_impossible))
  return examples


def _window_starts(n_tokens: int, window_len: int, doc_stride: int) -> list[int]:
  """Starts of windows of up to `window_len` tokens, `doc_stride` apart, the last one reaching
  the end (BERT's rule, so the tail is never dropped); one empty window for an empty context."""
  starts = [0]
  while starts[-1] + window_len < n_tokens:
    starts.append(starts[-1] + min(window_len, doc_stride))
  return starts


def _answer_token_span(offsets: np.ndarray, char_start: int, char_end: int
                       ) -> tuple[int, int] | None:
  """First and last context token overlapping characters [char_start, char_end); None when
  the answer's characters produced no token (whitespace or characters the tokenizer drops)."""
  covering = np.flatnonzero((offsets[:, 0] < char_end) & (offsets[:, 1] > char_start))
  return (int(covering[0]), int(covering[-1])) if len(covering) else None


def _max_context_windows(n_tokens: int, starts: Sequence[int], window_len: int) -> np.ndarray:
  """For each context token, the window where it has the most context: the most tokens on its
  shorter side, ties to the longer window, then the earlier one (BERT's
  `_check_is_max_context`)."""
  best_score = np.full(n_tokens, -np.inf)
  best_window = np.zeros(n_tokens, np.int64)
  for w, start in enumerate(starts):
    positions = np.arange(start, min(start + window_len, n_tokens))
    score = np.minimum(positions - start, positions[-1:] - positions) + 0.01 * len(positions)
    better = score > best_score[positions]
    best_score[positions[better]] = score[better]
    best_window[positions[better]] = w
  return best_window


def make_windows(examples: Sequence[SquadExample], tokenizer: Tokenizer, max_seq_len: int = 384,
                 doc_stride: int = 128, max_query_len: int = 64,
                 training: bool = False) -> SpanFeatures:
  """Question-first windows over each example's context (see the module docstring).

  A training answer whose characters produced no token at all (only characters the tokenizer
  drops) cannot be pointed at, so its windows say [CLS] like an unanswerable question's.
  """
  if doc_stride < 1:
    raise ValueError(f"doc_stride must be positive, got {doc_stride}")
  if max_seq_len - max_query_len - 3 < 1:
    raise ValueError(f"max_seq_len={max_seq_len} leaves no room for context after a question "
                     f"of up to {max_query_len} tokens, [CLS] and two [SEP]")
  hf_tokenizer = tokenizer._tok  # the Rust tokenizer, for its character offsets
  questions = hf_tokenizer([ex.question for ex in examples], add_special_tokens=False,
                           return_attention_mask=False)["input_ids"]
  # Questions of one paragraph share its context: tokenize each distinct context once.
  contexts = list(dict.fromkeys(ex.context for ex in examples))
  encoded = hf_tokenizer(contexts, add_special_tokens=False, return_offsets_mapping=True,
                         return_attention_mask=False)
  context_tokens = {c: (np.asarray(ids, np.int32), np.asarray(offsets, np.int32).reshape(-1, 2))
                    for c, ids, offsets in zip(contexts, encoded["input_ids"],
                                               encoded["offset_mapping"])}

  # First the window layout of every example, then one pass filling preallocated arrays.
  plans = []  # (question ids, window starts, window length, max-context window per token, gold)
  for example, question in zip(examples, questions):
    question = question[:max_query_len]
    n_tokens = len(context_tokens[example.context][0])
    window_len = max_seq_len - len(question) - 3
    starts = _window_starts(n_tokens, window_len, doc_stride)
    gold = None
    if training and not example.is_impossible:
      if not example.answers:
        raise ValueError(f"training example {example.id!r} has no answer")
      text, char_start = example.answers[0]  # SQuAD training questions have exactly one
      gold = _answer_token_span(context_tokens[example.context][1], char_start,
                                char_start + len(text))
    plans.append((question, starts, window_len, _max_context_windows(n_tokens, starts, window_len),
                  gold))

  n = sum(len(starts) for _, starts, _, _, _ in plans)
  input_ids = np.full((n, max_seq_len), tokenizer.pad_id, np.int32)
  segment_ids = np.zeros((n, max_seq_len), np.int32)
  attention_mask = np.zeros((n, max_seq_len), np.int32)
  token_char_start = np.full((n, max_seq_len), NOT_CONTEXT, np.int32)
  token_char_end = np.full((n, max_seq_len), NOT_CONTEXT, np.int32)
  token_is_max_context = np.zeros((n, max_seq_len), bool)
  example_index = np.zeros(n, np.int32)
  gold_spans = np.zeros((n, 2), np.int32)  # [CLS] unless the whole answer is in the window
  r = 0
  for e, (example, (question, starts, window_len, max_context_window, gold)) in enumerate(
      zip(examples, plans)):
    doc_ids, doc_offsets = context_tokens[example.context]
    prefix = len(question) + 2  # [CLS] question [SEP]
    for w, start in enumerate(starts):
      end = min(start + window_len, len(doc_ids))
      length = prefix + end - start + 1
      input_ids[r, :prefix] = [tokenizer.cls_id, *question, tokenizer.sep_id]
      input_ids[r, prefix:length - 1] = doc_ids[start:end]
      input_ids[r, length - 1] = tokenizer.sep_id
      segment_ids[r, prefix:length] = 1
      attention_mask[r, :length] = 1
      token_char_start[r, prefix:length - 1] = doc_offsets[start:end, 0]
      token_char_end[r, prefix:length - 1] = doc_offsets[start:end, 1]
      token_is_max_context[r, prefix:length - 1] = max_context_window[start:end] == w
      example_index[r] = e
      if gold is not None and start <= gold[0] and gold[1] < end:
        gold_spans[r] = (gold[0] - start + prefix, gold[1] - start + prefix)
      r += 1
  return SpanFeatures(
      input_ids=input_ids, segment_ids=segment_ids, attention_mask=attention_mask,
      token_char_start=token_char_start, token_char_end=token_char_end,
      token_is_max_context=token_is_max_context, example_index=example_index,
      start_positions=gold_spans[:, 0].copy() if training else None,
      end_positions=gold_spans[:, 1].copy() if training else None)


# A window's gold span as per-token marks, so that span tasks batch like sequence labelling:
# bit 0 marks the start token, bit 1 the end token (both on one token: 3; [CLS] for no answer).
SPAN_START, SPAN_END = 1, 2


def windows_as_features(windows: SpanFeatures, examples: Sequence[SquadExample]) -> Features:
  """The windows as `features.Features` (one example per window, unpadded), for the bucketed
  multi-task batcher; evaluation maps predictions back through `windows`."""
  lengths = windows.attention_mask.sum(axis=1).astype(np.int64)
  keep = np.arange(windows.input_ids.shape[1])[None, :] < lengths[:, None]
  marks = np.zeros(windows.input_ids.shape, np.int32)
  if windows.start_positions is not None:
    rows = np.arange(len(windows))
    marks[rows, windows.start_positions] |= SPAN_START
    marks[rows, windows.end_positions] |= SPAN_END
  offsets = np.zeros(len(windows) + 1, np.int64)
  np.cumsum(lengths, out=offsets[1:])
  return Features(input_ids=windows.input_ids[keep].astype(np.int32),
                  segment_ids=windows.segment_ids[keep].astype(np.int8),
                  seq_offsets=offsets, example_offsets=np.arange(len(windows) + 1),
                  labels=marks[keep],
                  uids=np.asarray([examples[i].id for i in windows.example_index], dtype=str))


def default_squad_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      doc_stride=128,  # tokens between the starts of consecutive context windows
      max_query_len=64,  # questions are cut to this many tokens
      n_best=20,  # candidate starts and ends considered per window
      max_answer_len=30,  # tokens
  ))


def squad_path(data_dir: str | os.PathLike, task: str, split: str) -> Path:
  """Where a span task's split lives: the official JSON, named `<task>_<split>.json`."""
  return Path(data_dir) / f"{task}_{split}.json"
