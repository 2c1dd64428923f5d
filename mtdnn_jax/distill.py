"""Knowledge distillation (SPEC.md §4; Liu et al., arXiv:1904.09482).

An ensemble of trained MT-DNNs (different seeds, configs or encoders) scores each task's
training set; their class probabilities (regression: scores; ranking: candidate probabilities)
are averaged into one soft-label file per task, `<task>_<split>_soft.json` (a score file). The
student then trains on hard_weight · (its usual loss) + kd_weight · D(soft ‖ student), D being
the task's `kd_loss` divergence (KL unless the task names another; squared error to the
teachers' score for regression).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np

from mtdnn_jax.data.features import Features
from mtdnn_jax.errors import InputError
from mtdnn_jax.losses import MASKED
from mtdnn_jax.metrics import compute_metrics
from mtdnn_jax.models.heads import HeadOutputs
from mtdnn_jax.submission import read_score_file, write_score_file
from mtdnn_jax.tasks import TaskDef, TaskType


def default_distill_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      soft_labels_dir="",  # where scripts/distill.py wrote <task>_<split>_soft.json; "" = off
      hard_weight=1.0,  # weight of the task's own loss on the gold labels
      kd_weight=1.0,  # weight of the divergence to the teachers' soft labels
  ))


def soft_label_path(directory: str | os.PathLike, task: str, split: str) -> Path:
  return Path(directory) / f"{task}_{split}_soft.json"


def write_ensemble_soft_labels(path: str | os.PathLike, task: TaskDef,
                               predictions: Sequence) -> dict[str, float]:
  """Averages the teachers' `Predictions` of one split (same examples, same order) into a score
  file; returns (and stores) the ensemble's own metrics on the split when it has gold labels,
  which is how the teachers as one model compare with a student (docs/RESULTS.md)."""
  uids = predictions[0].uids
  for p in predictions[1:]:
    if p.uids != uids:
      raise ValueError("teachers scored different examples")
  scores = np.mean([np.asarray(p.scores, np.float64) for p in predictions], axis=0)
  best = scores if task.task_type is TaskType.REGRESSION else scores.argmax(-1)
  metrics = {}
  if predictions[0].has_gold_labels():
    metrics = compute_metrics(task, best, scores, predictions[0].labels,
                              candidate_mask=predictions[0].candidate_mask)
  write_score_file(path, task=task, uids=uids, predictions=best, scores=scores,
                   metrics={"teachers": float(len(predictions)), **metrics})
  return metrics


def soft_label_table(path: str | os.PathLike, features: Features, width: int) -> np.ndarray:
  """[n_examples, width] float32 soft labels aligned with `features` (a regression score in
  column 0); InputError when the file's examples are not the features' examples."""
  soft = read_score_file(path)
  if list(soft.uids) != [str(u) for u in features.uids]:
    raise InputError(path, f"its {len(soft.uids)} uids do not match the {len(features)} examples "
                     "of the training split (made from another file?)")
  table = np.zeros((len(features), width), np.float32)
  for i, row in enumerate(soft.scores):
    row = np.atleast_1d(np.asarray(row, np.float32))
    table[i, :len(row)] = row
  return table


def attach_soft_labels(batch: dict[str, np.ndarray], tables: Sequence[np.ndarray]) -> None:
  """Adds `soft_labels` [B, width] to a host batch: each row's teachers' average (0 for padding
  rows and for tasks without soft labels)."""
  rows = np.zeros((len(batch["task_id"]), tables[0].shape[1]), np.float32)
  for i, (task, example) in enumerate(zip(batch["task_id"], batch["example_index"])):
    if example >= 0 and len(tables[task]):
      rows[i] = tables[task][example]
  batch["soft_labels"] = rows


def soft_outputs(soft_labels, student: HeadOutputs) -> HeadOutputs:
  """Soft labels shaped as the student's head outputs, so that the same divergences compare
  them (log-probabilities as logits; a regression score as the score)."""
  log_probs = jnp.where(soft_labels > 0, jnp.log(jnp.maximum(soft_labels, 1e-30)), MASKED)
  if student.logits is None:  # ranking: one probability per candidate
    return HeadOutputs(None, log_probs[:, :student.scores.shape[-1]])
  # A regression score only where the student has scorer heads (a classification-only model has
  # no scores to compare it with).
  scores = None if student.scores is None else soft_labels[:, 0]
  return HeadOutputs(log_probs[:, :student.logits.shape[-1]], scores)
