"""What evaluation writes: score files (for analysis and distillation) and GLUE submissions.

Score file: one JSON object, as the reference writes it,
  {"metrics": {"ACC": 71.2, ...}, "predictions": [...], "scores": [...], "uids": [...]}
with one prediction (label id; a float for regression) and one score entry (the class
probabilities, a regression value, or the candidate scores of a ranking example) per uid.
Unlike the reference, which flattens `scores` into one list, each example's scores are a list
of their own; `read_score_file` reads both shapes. Non-finite numbers are written as null
(strict JSON has no NaN) and read back as nan.

GLUE submission: `<Task>.tsv` with the header `index\tprediction`, one row per test example in
increasing index order, labels as the task's label strings (GLUE_SUBMISSION_NAMES gives the
file names the GLUE server expects).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import atomic_file
from mtdnn_jax.tasks import TaskDef, TaskType

# (task, split) → the file name the GLUE server expects. QNLI as ranking (qnlir) is submitted
# as QNLI, expanded back to one row per candidate sentence.
GLUE_SUBMISSION_NAMES: dict[tuple[str, str], str] = {
    ("cola", "test"): "CoLA.tsv",
    ("sst", "test"): "SST-2.tsv",
    ("mrpc", "test"): "MRPC.tsv",
    ("stsb", "test"): "STS-B.tsv",
    ("qqp", "test"): "QQP.tsv",
    ("mnli", "matched_test"): "MNLI-m.tsv",
    ("mnli", "mismatched_test"): "MNLI-mm.tsv",
    ("qnli", "test"): "QNLI.tsv",
    ("qnlir", "test"): "QNLI.tsv",
    ("rte", "test"): "RTE.tsv",
    ("wnli", "test"): "WNLI.tsv",
    ("ax", "test"): "AX.tsv",
}

STSB_SCORE_RANGE = (0.0, 5.0)  # GLUE's STS-B similarity scale; regression output is clipped to it


@dataclasses.dataclass(frozen=True)
class ScoreFile:
  uids: list[str]
  predictions: np.ndarray  # [N] label ids (int) or regression values (float)
  scores: np.ndarray | list[np.ndarray]  # [N, C] or [N]; a list when rows differ in length
  metrics: dict[str, float]


def write_score_file(path: str | os.PathLike, *, task: TaskDef, uids: Sequence[str],
                     predictions, scores, metrics: Mapping[str, float] | None = None) -> None:
  """Writes one evaluated split's uids, predictions, scores and metrics (atomically)."""
  score_rows = _rows(scores)
  _check_lengths(path, uids, predictions, score_rows)
  regression = task.task_type is TaskType.REGRESSION
  document = {
      "metrics": {name: _finite_or_none(value) for name, value in (metrics or {}).items()},
      "predictions": [_finite_or_none(float(p)) if regression else int(p)
                      for p in np.asarray(predictions).ravel()],
      "scores": [_finite_or_none(float(row)) if np.ndim(row) == 0
                 else [_finite_or_none(float(x)) for x in row] for row in score_rows],
      "uids": [str(uid) for uid in uids],
  }
  with atomic_file(path) as f:
    json.dump(document, f, allow_nan=False, ensure_ascii=False)
    f.write("\n")


def read_score_file(path: str | os.PathLike) -> ScoreFile:
  """Reads a score file written by `write_score_file` or by the reference MT-DNN.

  The reference's flat `scores` list (N·C numbers for N uids) is reshaped to [N, C].
  """
  try:
    with open(path, encoding="utf-8") as f:
      document = json.load(f)
  except FileNotFoundError:
    raise InputError(path, "score file not found") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise InputError(path, f"not a JSON score file ({e})") from None
  missing = [k for k in ("uids", "predictions", "scores")
             if not isinstance(document, dict) or not isinstance(document.get(k), list)]
  if missing:
    raise InputError(path, f"a score file needs the lists {missing}")
  uids, scores = [str(u) for u in document["uids"]], document["scores"]
  # JSON keeps 3 and 3.0 apart: label ids stay integers, regression values floats. None
  # (written for a non-finite number) becomes nan through the float dtype.
  predictions = document["predictions"]
  predictions = np.asarray(predictions, dtype=np.int64 if all(
      isinstance(p, int) for p in predictions) else float)
  if any(isinstance(row, list) for row in scores):
    rows = [np.asarray(row, dtype=float) for row in scores]
    scores = (np.stack(rows) if rows and all(len(r) == len(rows[0]) for r in rows)
              else rows)
  else:
    scores = np.asarray(scores, dtype=float)
    if uids and len(scores) != len(uids) and len(scores) % len(uids) == 0:
      scores = scores.reshape(len(uids), -1)
  _check_lengths(path, uids, predictions, scores)
  return ScoreFile(uids=uids, predictions=predictions, scores=scores,
                   metrics=dict(document.get("metrics") or {}))


