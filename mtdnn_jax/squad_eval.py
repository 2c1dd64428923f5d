"""SQuAD answers: span logits → answer texts, and EM/F1 by the official evaluation rules.

`postprocess` follows Google BERT's `write_predictions`: per window, the `n_best` highest start
and end logits form candidate spans (start ≤ end, at most `max_answer_len` tokens, both in the
context, the start in the window where it has the most context); the best candidate over all
of an example's windows is the answer, cut from the original context by character offsets. For
SQuAD v2 the null score is the [CLS] start + end logit (the lowest over the example's
windows), and "" is predicted when null − best span score exceeds `null_threshold`.

`evaluate` and `best_null_threshold` re-implement the official v2.0 evaluation script (which
scores v1.1 data the same way): answers normalised (lower-case, no punctuation, no articles,
single spaces), exact match and token-overlap F1 taken as the best over the gold answers, an
unanswerable question's gold being "". A question without a prediction scores 0, as in v1.1's
script. Scores are percentages; a HasAns/NoAns group with no questions is left out, as the
official script leaves it out.
"""
from __future__ import annotations

import collections
import os
import re
import string
from typing import Mapping, Sequence

import numpy as np

from mtdnn_jax.data.squad import NOT_CONTEXT, SpanFeatures, SquadExample, VERSIONS
from mtdnn_jax.fileio import write_json

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(gold: str, prediction: str) -> float:
  return float(normalize_answer(gold) == normalize_answer(prediction))


def f1(gold: str, prediction: str) -> float:
  gold_tokens = normalize_answer(gold).split()
  predicted_tokens = normalize_answer(prediction).split()
  if not gold_tokens or not predicted_tokens:
    return float(gold_tokens == predicted_tokens)  # "no answer" is right only against itself
  common = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(predicted_tokens), common / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def _gold_answers(example: SquadExample) -> list[str]:
  # As the official script: gold answers that normalise to nothing are dropped, and a question
  # left without any is an unanswerable one whose only right answer is "".
  return [text for text, _ in example.answers if normalize_answer(text)] or [""]


def _raw_scores(examples: Sequence[SquadExample], predictions: Mapping[str, str]
                ) -> tuple[dict[str, float], dict[str, float]]:
  exact, overlap = {}, {}
  for example in examples:
    if example.id not in predictions:
      exact[example.id] = overlap[example.id] = 0.0
      continue
    prediction = predictions[example.id]
    golds = _gold_answers(example)
    exact[example.id] = max(exact_match(gold, prediction) for gold in golds)
    overlap[example.id] = max(f1(gold, prediction) for gold in golds)
  return exact, overlap


def _has_answer(example: SquadExample) -> bool:
  return bool(example.answers)  # the official HasAns split looks at the raw answers


def evaluate(examples: Sequence[SquadExample], predictions: Mapping[str, str]) -> dict:
  """{"exact", "f1", "total"} and the same prefixed "HasAns_"/"NoAns_" per non-empty group."""
  exact, overlap = _raw_scores(examples, predictions)
  groups = {"": examples,
            "HasAns_": [ex for ex in examples if _has_answer(ex)],
            "NoAns_": [ex for ex in examples if not _has_answer(ex)]}
  result = {}
  for prefix, group in groups.items():
    if group:
      result[f"{prefix}exact"] = 100.0 * sum(exact[ex.id] for ex in group) / len(group)
      result[f"{prefix}f1"] = 100.0 * sum(overlap[ex.id] for ex in group) / len(group)
      result[f"{prefix}total"] = len(group)
  return result


def best_null_threshold(null_diffs: Mapping[str, float], examples: Sequence[SquadExample],
                        predictions: Mapping[str, str]) -> dict:
  """The null threshold that maximises EM, and the one that maximises F1, on these examples.

  `predictions` must be each question's best non-null answer (`postprocess` with
  `null_threshold=inf`); a question is then answered "" when its null diff exceeds the
  threshold. Returns {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}, scores
  in percent: the official script's `find_best_thresh`, with null diffs as its no-answer
  probabilities.
  """
  exact, overlap = _raw_scores(examples, predictions)
  result = {}
  for name, scores in (("exact", exact), ("f1", overlap)):
    # Start from answering "" everywhere, then answer questions in order of rising null diff.
    score = best = sum(not _has_answer(ex) for ex in examples)
    threshold = 0.0
    for example in sorted(examples, key=lambda ex: null_diffs[ex.id]):
      if _has_answer(example):
        score += scores[example.id]
      elif predictions.get(example.id):
        score -= 1  # an unanswerable question that now gets a non-empty answer
      if score > best:
        best, threshold = score, null_diffs[example.id]
    result[f"best_{name}"] = 100.0 * best / len(examples)
    result[f"best_{name}_thresh"] = float(threshold)
  return result


