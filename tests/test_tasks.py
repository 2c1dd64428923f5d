"""Task definitions: the shipped YAMLs, the reference's format, and every refusal."""
import textwrap

import pytest

from mtdnn_jax.errors import InputError
from mtdnn_jax.tasks import DataFormat, TaskType, load_task_defs, parse_task_def
from tests.conftest import REPO

TASK_DEFS = REPO / "configs" / "task_defs"


def write_yaml(tmp_path, text, name="tasks.yml"):
  path = tmp_path / name
  path.write_text(textwrap.dedent(text), encoding="utf-8")
  return path


def test_glue_definitions_cover_all_glue_tasks_and_ax():
  defs = load_task_defs(TASK_DEFS / "glue.yml")
  assert set(defs) == {"cola", "sst", "mrpc", "stsb", "qqp", "mnli", "qnli", "qnlir", "rte",
                       "wnli", "ax"}
  assert defs["mnli"].split_names == ("train", "matched_dev", "mismatched_dev", "matched_test",
                                      "mismatched_test")
  assert defs["mnli"].label_to_id == {"contradiction": 0, "neutral": 1, "entailment": 2}
  assert defs["ax"].labels == defs["mnli"].labels and defs["ax"].split_names == ("test",)
  assert defs["rte"].label_to_id["entailment"] == 1 and defs["rte"].id_to_label(0) == "not_entailment"
  assert defs["stsb"].task_type is TaskType.REGRESSION and defs["stsb"].n_class == 1
  assert defs["qnlir"].task_type is TaskType.RANKING
  assert defs["qnlir"].data_format is DataFormat.PREMISE_AND_MULTI_HYPOTHESIS
  assert defs["cola"].metric_meta == ("ACC", "MCC") and defs["cola"].dropout_p == 0.05
  assert defs["mnli"].dropout_p == 0.3  # the paper's value
  assert all(not d.enable_san for d in defs.values())
  assert defs["cola"].split_names == ("train", "dev", "test")


def test_domain_adaptation_definitions():
  snli = load_task_defs(TASK_DEFS / "snli.yml")["snli"]
  scitail = load_task_defs(TASK_DEFS / "scitail.yml")["scitail"]
  assert snli.labels == ("contradiction", "neutral", "entailment")
  assert scitail.label_to_id == {"neutral": 0, "entails": 1}


def test_reference_format_loads_unchanged(tmp_path):
  # Written as the reference's experiments/*/..._task_def.yml files are, "Seqence" spelling included.
  path = write_yaml(tmp_path, """\
      ner:
        data_format: Seqence
        dropout_p: 0.3
        enable_san: False
        labels: [O, B-PER, I-PER, X, CLS, SEP]
        metric_meta:
        - SeqEval
        n_class: 6
        loss: SeqCeCriterion
        split_names:
        - train
        - dev
        - test
        task_type: SeqenceLabeling
      stsb:
        data_format: PremiseAndOneHypothesis
        enable_san: false
        metric_meta: [Pearson, Spearman]
        n_class: 1
        loss: MseCriterion
        kd_loss: MseCriterion
        adv_loss: MseCriterion
        task_type: Regression
      mrpc:
        data_format: PremiseAndOneHypothesis
        enable_san: true
        metric_meta: [ACC, F1]
        n_class: 2
        task_type: Classification
      """)
  defs = load_task_defs(path)
  assert list(defs) == ["ner", "stsb", "mrpc"]
  assert defs["ner"].task_type is TaskType.SEQUENCE_LABELING
  assert defs["ner"].data_format is DataFormat.SEQUENCE
  assert defs["ner"].dropout_p == 0.3 and defs["ner"].loss == "SeqCeCriterion"
  assert defs["mrpc"].enable_san and defs["mrpc"].dropout_p == 0.1  # default dropout
  assert defs["mrpc"].loss == "CeCriterion" and defs["mrpc"].adv_loss == "SymKlCriterion"


def test_correct_spelling_is_accepted_too():
  task = parse_task_def("pos", {"task_type": "SequenceLabeling", "data_format": "Sequence",
                                "labels": ["NN", "VB"]})
  assert task.task_type is TaskType.SEQUENCE_LABELING and task.n_class == 2
  assert task.metric_meta == ("SeqEval",)