def write_glue_submission(path: str | os.PathLike, *, task: TaskDef, uids: Sequence,
                          predictions, scores) -> None:
  """Writes GLUE's `index\\tprediction` TSV for one test split (atomically).

  `uids` are GLUE's index column, as `data.raw` makes the uids of GLUE test rows.
  Classification: the predicted label's string. Regression (STS-B): the predicted score,
  clipped to GLUE's [0, 5] (the reference wrote an argmax over one column, always 0).
  Ranking (qnlir): one row per candidate sentence, the chosen one labelled with the best grade
  (`labels[-1]`, "entailment") and the others with the worst (`labels[0]`); each uid must then
  list the example's candidate indices, as a sequence or comma-joined
  (`data.canonical.Row.candidate_uids`): a question number alone cannot be expanded.
  """
  _check_lengths(path, uids, predictions, _rows(scores))
  if task.task_type is TaskType.CLASSIFICATION:
    rows = [(uid, task.id_to_label(int(p))) for uid, p in zip(uids, np.ravel(predictions))]
  elif task.task_type is TaskType.REGRESSION:
    low, high = STSB_SCORE_RANGE
    values = np.clip(np.asarray(scores, np.float64).ravel(), low, high)
    rows = [(uid, f"{v:.6f}") for uid, v in zip(uids, values)]
  elif task.task_type is TaskType.RANKING:
    rows = _expand_ranking(path, task, uids, predictions)
  else:
    raise InputError(path, f"GLUE has no {task.task_type.value} task; no submission format "
                     f"for task {task.name!r}")
  indexed = sorted(((_glue_index(path, uid), label) for uid, label in rows),
                   key=lambda row: row[0])
  duplicated = sorted({a for (a, _), (b, _) in zip(indexed, indexed[1:]) if a == b})
  if duplicated:
    raise InputError(path, f"index(es) {duplicated[:5]} occur more than once; a submission has "
                     "one row per test example")
  with atomic_file(path, newline="") as f:
    f.write("index\tprediction\n")
    f.writelines(f"{index}\t{label}\n" for index, label in indexed)


def _expand_ranking(path, task: TaskDef, uids: Sequence, predictions) -> list[tuple[str, str]]:
  best = task.labels[-1] if task.labels else "1"
  worst = task.labels[0] if task.labels else "0"
  rows = []
  for uid, chosen in zip(uids, np.ravel(predictions)):
    if isinstance(uid, str):
      candidates = uid.split(",") if "," in uid else None
    else:
      candidates = [str(c) for c in uid]
    if candidates is None:
      raise InputError(path, f"ranking uid {uid!r} does not list its candidates; pass each "
                       "example's candidate uids (Row.candidate_uids, as a list or "
                       "'id1,id2,...') so the submission can have one row per candidate")
    if not 0 <= int(chosen) < len(candidates):
      raise InputError(path, f"predicted candidate {int(chosen)} of example {uid!r}, which has "
                       f"{len(candidates)} candidates")
    rows += [(c, best if i == int(chosen) else worst) for i, c in enumerate(candidates)]
  return rows


def _glue_index(path, uid) -> int:
  try:
    return int(uid)
  except (TypeError, ValueError):
    raise InputError(path, f"uid {uid!r} is not a GLUE index; a submission is written from a "
                     "GLUE test split, whose uids are its index column") from None


def _rows(scores) -> list:
  """Scores per example: an array's rows, or the given list (whose rows may differ in length)."""
  return list(scores) if isinstance(scores, (list, tuple)) else list(np.asarray(scores))


def _check_lengths(path, uids: Sequence, predictions, score_rows) -> None:
  counts = {"uids": len(uids), "predictions": len(np.ravel(predictions)),
            "scores": len(score_rows)}
  if len(set(counts.values())) != 1:
    raise InputError(path, "uids, predictions and scores differ in length: " +
                     ", ".join(f"{k} {v}" for k, v in counts.items()))


def _finite_or_none(value: Any) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None
