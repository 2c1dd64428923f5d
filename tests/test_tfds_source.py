"""TFDS as a data source: the same canonical rows as the raw files (mocked TFDS, no network)."""
import collections

import pytest

from mtdnn_jax.data.canonical import read_canonical
from mtdnn_jax.data.tfds_source import tfds_rows
from mtdnn_jax.tasks import load_task_defs
from scripts import prepro
from tests.conftest import REPO

tfds = pytest.importorskip("tensorflow_datasets")
GLUE = load_task_defs(REPO / "configs" / "task_defs" / "glue.yml")


def mocked_examples(name, split):
  return list(tfds.as_numpy(tfds.load(name, split=split)))


def test_rte_labels_go_through_tfds_class_names():
  with tfds.testing.mock_data(num_examples=12):
    rows = list(tfds_rows(GLUE["rte"], "train", None, collections.Counter()))
    examples = mocked_examples("glue/rte", "train")
    names = tfds.builder("glue/rte").info.features["label"].names
  assert len(rows) == len(examples) == 12
  # TFDS orders RTE's classes entailment, not_entailment; ours is the reverse: map by name.
  assert names == ["entailment", "not_entailment"]
  for row, example in zip(rows, examples):
    assert row.label == names[example["label"]]
    assert row.uid == str(example["idx"])
    assert row.texts == (example["sentence1"].decode().strip(), example["sentence2"].decode().strip())


def test_stsb_scores_and_mnli_splits(tmp_path):
  with tfds.testing.mock_data(num_examples=5):
    stsb = list(tfds_rows(GLUE["stsb"], "dev", None, collections.Counter()))
    scores = [float(e["label"]) for e in mocked_examples("glue/stsb", "validation")]
    mnli_test = list(tfds_rows(GLUE["mnli"], "mismatched_test", None, collections.Counter()))
  assert [float(r.label) for r in stsb] == pytest.approx(scores)
  assert len(mnli_test) == 5


def test_prepro_from_tfds_writes_canonical_files(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    assert prepro.main(["--task_def", str(REPO / "configs/task_defs/glue.yml"), "--source", "tfds",
                        "--output_dir", str(tmp_path), "--tasks", "rte", "wnli"]) == 0
  for task in ("rte", "wnli"):
    for split in ("train", "dev", "test"):
      assert len(read_canonical(tmp_path / f"{task}_{split}.tsv", GLUE[task])) == 4


def test_a_dataset_that_is_not_prepared_is_an_input_error(tmp_path, capsys):
  # No mock: an empty data dir holds nothing, and nothing may be downloaded.
  assert prepro.main(["--task_def", str(REPO / "configs/task_defs/glue.yml"), "--source", "tfds",
                      "--tfds_data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"),
                      "--tasks", "rte"]) == 1
  assert "tfds:glue/rte/train: cannot read it from TFDS data dir" in capsys.readouterr().err
