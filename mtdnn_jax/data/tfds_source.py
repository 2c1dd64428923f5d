"""Canonical rows from TensorFlow Datasets, for data that lives in a TFDS data directory.

`glue/rte`, `glue/stsb`, ... and `snli` become the same canonical rows as the raw GLUE/SNLI files
(`raw.py`), so the rest of the pipeline cannot tell the two sources apart. Nothing is
downloaded: the datasets must already be prepared in the data directory. TFDS stores class
labels as ids in its own order (MNLI: entailment, neutral, contradiction); they are mapped to
names through the dataset's ClassLabel, then through the task definition's `labels`.
TensorFlow is an optional dependency, imported only here.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np

from mtdnn_jax.data.canonical import Row, canonical_path, check_row, clean_text, write_canonical
from mtdnn_jax.data.raw import Skipped
from mtdnn_jax.errors import InputError
from mtdnn_jax.tasks import TaskDef, TaskType, is_test_split


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  name: str  # TFDS dataset (and config) name
  texts: tuple[str, ...]  # feature names
  uid: str | None = "idx"  # None: the example's position is its id


_PAIR = ("sentence1", "sentence2")
_NLI = ("premise", "hypothesis")
TFDS_SOURCES = {
    "cola": TfdsSource("glue/cola", ("sentence",)),
    "sst": TfdsSource("glue/sst2", ("sentence",)),
    "mrpc": TfdsSource("glue/mrpc", _PAIR),
    "stsb": TfdsSource("glue/stsb", _PAIR),
    "qqp": TfdsSource("glue/qqp", ("question1", "question2")),
    "mnli": TfdsSource("glue/mnli", _NLI),
    "qnli": TfdsSource("glue/qnli", ("question", "sentence")),
    "rte": TfdsSource("glue/rte", _PAIR),
    "wnli": TfdsSource("glue/wnli", _PAIR),
    "ax": TfdsSource("glue/ax", _NLI),
    "snli": TfdsSource("snli", _NLI, uid=None),
}

# Our split names (the reference's) → TFDS's.
_TFDS_SPLITS = {"dev": "validation", "matched_dev": "validation_matched",
                "mismatched_dev": "validation_mismatched", "matched_test": "test_matched",
                "mismatched_test": "test_mismatched"}


def tfds_rows(task: TaskDef, split: str, data_dir: str | os.PathLike | None,
              skipped: Skipped) -> Iterator[Row]:
  """Canonical rows of `split` of `task` read from its TFDS dataset."""
  import tensorflow_datasets as tfds  # optional and slow to import

  source = TFDS_SOURCES.get(task.name)
  if source is None:
    raise InputError(None, f"no TFDS dataset is known for task {task.name!r} (known: "
                     f"{', '.join(TFDS_SOURCES)})", field=f"task {task.name}")
  tfds_split = _TFDS_SPLITS.get(split, split)
  where = f"tfds:{source.name}/{tfds_split}"
  try:
    builder = tfds.builder(source.name, data_dir=data_dir)
    dataset = builder.as_dataset(split=tfds_split)
  except Exception as e:  # TFDS raises many types for "not prepared here"; all mean the same
    raise InputError(where, f"cannot read it from TFDS data dir {data_dir} ({e}); prepare "
                     "it there first (nothing is downloaded)") from None
  label_feature = builder.info.features["label"]
  names = getattr(label_feature, "names", None)
  test = is_test_split(split)
  for number, example in enumerate(tfds.as_numpy(dataset)):
    texts = tuple(clean_text(example[key].decode("utf-8")) for key in source.texts)
    uid = str(example[source.uid]) if source.uid else str(number)
    value = example["label"]
    if task.task_type is TaskType.REGRESSION:
      label = task.dummy_label() if test else np.format_float_positional(np.float32(value),
                                                                           trim="-")
    elif int(value) < 0:  # TFDS's mark for "no gold label": all of GLUE's test splits
      if not test:
        skipped["example without a gold label (-1)"] += 1
        continue
      label = task.dummy_label()
    elif task.labels and names:
      label = names[int(value)]
    else:
      label = str(int(value))
    yield check_row(task, Row(uid, label, texts), where, number + 1)


def convert_tfds_split(task: TaskDef, split: str, data_dir: str | os.PathLike | None,
                       output_dir: str | os.PathLike, skipped: Skipped) -> int:
  """TFDS split → `<output_dir>/<task>_<split>.tsv` (atomically); returns the row count."""
  rows = tfds_rows(task, split, data_dir, skipped)
  return write_canonical(canonical_path(output_dir, task.name, split), rows, task.data_format)
