"""Metrics against scikit-learn and SciPy, on random inputs, ties and degenerate inputs."""
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from mtdnn_jax import metrics
from mtdnn_jax.tasks import load_task_defs, parse_task_def
from tests.conftest import REPO

GLUE = load_task_defs(REPO / "configs" / "task_defs" / "glue.yml")


def quietly(fn, *args, **kwargs):
  """sklearn / SciPy warn on the degenerate inputs whose values we compare against."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return fn(*args, **kwargs)


def same(ours, reference):
  return (math.isnan(ours) and math.isnan(reference)) or ours == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn_on_random_inputs(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 300))
  labels, predictions = rng.integers(0, 2, n), rng.integers(0, 2, n)
  assert metrics.accuracy(predictions, labels) == pytest.approx(
      sk.accuracy_score(labels, predictions))
  assert metrics.binary_f1(predictions, labels) == pytest.approx(sk.f1_score(labels, predictions))
  assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(
      sk.matthews_corrcoef(labels, predictions))
  three_labels, three_predictions = rng.integers(0, 3, n), rng.integers(0, 3, n)
  assert metrics.matthews_corrcoef(three_predictions, three_labels) == pytest.approx(
      sk.matthews_corrcoef(three_labels, three_predictions))


def test_mcc_multiclass_with_a_class_that_is_only_predicted():
  labels = np.array([0, 0, 1, 1, 2, 2, 2])
  predictions = np.array([0, 3, 1, 2, 2, 2, 0])  # class 3 is never a gold label
  assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(
      sk.matthews_corrcoef(labels, predictions))


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_with_ties(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(3, 200))
  x = np.round(rng.normal(size=n), 1)  # rounding makes ties
  y = np.round(x + rng.normal(size=n), 0)
  assert metrics.pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
  assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
  np.testing.assert_array_equal(metrics.average_ranks(y), stats.rankdata(y))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_tied_scores(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(4, 300))
  is_positive = rng.integers(0, 2, n)
  is_positive[:2] = [0, 1]  # both classes present
  scores = np.round(rng.random(n) + 0.3 * is_positive, 1)  # coarse scores: many ties
  assert metrics.roc_auc(scores, is_positive) == pytest.approx(
      sk.roc_auc_score(is_positive, scores), abs=1e-12)


def test_perfect_and_reversed_auc():
  assert metrics.roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
  assert metrics.roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
  assert metrics.roc_auc([0.5, 0.5, 0.5], [0, 1, 1]) == 0.5  # all tied: chance


@pytest.mark.parametrize("labels, predictions", [
    ([0, 1, 1, 0], [1, 1, 1, 1]),  # constant predictions
    ([1, 1, 1, 1], [0, 1, 0, 1]),  # constant labels
    ([0, 0, 0], [0, 0, 0]),  # no positive anywhere
    ([2, 2, 2], [2, 2, 2]),  # one class, multi-class ids
])
def test_degenerate_classification_matches_sklearn(labels, predictions):
  assert metrics.matthews_corrcoef(predictions, labels) == quietly(
      sk.matthews_corrcoef, labels, predictions)
  if max(labels + predictions) <= 1:
    assert metrics.binary_f1(predictions, labels) == quietly(sk.f1_score, labels, predictions)


@pytest.mark.parametrize("x, y", [
    ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]),  # constant predictions
    ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]),  # constant labels
    ([1.0, 2.0, np.nan], [1.0, 2.0, 3.0]),  # a broken prediction
])
def test_degenerate_correlations_match_scipy(x, y):
  assert same(metrics.pearson(x, y), quietly(stats.pearsonr, x, y).statistic)
  assert same(metrics.spearman(x, y), quietly(stats.spearmanr, x, y).statistic)


def test_degenerate_auc_and_empty_inputs_give_nan():
  assert same(metrics.roc_auc([0.2, 0.7], [1, 1]), quietly(sk.roc_auc_score, [1, 1], [0.2, 0.7]))
  assert math.isnan(metrics.roc_auc([0.2, 0.7], [0, 0]))
  assert math.isnan(metrics.pearson([1.0], [2.0]))  # SciPy raises for one value; we never do
  for fn in (metrics.accuracy, metrics.binary_f1, metrics.matthews_corrcoef):
    assert math.isnan(fn([], []))


def test_compute_metrics_cola_mcc_and_acc_scaled_by_100():
  rng = np.random.default_rng(0)
  labels, predictions = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
  result = metrics.compute_metrics(GLUE["cola"], predictions, rng.random((50, 2)), labels)
  assert set(result) == {"ACC", "MCC"}
  assert result["ACC"] == pytest.approx(100 * sk.accuracy_score(labels, predictions))
  assert result["MCC"] == pytest.approx(100 * sk.matthews_corrcoef(labels, predictions))


def test_compute_metrics_excludes_padding_rows():
  rng = np.random.default_rng(1)
  labels, predictions = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
  probabilities = rng.random((40, 2))
  weights = np.ones(40, np.float32)
  weights[30:] = 0  # a padded final batch: its rows hold garbage
  predictions[30:], labels[30:] = 1, 0
  result = metrics.compute_metrics(GLUE["mrpc"], predictions, probabilities, labels, weights)
  assert set(result) == {"ACC", "F1"}
  assert result["ACC"] == pytest.approx(100 * sk.accuracy_score(labels[:30], predictions[:30]))
  assert result["F1"] == pytest.approx(100 * sk.f1_score(labels[:30], predictions[:30]))
  unweighted = metrics.compute_metrics(GLUE["mrpc"], predictions, probabilities, labels)
  assert unweighted["ACC"] != result["ACC"]  # the padding would have counted


def test_compute_metrics_classification_auc_uses_the_positive_class_probability():
  rte_auc = parse_task_def("rte", {"task_type": "Classification",
                                   "data_format": "PremiseAndOneHypothesis",
                                   "labels": ["not_entailment", "entailment"],
                                   "metric_meta": ["ACC", "AUC"]})
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 2, 60)
  positive = np.clip(0.5 + 0.3 * (labels - 0.5) + 0.3 * rng.normal(size=60), 0, 1)
  probabilities = np.stack([1 - positive, positive], axis=1)
  result = metrics.compute_metrics(rte_auc, probabilities.argmax(1), probabilities, labels)
  assert result["AUC"] == pytest.approx(100 * sk.roc_auc_score(labels, positive))
  assert result["ACC"] == pytest.approx(100 * np.mean(probabilities.argmax(1) == labels))


def test_compute_metrics_stsb_pearson_and_spearman():
  rng = np.random.default_rng(3)
  gold = np.round(rng.uniform(0, 5, 80), 1)
  predicted = gold + rng.normal(0, 1, 80)
  weights = np.r_[np.ones(70), np.zeros(10)]
  result = metrics.compute_metrics(GLUE["stsb"], predicted, predicted, gold, weights)
  assert set(result) == {"Pearson", "Spearman"}
  assert result["Pearson"] == pytest.approx(100 * stats.pearsonr(predicted[:70], gold[:70])[0])
  assert result["Spearman"] == pytest.approx(100 * stats.spearmanr(predicted[:70], gold[:70])[0])


def test_compute_metrics_ranking_acc_and_auc_over_real_candidates():
  qnlir = GLUE["qnlir"]
  assert qnlir.metric_meta == ("ACC",)
  scores = np.array([[0.7, 0.2, 0.1, 0.0],
                     [0.1, 0.6, 0.3, 0.0],
                     [0.5, 0.5, 0.0, 0.0],
                     [0.2, 0.8, 0.0, 0.0]])
  candidate_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]])
  gold = np.array([0, 2, 1, 1])
  chosen = np.array([0, 2, 0, 1])  # right, right, wrong (a tie broken the wrong way)
  weights = np.array([1, 1, 1, 0])  # the last example is padding
  assert metrics.compute_metrics(qnlir, chosen, scores, gold, weights) == {
      "ACC": pytest.approx(100 * 2 / 3)}

  with_auc = parse_task_def("qnlir", {"task_type": "Ranking",
                                      "data_format": "PremiseAndMultiHypothesis",
                                      "metric_meta": ["ACC", "AUC"]})
  result = metrics.compute_metrics(with_auc, chosen, scores, gold, weights,
                                   candidate_mask=candidate_mask)
  # The real (score, is gold) pairs of the three real examples, written out by hand.
  pair_scores = [0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.0, 0.5, 0.5]
  pair_is_gold = [1, 0, 0, 0, 0, 1, 0, 0, 1]
  assert result["AUC"] == pytest.approx(100 * sk.roc_auc_score(pair_is_gold, pair_scores))


def test_compute_metrics_refuses_metrics_it_does_not_compute():
  ner = parse_task_def("ner", {"task_type": "SeqenceLabeling", "data_format": "Seqence",
                               "n_class": 3})
  with pytest.raises(ValueError, match="SeqEval"):
    metrics.compute_metrics(ner, [0], [[1.0, 0.0, 0.0]], [0])
