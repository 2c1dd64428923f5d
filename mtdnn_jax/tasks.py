"""Task definitions: the reference MT-DNN's task-definition YAML, loaded and checked.

A task-definition file maps task names to their settings (SPEC.md §6), e.g.

  rte:
    task_type: Classification
    data_format: PremiseAndOneHypothesis
    labels: [not_entailment, entailment]
    n_class: 2
    metric_meta: [ACC]

Files written for the reference load unchanged, including its spellings "Seqence" and
"SeqenceLabeling". Everything is checked up front: a mistake in a task definition should stop a
run before any data is read, with the file, the task and its line named.
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from mtdnn_jax.errors import InputError


class TaskType(enum.Enum):
  CLASSIFICATION = "Classification"
  REGRESSION = "Regression"
  RANKING = "Ranking"
  SPAN = "Span"  # SQuAD v1
  SPAN_YN = "SpanYN"  # SQuAD v2: the [CLS] position means "no answer"
  SEQUENCE_LABELING = "SeqenceLabeling"  # the reference's spelling, kept so its files load
  MASK_LM = "MaskLM"


class DataFormat(enum.Enum):
  PREMISE_ONLY = "PremiseOnly"
  PREMISE_AND_ONE_HYPOTHESIS = "PremiseAndOneHypothesis"
  PREMISE_AND_MULTI_HYPOTHESIS = "PremiseAndMultiHypothesis"
  SEQUENCE = "Seqence"  # the reference's spelling
  MRC = "MRC"


# The correct spellings are accepted too; the reference's are what we write back.
_SPELLING_ALIASES = {"SequenceLabeling": "SeqenceLabeling", "Sequence": "Seqence"}

METRICS = ("ACC", "F1", "MCC", "Pearson", "Spearman", "AUC", "SeqEval", "EmF1")

# Loss names are the reference's criterion classes, so its task definitions load unchanged;
# each task type's own loss is in _RULES, these are the kd_loss / adv_loss divergences.
DIVERGENCE_LOSSES = ("MseCriterion", "KlCriterion", "SymKlCriterion", "NsKlCriterion",
                     "NsSymKlCriterion", "JSCriterion", "HLCriterion")


@dataclasses.dataclass(frozen=True)
class _TypeRules:
  """What a task type allows and what it defaults to."""
  formats: tuple[DataFormat, ...]
  metrics: tuple[str, ...]
  losses: tuple[str, ...]
  default_metrics: tuple[str, ...]
  default_adv_loss: str
  fixed_n_class: int | None = None  # the head's output count when the type decides it


_RULES = {
    TaskType.CLASSIFICATION: _TypeRules(
        (DataFormat.PREMISE_ONLY, DataFormat.PREMISE_AND_ONE_HYPOTHESIS),
        ("ACC", "F1", "MCC", "AUC"), ("CeCriterion",), ("ACC",), "SymKlCriterion"),
    TaskType.REGRESSION: _TypeRules(
        (DataFormat.PREMISE_ONLY, DataFormat.PREMISE_AND_ONE_HYPOTHESIS),
        ("Pearson", "Spearman"), ("MseCriterion",), ("Pearson", "Spearman"), "MseCriterion",
        fixed_n_class=1),
    # One score per (premise, candidate) pair, softmax over the candidates of one premise.
    TaskType.RANKING: _TypeRules(
        (DataFormat.PREMISE_AND_MULTI_HYPOTHESIS,), ("ACC", "AUC"), ("RankCeCriterion",),
        ("ACC",), "SymKlCriterion", fixed_n_class=1),
    # Start and end logits per token.
    TaskType.SPAN: _TypeRules((DataFormat.MRC,), ("EmF1",), ("SpanCeCriterion",), ("EmF1",),
                              "SymKlCriterion", fixed_n_class=2),
    TaskType.SPAN_YN: _TypeRules((DataFormat.MRC,), ("EmF1",), ("SpanCeCriterion",), ("EmF1",),
                                 "SymKlCriterion", fixed_n_class=2),
    TaskType.SEQUENCE_LABELING: _TypeRules(
        (DataFormat.SEQUENCE,), ("SeqEval", "ACC"), ("SeqCeCriterion",), ("SeqEval",),
        "SymKlCriterion"),
    # Masked tokens are drawn from plain text at batch time; n_class is the vocabulary size.
    TaskType.MASK_LM: _TypeRules(
        (DataFormat.PREMISE_ONLY, DataFormat.PREMISE_AND_ONE_HYPOTHESIS), ("ACC",),
        ("MlmCriterion",), ("ACC",), "SymKlCriterion"),
}

DEFAULT_SPLIT_NAMES = ("train", "dev", "test")
DEFAULT_DROPOUT_P = 0.1
DEFAULT_KD_LOSS = "MseCriterion"

_KNOWN_KEYS = ("task_type", "data_format", "n_class", "labels", "metric_meta", "split_names",
               "enable_san", "dropout_p", "loss", "kd_loss", "adv_loss")


@dataclasses.dataclass(frozen=True)
class TaskDef:
  """One task: what its data looks like, what its head predicts, how it is scored."""
  name: str
  task_type: TaskType
  data_format: DataFormat
  n_class: int
  labels: tuple[str, ...] | None  # position = label id; None: labels are ids (or floats)
  metric_meta: tuple[str, ...]
  split_names: tuple[str, ...] = DEFAULT_SPLIT_NAMES
  enable_san: bool = False
  dropout_p: float = DEFAULT_DROPOUT_P
  loss: str = "CeCriterion"
  kd_loss: str = DEFAULT_KD_LOSS
  adv_loss: str = "SymKlCriterion"
  label_to_id: Mapping[str, int] = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    object.__setattr__(self, "label_to_id",
                       {label: i for i, label in enumerate(self.labels or ())})

  def id_to_label(self, label_id: int) -> str:
    return self.labels[label_id] if self.labels else str(label_id)

  def dummy_label(self) -> str:
    """The label test rows carry in canonical files (they have no gold label)."""
    if self.task_type is TaskType.REGRESSION:
      return "0.0"
    return self.labels[0] if self.labels else "0"

  def encode_label(self, label: str | Sequence[str]) -> int | float | list[int]:
    """A canonical label (text) → what the head is trained against; ValueError if unusable.

    Classification: the class id. Regression: the float. Ranking: one grade per candidate
    (through `labels`, better grades later, or numbers) → the index of the best candidate.
    Sequence labelling: one id per word.
    """
    if self.task_type is TaskType.REGRESSION:
      return _parse_float(label)
    if self.task_type is TaskType.RANKING:
      grades = [self._class_id(g) if self.labels else _parse_float(g) for g in label]
      return max(range(len(grades)), key=grades.__getitem__)
    if self.task_type is TaskType.SEQUENCE_LABELING:
      return [self._class_id(tag) for tag in label]
    if self.task_type in (TaskType.SPAN, TaskType.SPAN_YN):
      raise ValueError(f"{self.task_type.value} tasks have no canonical TSV label")
    return self._class_id(label)

  def _class_id(self, label: str) -> int:
    if self.labels:
      try:
        return self.label_to_id[label]
      except KeyError:
        raise ValueError(f"unknown label {label!r} (task {self.name!r} has labels "
                         f"{list(self.labels)})") from None
    try:
      label_id = int(label)
    except ValueError:
      raise ValueError(f"label {label!r} is not an integer class id (task {self.name!r} "
                       "defines no `labels`)") from None
    if not 0 <= label_id < self.n_class:
      raise ValueError(f"label {label_id} is outside [0, {self.n_class}) for task {self.name!r}")
    return label_id


def is_test_split(split: str) -> bool:
  """Test splits carry dummy labels ("test", "matched_test", ...)."""
  return "test" in split


def _parse_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise ValueError(f"label {text!r} is not a number") from None
  if not math.isfinite(value):
    raise ValueError(f"label {text!r} is not a finite number")
  return value


def load_task_defs(path: str | os.PathLike) -> dict[str, TaskDef]:
  """Reads a task-definition YAML file; tasks in file order."""
  path = Path(path)
  try:
    text = path.read_text(encoding="utf-8")
  except FileNotFoundError:
    raise InputError(path, "task-definition file not found") from None
  except UnicodeDecodeError as e:
    raise InputError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
  try:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    tree = yaml.safe_load(text)
  except yaml.YAMLError as e:
    mark = getattr(e, "problem_mark", None)
    raise InputError(path, f"not valid YAML: {getattr(e, 'problem', e)}",
                     line=None if mark is None else mark.line + 1) from None
  if not isinstance(tree, dict) or not tree:
    raise InputError(path, "expected a mapping from task names to task definitions")
  lines = {key.value: key.start_mark.line + 1 for key, _ in root.value}
  return {str(name): parse_task_def(str(name), spec, path, lines.get(name))
          for name, spec in tree.items()}


def parse_task_def(name: str, spec: Any, path: str | os.PathLike | None = None,
                   line: int | None = None) -> TaskDef:
  """Builds and checks one task's definition from its YAML mapping."""

  def bad(problem: str, key: str | None = None):
    raise InputError(path, problem, line=line, field=f"task {name}" + (f".{key}" if key else ""))

  if "_" in name:
    bad("a task name cannot contain '_' (data files are named <task>_<split>.tsv)")
  if not name:
    bad("empty task name")
  if not isinstance(spec, dict):
    bad(f"expected a mapping of settings, got {type(spec).__name__}")
  for key in spec:
    if key not in _KNOWN_KEYS:
      close = difflib.get_close_matches(str(key), _KNOWN_KEYS, n=1)
      bad(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
  for key in ("task_type", "data_format"):
    if key not in spec:
      bad("missing (required)", key)

  task_type = _enum_value(TaskType, spec["task_type"], lambda p: bad(p, "task_type"))
  data_format = _enum_value(DataFormat, spec["data_format"], lambda p: bad(p, "data_format"))
  rules = _RULES[task_type]
  if data_format not in rules.formats:
    bad(f"{task_type.value} tasks take data_format "
        f"{' or '.join(f.value for f in rules.formats)}, not {data_format.value}", "data_format")

  labels = spec.get("labels")
  if labels is not None:
    if (not isinstance(labels, list) or not labels
        or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in labels)):
      bad("expected a non-empty list of label names", "labels")
    labels = tuple(str(x) for x in labels)
    duplicated = sorted({x for x in labels if labels.count(x) > 1})
    if duplicated:
      bad(f"labels {duplicated} are listed more than once", "labels")
    if any(x != x.strip() or not x or "," in x for x in labels):
      bad("a label cannot be empty, have surrounding spaces or contain ','", "labels")
    if task_type is TaskType.REGRESSION:
      bad("a regression task has no label names", "labels")

  n_class = spec.get("n_class")
  if n_class is None:
    n_class = (rules.fixed_n_class if rules.fixed_n_class is not None
               else len(labels) if labels and task_type is not TaskType.RANKING else None)
    if n_class is None:
      bad("missing (required when it does not follow from task_type or labels)", "n_class")
  if not isinstance(n_class, int) or isinstance(n_class, bool) or n_class < 1:
    bad(f"expected a positive integer, got {n_class!r}", "n_class")
  if rules.fixed_n_class is not None and n_class != rules.fixed_n_class:
    bad(f"a {task_type.value} head has {rules.fixed_n_class} output(s), not {n_class}",
        "n_class")
  if task_type is TaskType.CLASSIFICATION and n_class < 2:
    bad("a classification task needs at least 2 classes", "n_class")
  # Ranking labels are grades of candidates (worse first), not head outputs.
  if labels is not None and task_type is not TaskType.RANKING and len(labels) != n_class:
    bad(f"{len(labels)} labels {list(labels)} but n_class is {n_class}", "labels")

  metric_meta = spec.get("metric_meta", rules.default_metrics)
  if isinstance(metric_meta, str):
    metric_meta = [metric_meta]
  if not isinstance(metric_meta, (list, tuple)) or not metric_meta:
    bad("expected a non-empty list of metric names", "metric_meta")
  for metric in metric_meta:
    if metric not in METRICS:
      bad(f"unknown metric {metric!r}; known: {', '.join(METRICS)}", "metric_meta")
    if metric not in rules.metrics:
      bad(f"metric {metric} does not fit a {task_type.value} task (it takes "
          f"{', '.join(rules.metrics)})", "metric_meta")

  split_names = spec.get("split_names", list(DEFAULT_SPLIT_NAMES))
  if (not isinstance(split_names, list) or not split_names
      or not all(isinstance(s, str) and s and "\t" not in s and "/" not in s
                 for s in split_names)):
    bad("expected a non-empty list of split names", "split_names")
  if len(set(split_names)) != len(split_names):
    bad("a split is listed more than once", "split_names")

  enable_san = spec.get("enable_san", False)
  if not isinstance(enable_san, bool):
    bad(f"expected true or false, got {enable_san!r}", "enable_san")
  if enable_san and task_type is not TaskType.CLASSIFICATION:
    bad(f"SAN predicts a class distribution; a {task_type.value} task has "
        f"{n_class} output(s) per example (turn enable_san off)", "enable_san")
  if enable_san and data_format is not DataFormat.PREMISE_AND_ONE_HYPOTHESIS:
    bad("SAN attends from the hypothesis to the premise: it needs "
        "data_format PremiseAndOneHypothesis", "enable_san")

  dropout_p = spec.get("dropout_p", DEFAULT_DROPOUT_P)
  if (not isinstance(dropout_p, (int, float)) or isinstance(dropout_p, bool)
      or not 0 <= dropout_p < 1):
    bad(f"expected a probability in [0, 1), got {dropout_p!r}", "dropout_p")

  def loss_name(key: str, allowed: Sequence[str], default: str) -> str:
    value = spec.get(key, default)
    if value not in allowed:
      bad(f"{value!r} does not fit a {task_type.value} task (choose from "
          f"{', '.join(allowed)})", key)
    return value

  return TaskDef(
      name=name, task_type=task_type, data_format=data_format, n_class=n_class, labels=labels,
      metric_meta=tuple(metric_meta), split_names=tuple(split_names), enable_san=enable_san,
      dropout_p=float(dropout_p), loss=loss_name("loss", rules.losses, rules.losses[0]),
      kd_loss=loss_name("kd_loss", DIVERGENCE_LOSSES, DEFAULT_KD_LOSS),
      adv_loss=loss_name("adv_loss", DIVERGENCE_LOSSES, rules.default_adv_loss))


def _enum_value(enum_cls: type[enum.Enum], value: Any, bad) -> Any:
  value = _SPELLING_ALIASES.get(value, value) if isinstance(value, str) else value
  try:
    return enum_cls(value)
  except ValueError:
    known = [m.value for m in enum_cls]
    close = difflib.get_close_matches(str(value), known, n=1)
    bad(f"unknown {enum_cls.__name__} {value!r}; known: {', '.join(known)}"
        + (f" (did you mean {close[0]!r}?)" if close else ""))