def postprocess(windows: SpanFeatures, start_logits: np.ndarray, end_logits: np.ndarray,
                examples: Sequence[SquadExample], n_best: int = 20, max_answer_len: int = 30,
                version: str = "1.1", null_threshold: float = 0.0
                ) -> tuple[dict[str, str], dict[str, list[dict]], dict[str, float]]:
  """Span logits [n_windows, L] → (predictions {id: text}, n-best lists, null score diffs).

  `examples` are the ones `windows` were made from, in the same order (`example_index`).

  Each n-best entry is {"text", "probability", "start_logit", "end_logit", "char_start",
  "char_end"}, best first, probabilities a softmax over the list; v2 lists include the null
  answer "" (char offsets -1). A null diff is null score − best span score (+inf when no valid
  span exists).
  """
  if version not in VERSIONS:
    raise ValueError(f"SQuAD version must be one of {VERSIONS}, got {version!r}")
  start_logits = np.asarray(start_logits, np.float32)
  end_logits = np.asarray(end_logits, np.float32)
  if start_logits.shape != windows.input_ids.shape or end_logits.shape != windows.input_ids.shape:
    raise ValueError(f"logits of shapes {start_logits.shape} and {end_logits.shape} do not match "
                     f"the windows' {windows.input_ids.shape}")
  in_context = windows.token_char_start != NOT_CONTEXT
  can_start = in_context & windows.token_is_max_context
  windows_of = collections.defaultdict(list)
  for w, e in enumerate(windows.example_index):
    windows_of[int(e)].append(w)

  predictions, nbest_lists, null_diffs = {}, {}, {}
  for e, example in enumerate(examples):
    candidates = []  # (score, start logit, end logit, char start, char end)
    null = (np.inf, 0.0, 0.0)
    for w in windows_of[e]:
      starts, ends = start_logits[w], end_logits[w]
      null = min(null, (float(starts[0] + ends[0]), float(starts[0]), float(ends[0])))
      top_starts = _top_positions(starts, can_start[w], n_best)
      top_ends = _top_positions(ends, in_context[w], n_best)
      length = top_ends[None, :] - top_starts[:, None] + 1
      for i, j in zip(*np.nonzero((length >= 1) & (length <= max_answer_len))):
        s, t = top_starts[i], top_ends[j]
        candidates.append((float(starts[s] + ends[t]), float(starts[s]), float(ends[t]),
                           int(windows.token_char_start[w, s]), int(windows.token_char_end[w, t])))
    candidates.sort(key=lambda c: -c[0])

    entries, seen_texts = [], set()
    for score, start_logit, end_logit, char_start, char_end in candidates:
      text = example.context[char_start:char_end]
      if text in seen_texts:  # the same words found in two windows count once
        continue
      seen_texts.add(text)
      entries.append({"text": text, "score": score, "start_logit": start_logit,
                      "end_logit": end_logit, "char_start": char_start, "char_end": char_end})
      if len(entries) == n_best:
        break
    best_text = entries[0]["text"] if entries else ""
    best_score = entries[0]["score"] if entries else -np.inf
    null_diffs[example.id] = null[0] - best_score
    if version == "2.0":
      entries.append({"text": "", "score": null[0], "start_logit": null[1], "end_logit": null[2],
                      "char_start": NOT_CONTEXT, "char_end": NOT_CONTEXT})
      entries.sort(key=lambda entry: -entry["score"])
      predictions[example.id] = "" if null_diffs[example.id] > null_threshold else best_text
    else:
      predictions[example.id] = best_text
    if entries:
      scores = np.asarray([entry.pop("score") for entry in entries])
      weights = np.exp(scores - scores.max())
      for entry, weight in zip(entries, weights / weights.sum()):
        entry["probability"] = float(weight)
    nbest_lists[example.id] = entries
  return predictions, nbest_lists, null_diffs


def _top_positions(logits: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
  """The (up to) n allowed positions with the highest logits."""
  positions = np.flatnonzero(allowed)
  return positions[np.argsort(-logits[positions], kind="stable")[:n]]


def write_predictions(path: str | os.PathLike, predictions: Mapping[str, str]) -> None:
  """The official predictions file, {question id: answer text}, written atomically."""
  write_json(path, dict(predictions))
