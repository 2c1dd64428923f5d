"""Score files and GLUE submission TSVs, from known predictions."""
import json

import numpy as np
import pytest

from mtdnn_jax.errors import InputError
from mtdnn_jax.submission import (GLUE_SUBMISSION_NAMES, read_score_file, write_glue_submission,
                                  write_score_file)
from mtdnn_jax.tasks import load_task_defs
from tests.conftest import REPO

GLUE = load_task_defs(REPO / "configs" / "task_defs" / "glue.yml")


def read_lines(path):
  return path.read_text(encoding="utf-8").splitlines()


def test_rte_submission_has_header_string_labels_and_index_order(tmp_path):
  path = tmp_path / "RTE.tsv"
  # Evaluation order follows length buckets, not the file: uids arrive shuffled.
  write_glue_submission(path, task=GLUE["rte"], uids=["2", "10", "0", "1"],
                        predictions=np.array([1, 0, 0, 1]),
                        scores=np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]))
  assert read_lines(path) == ["index\tprediction", "0\tnot_entailment", "1\tentailment",
                              "2\tentailment", "10\tnot_entailment"]


def test_cola_submission_writes_integer_labels_as_glue_does(tmp_path):
  path = tmp_path / "CoLA.tsv"
  write_glue_submission(path, task=GLUE["cola"], uids=np.array(["1", "0", "2"]),
                        predictions=[0, 1, 1], scores=[[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
  assert read_lines(path) == ["index\tprediction", "0\t1", "1\t0", "2\t1"]


def test_stsb_submission_writes_clipped_regression_scores(tmp_path):
  path = tmp_path / "STS-B.tsv"
  scores = np.array([3.25, -0.4, 5.7, 1.0], np.float32)
  write_glue_submission(path, task=GLUE["stsb"], uids=["3", "0", "1", "2"],
                        predictions=scores, scores=scores)
  lines = read_lines(path)
  assert lines[0] == "index\tprediction"
  indices = [int(line.split("\t")[0]) for line in lines[1:]]
  values = [float(line.split("\t")[1]) for line in lines[1:]]
  assert indices == [0, 1, 2, 3]
  assert values == pytest.approx([0.0, 5.0, 1.0, 3.25], abs=1e-6)


def test_mnli_submission_labels(tmp_path):
  path = tmp_path / GLUE_SUBMISSION_NAMES[("mnli", "matched_test")]
  write_glue_submission(path, task=GLUE["mnli"], uids=["0", "1", "2"], predictions=[2, 0, 1],
                        scores=np.eye(3)[[2, 0, 1]])
  assert path.name == "MNLI-m.tsv"
  assert read_lines(path)[1:] == ["0\tentailment", "1\tcontradiction", "2\tneutral"]


def test_qnli_ranking_submission_expands_to_one_row_per_candidate(tmp_path):
  path = tmp_path / "QNLI.tsv"
  # Two questions: candidates (GLUE indices) 4,0,2 and 1,3; the model chose 2 and 3.
  write_glue_submission(path, task=GLUE["qnlir"], uids=["4,0,2", ("1", "3")],
                        predictions=[2, 1], scores=[[0.1, 0.2, 0.7], [0.4, 0.6]])
  assert read_lines(path) == ["index\tprediction", "0\tnot_entailment", "1\tnot_entailment",
                              "2\tentailment", "3\tentailment", "4\tnot_entailment"]


def test_submission_refusals(tmp_path):
  path = tmp_path / "QNLI.tsv"
  with pytest.raises(InputError, match="does not list its candidates"):
    write_glue_submission(path, task=GLUE["qnlir"], uids=["0", "1"], predictions=[0, 1],
                          scores=[[0.6, 0.4], [0.3, 0.7]])
  with pytest.raises(InputError, match="not a GLUE index"):
    write_glue_submission(tmp_path / "RTE.tsv", task=GLUE["rte"], uids=["a1"], predictions=[0],
                          scores=[[0.6, 0.4]])
  with pytest.raises(InputError, match="more than once"):
    write_glue_submission(tmp_path / "RTE.tsv", task=GLUE["rte"], uids=["1", "1"],
                          predictions=[0, 1], scores=[[0.6, 0.4], [0.3, 0.7]])
  with pytest.raises(InputError, match="differ in length"):
    write_glue_submission(tmp_path / "RTE.tsv", task=GLUE["rte"], uids=["0", "1"],
                          predictions=[0], scores=[[0.6, 0.4]])
  assert not any(tmp_path.iterdir())  # nothing half-written


def test_submission_names_cover_glue_and_use_real_task_names():
  assert set(GLUE_SUBMISSION_NAMES.values()) == {
      "CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv",
      "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"}
  for task, split in GLUE_SUBMISSION_NAMES:
    assert split in GLUE[task].split_names


def test_score_file_round_trip_classification(tmp_path):
  path = tmp_path / "rte_dev_scores_epoch_1.json"
  probabilities = np.array([[0.25, 0.75], [0.875, 0.125], [0.5, 0.5]], np.float32)
  write_score_file(path, task=GLUE["rte"], uids=["7", "8", "9"], predictions=np.array([1, 0, 0]),
                   scores=probabilities, metrics={"ACC": 66.5, "AUC": float("nan")})
  document = json.loads(path.read_text(encoding="utf-8"))  # strict JSON: no NaN literal
  assert sorted(document) == ["metrics", "predictions", "scores", "uids"]
  assert document["predictions"] == [1, 0, 0] and document["metrics"]["AUC"] is None
  loaded = read_score_file(path)
  assert loaded.uids == ["7", "8", "9"]
  np.testing.assert_array_equal(loaded.predictions, [1, 0, 0])
  assert loaded.predictions.dtype.kind == "i"
  np.testing.assert_array_equal(loaded.scores, probabilities)
  assert loaded.metrics == {"ACC": 66.5, "AUC": None}


def test_score_file_round_trip_regression_and_ragged_ranking(tmp_path):
  values = np.array([3.0, 1.5, np.nan])
  write_score_file(tmp_path / "stsb.json", task=GLUE["stsb"], uids=["0", "1", "2"],
                   predictions=values, scores=values)
  loaded = read_score_file(tmp_path / "stsb.json")
  assert loaded.predictions.dtype.kind == "f"  # 3.0 stays a float, not a label id
  np.testing.assert_array_equal(loaded.predictions, values)
  np.testing.assert_array_equal(loaded.scores, values)

  ragged = [np.array([0.2, 0.8]), np.array([0.1, 0.3, 0.6])]
  write_score_file(tmp_path / "qnlir.json", task=GLUE["qnlir"], uids=["0", "1"],
                   predictions=[1, 2], scores=ragged)
  loaded = read_score_file(tmp_path / "qnlir.json")
  assert len(loaded.scores) == 2
  for ours, theirs in zip(loaded.scores, ragged):
    np.testing.assert_array_equal(ours, theirs)


def test_reads_the_reference_flat_score_layout(tmp_path):
  path = tmp_path / "reference.json"
  path.write_text(json.dumps({"metrics": {"ACC": 50.0}, "predictions": [1, 0],
                              "scores": [0.1, 0.9, 0.8, 0.2], "uids": ["0", "1"]}))
  loaded = read_score_file(path)
  np.testing.assert_array_equal(loaded.scores, [[0.1, 0.9], [0.8, 0.2]])


def test_unreadable_score_files_name_the_problem(tmp_path):
  with pytest.raises(InputError, match="not found"):
    read_score_file(tmp_path / "missing.json")
  (tmp_path / "bad.json").write_text('{"uids": ["0"], "predictions": [1]}')
  with pytest.raises(InputError, match="scores"):
    read_score_file(tmp_path / "bad.json")
