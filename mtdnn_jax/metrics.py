"""Evaluation metrics (SPEC.md §7), in numpy only, matching scikit-learn's and SciPy's definitions.

The single metric functions return the metric on its natural scale (accuracy in [0, 1],
correlations in [-1, 1]); `compute_metrics` scales them ×100 as the reference reports them.

Degenerate inputs never raise; they give what scikit-learn / SciPy give:
  - MCC when the predictions or the labels are constant: 0.0 (sklearn).
  - F1 with no positive prediction and no positive label: 0.0 (sklearn's zero_division).
  - Pearson / Spearman when either side is constant or has fewer than 2 values: nan (SciPy
    warns and returns nan for constant input; it raises for fewer than 2 values).
  - AUC when only one class is present: nan (sklearn 1.9 warns and returns nan; older
    versions raise). NaN scores give nan too (sklearn raises).
  - Any metric of zero rows: nan.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from mtdnn_jax.tasks import TaskDef, TaskType

POSITIVE_CLASS = 1  # binary F1 and classification AUC score this label id as "positive"


def accuracy(predictions, labels) -> float:
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  if labels.size == 0:
    return math.nan
  return float(np.mean(predictions == labels))


def binary_f1(predictions, labels) -> float:
  """F1 of the positive class (label id 1) against all others (one-vs-rest for more than two
  classes, where sklearn's binary F1 refuses)."""
  predicted = np.asarray(predictions) == POSITIVE_CLASS
  actual = np.asarray(labels) == POSITIVE_CLASS
  if actual.size == 0:
    return math.nan
  true_pos = np.sum(predicted & actual)
  denominator = 2 * true_pos + np.sum(predicted & ~actual) + np.sum(~predicted & actual)
  return float(2 * true_pos / denominator) if denominator else 0.0


def matthews_corrcoef(predictions, labels) -> float:
  """Matthews correlation; for more than two classes, Gorodkin's R_K (sklearn's definition)."""
  predictions, labels = np.asarray(predictions).ravel(), np.asarray(labels).ravel()
  if labels.size == 0:
    return math.nan
  classes, class_index = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
  true_index, pred_index = class_index[:labels.size], class_index[labels.size:]
  confusion = np.zeros((len(classes), len(classes)), np.float64)
  np.add.at(confusion, (true_index, pred_index), 1)
  true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
  n = float(labels.size)
  cov_true_pred = np.trace(confusion) * n - true_counts @ pred_counts
  cov_pred_pred = n * n - pred_counts @ pred_counts
  cov_true_true = n * n - true_counts @ true_counts
  if cov_pred_pred * cov_true_true == 0:
    return 0.0
  return float(cov_true_pred / math.sqrt(cov_true_true * cov_pred_pred))


def pearson(x, y) -> float:
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  # SciPy's test for constant input is exact equality, so a nearly constant side still counts.
  if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
    return math.nan
  x_centered, y_centered = x - x.mean(), y - y.mean()
  r = (x_centered / np.linalg.norm(x_centered)) @ (y_centered / np.linalg.norm(y_centered))
  return float(np.clip(r, -1.0, 1.0))  # rounding can step just outside [-1, 1]


def spearman(x, y) -> float:
  """Pearson correlation of the ranks, tied values sharing their average rank."""
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if np.isnan(x).any() or np.isnan(y).any():
    return math.nan  # a rank of nan means nothing; SciPy propagates it
  return pearson(average_ranks(x), average_ranks(y))


def roc_auc(scores, is_positive) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative), ties counting ½.

  That is the Mann–Whitney U statistic over average ranks, which equals sklearn's trapezoidal
  area with tied scores forming one threshold.
  """
  scores = np.asarray(scores, np.float64).ravel()
  is_positive = np.asarray(is_positive, bool).ravel()
  n_pos = int(is_positive.sum())
  n_neg = is_positive.size - n_pos
  if n_pos == 0 or n_neg == 0 or np.isnan(scores).any():
    return math.nan
  rank_sum = average_ranks(scores)[is_positive].sum()
  return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values) -> np.ndarray:
  """1-based ranks, tied values sharing the mean of their positions (scipy.stats.rankdata)."""
  values = np.asarray(values).ravel()
  order = np.argsort(values, kind="stable")
  sorted_values = values[order]
  starts_group = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
  group_of_position = np.cumsum(starts_group) - 1
  group_starts = np.flatnonzero(starts_group)
  group_ends = np.append(group_starts[1:], values.size)  # exclusive
  mean_rank = (group_starts + group_ends + 1) / 2  # mean of the 1-based ranks start+1 … end
  ranks = np.empty(values.size, np.float64)
  ranks[order] = mean_rank[group_of_position]
  return ranks


def compute_metrics(task: TaskDef, predictions, scores, labels, weights=None, *,
                    candidate_mask=None) -> dict[str, float]:
  """The task's `metric_meta` metrics, ×100, keyed by their names ("ACC", "F1", ...).

  Classification: predictions [N] class ids, scores [N, C] class probabilities, labels [N];
  AUC scores class 1 against the rest by its probability.
  Regression: predictions = scores = [N] floats, labels [N] floats.
  Ranking: predictions [N] chosen candidate index, scores [N, K] candidate scores, labels [N]
  index of the gold candidate; `candidate_mask` [N, K] (1 = real candidate) keeps padded
  candidates out of AUC.
  `weights` [N]: rows whose weight is 0 (batch padding) are left out; other weights are not
  used as multiplicities.
  """
  predictions, scores, labels = np.asarray(predictions), np.asarray(scores), np.asarray(labels)
  if weights is not None:
    keep = np.asarray(weights).ravel() != 0
    predictions, scores, labels = predictions[keep], scores[keep], labels[keep]
    if candidate_mask is not None:
      candidate_mask = np.asarray(candidate_mask)[keep]

  if task.task_type is TaskType.CLASSIFICATION:
    metric_fns = {
        "ACC": lambda: accuracy(predictions, labels),
        "F1": lambda: binary_f1(predictions, labels),
        "MCC": lambda: matthews_corrcoef(predictions, labels),
        "AUC": lambda: roc_auc(scores.reshape(len(labels), -1)[:, POSITIVE_CLASS],
                               labels == POSITIVE_CLASS),
    }
  elif task.task_type is TaskType.REGRESSION:
    metric_fns = {"Pearson": lambda: pearson(scores, labels),
                  "Spearman": lambda: spearman(scores, labels)}
  elif task.task_type is TaskType.RANKING:
    metric_fns = {"ACC": lambda: accuracy(predictions, labels),
                  "AUC": lambda: _ranking_auc(scores, labels, candidate_mask)}
  else:
    metric_fns = {}
  return {name: 100.0 * _metric(task, name, metric_fns) for name in task.metric_meta}


def _metric(task: TaskDef, name: str, metric_fns: dict[str, Callable[[], float]]) -> float:
  if name not in metric_fns:
    # Sequence labelling (SeqEval) and span tasks (EmF1) are scored per entity and per answer
    # text: `entity_metrics` below and `squad_eval.evaluate`, not per example here.
    raise ValueError(f"metric {name} of task {task.name!r} ({task.task_type.value}) is not a "
                     "per-example metric; see entity_metrics / squad_eval.evaluate")
  return metric_fns[name]()


def _ranking_auc(scores: np.ndarray, gold_index: np.ndarray, candidate_mask) -> float:
  """AUC over every real (candidate score, is the gold candidate) pair."""
  scores = scores.reshape(len(gold_index), -1)
  is_gold = np.arange(scores.shape[1])[None, :] == gold_index[:, None]
  real = (np.ones(scores.shape, bool) if candidate_mask is None
          else np.asarray(candidate_mask).reshape(scores.shape) != 0)
  return roc_auc(scores[real], is_gold[real])


def entity_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
  """Entity-level scores of BIO tag sequences, ×100, as CoNLL's conlleval counts them (an entity
  is right when its type and both boundaries are): "SeqEval" is F1."""
  from seqeval.metrics import f1_score, precision_score, recall_score
  gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
  return {"SeqEval": 100.0 * f1_score(gold, predicted),
          "precision": 100.0 * precision_score(gold, predicted),
          "recall": 100.0 * recall_score(gold, predicted)}