def test_encode_label_per_task_type():
  rte = parse_task_def("rte", {"task_type": "Classification",
                               "data_format": "PremiseAndOneHypothesis",
                               "labels": ["not_entailment", "entailment"]})
  assert rte.encode_label("entailment") == 1
  with pytest.raises(ValueError, match="unknown label 'maybe'"):
    rte.encode_label("maybe")
  cola = parse_task_def("cola", {"task_type": "Classification", "data_format": "PremiseOnly",
                                 "n_class": 2})
  assert cola.encode_label("1") == 1 and cola.dummy_label() == "0"
  with pytest.raises(ValueError, match="outside"):
    cola.encode_label("2")
  stsb = parse_task_def("stsb", {"task_type": "Regression",
                                 "data_format": "PremiseAndOneHypothesis"})
  assert stsb.encode_label("3.800") == pytest.approx(3.8) and stsb.n_class == 1
  with pytest.raises(ValueError, match="not a finite"):
    stsb.encode_label("nan")
  rank = parse_task_def("qnlir", {"task_type": "Ranking",
                                  "data_format": "PremiseAndMultiHypothesis",
                                  "labels": ["not_entailment", "entailment"]})
  assert rank.encode_label(("not_entailment", "not_entailment", "entailment")) == 2
  ner = parse_task_def("ner", {"task_type": "SeqenceLabeling", "data_format": "Seqence",
                               "labels": ["O", "B-PER"]})
  assert ner.encode_label(("B-PER", "O", "O")) == [1, 0, 0]


VALID = {"task_type": "Classification", "data_format": "PremiseAndOneHypothesis",
         "n_class": 2, "metric_meta": ["ACC"]}


@pytest.mark.parametrize("name, changes, problem", [
    ("rte", {"n_classes": 2}, "unknown key 'n_classes' (did you mean 'n_class'?)"),
    ("rte", {"task_type": "Clasification"}, "unknown TaskType 'Clasification'"),
    ("rte", {"data_format": "PremiseAndTwoHypotheses"}, "unknown DataFormat"),
    ("rte", {"labels": ["a", "b", "c"]}, "3 labels ['a', 'b', 'c'] but n_class is 2"),
    ("rte", {"labels": ["a", "a"]}, "listed more than once"),
    ("stsb", {"task_type": "Regression", "n_class": 1, "enable_san": True,
              "metric_meta": ["Pearson"]}, "SAN predicts a class distribution"),
    ("qnlir", {"task_type": "Ranking", "data_format": "PremiseAndMultiHypothesis", "n_class": 1,
               "enable_san": True}, "SAN predicts a class distribution"),
    ("my_task", {}, "cannot contain '_'"),
    ("rte", {"metric_meta": ["Pearson"]}, "metric Pearson does not fit a Classification task"),
    ("stsb", {"task_type": "Regression", "n_class": 1}, "metric ACC does not fit a Regression"),
    ("rte", {"metric_meta": ["BLEU"]}, "unknown metric 'BLEU'"),
    ("rte", {"data_format": "Seqence"}, "Classification tasks take data_format"),
    ("stsb", {"task_type": "Regression", "n_class": 3, "metric_meta": ["Pearson"]},
     "has 1 output(s), not 3"),
    ("rte", {"loss": "MseCriterion"}, "'MseCriterion' does not fit a Classification task"),
    ("rte", {"dropout_p": 1.5}, "expected a probability"),
    ("rte", {"enable_san": "yes"}, "expected true or false"),
])
def test_bad_definitions_name_file_task_and_line(tmp_path, name, changes, problem):
  spec = {**VALID, **changes}
  lines = ["ok:", "  task_type: Regression", "  data_format: PremiseOnly", f"{name}:"]
  lines += [f"  {key}: {value!r}" if isinstance(value, str) else f"  {key}: {value}"
            for key, value in spec.items()]
  path = write_yaml(tmp_path, "\n".join(lines).replace("True", "true") + "\n")
  with pytest.raises(InputError) as error:
    load_task_defs(path)
  message = str(error.value)
  assert message.startswith(f"{path}:4: task {name}")  # the task's own line
  assert problem in message


def test_missing_required_field_and_bad_yaml(tmp_path):
  path = write_yaml(tmp_path, "rte:\n  data_format: PremiseOnly\n")
  with pytest.raises(InputError, match=r"tasks.yml:1: task rte.task_type: missing"):
    load_task_defs(path)
  path = write_yaml(tmp_path, "rte:\n  task_type: [Classification\n")
  with pytest.raises(InputError, match="not valid YAML"):
    load_task_defs(path)
  with pytest.raises(InputError, match="not found"):
    load_task_defs(tmp_path / "absent.yml")
