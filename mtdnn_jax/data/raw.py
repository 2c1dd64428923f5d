"""Raw dataset layouts → canonical rows: GLUE (as its download script lays it out), SNLI 1.0,
SciTail 1.1, and train subsets for domain adaptation.

Each task name the shipped task definitions use has a `RawSource`: which file holds each
split (relative to the raw directory) and how its rows become canonical `Row`s. GLUE files are
read by column name from their header (CoLA's train/dev have none and are read by position);
quotes are literal in GLUE, so nothing is unquoted.

GLUE's test splits have no gold labels and get the task's dummy label; SNLI's and SciTail's
test splits are labelled. Skipped rather than fatal, and counted in `skipped`: SNLI pairs
without a gold label ("-"), as the SNLI authors prescribe; QQP train rows with missing fields
or an empty question, which the real release has and GLUE users drop; QNLI questions that
cannot form a ranking example (`qnlir`). Everything else that is wrong stops with
`file:line: what is wrong`.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from mtdnn_jax.data.canonical import (Row, canonical_path, check_row, clean_text,
                                      looks_like_header, open_input, read_canonical,
                                      tsv_records, write_canonical)
from mtdnn_jax.data.conll import read_conll
from mtdnn_jax.errors import InputError
from mtdnn_jax.tasks import DataFormat, TaskDef, TaskType, is_test_split

Skipped = collections.Counter  # reason → rows skipped


@dataclasses.dataclass(frozen=True)
class TsvLayout:
  """Where a split's texts, label and id sit in a raw tab-separated file."""
  texts: tuple[str, ...]  # column names
  label: str | None  # None: the split has no gold labels
  uid: str | None  # None: the 0-based row number is the id
  columns: tuple[str, ...] | None = None  # a headerless file's columns; None: read the header
  skip_malformed: bool = False  # drop (and count) rows with missing fields or empty texts


@dataclasses.dataclass(frozen=True)
class RawSource:
  files: Mapping[str, str]  # split → file, relative to the raw directory
  read: Callable[[TaskDef, str, Path, Skipped], Iterator[Row]]  # (task, split, file, skipped)


def _tsv_source(files: Mapping[str, str], texts: Sequence[str], label: str,
                uid: str | None = "index", test_uid: str = "index",
                headerless_columns: Sequence[str] | None = None,
                skip_malformed_train: bool = False, labelled_test: bool = False) -> RawSource:
  """A source whose splits share one layout, except GLUE-style unlabelled test splits."""
  columns = None if headerless_columns is None else tuple(headerless_columns)
  layouts = {}
  for split in files:
    if is_test_split(split) and not labelled_test:
      layouts[split] = TsvLayout(tuple(texts), None, test_uid)
    else:
      layouts[split] = TsvLayout(tuple(texts), label, uid, columns,
                                 skip_malformed=skip_malformed_train and split == "train")
  return RawSource(dict(files), lambda task, split, path, skipped: read_tsv_layout(
      task, split, path, layouts[split], skipped))


def _glue_files(folder: str, splits: Mapping[str, str] | None = None) -> dict[str, str]:
  splits = splits or {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
  return {split: f"{folder}/{name}" for split, name in splits.items()}


_MNLI_FILES = {"train": "train.tsv", "matched_dev": "dev_matched.tsv",
               "mismatched_dev": "dev_mismatched.tsv", "matched_test": "test_matched.tsv",
               "mismatched_test": "test_mismatched.tsv"}
_PAIR = ("sentence1", "sentence2")

GLUE_SOURCES: dict[str, RawSource] = {
    # CoLA's train/dev have no header: source, label, the original author's mark, sentence.
    "cola": _tsv_source(_glue_files("CoLA"), ("sentence",), "label", uid=None,
                        headerless_columns=("source", "label", "author_label", "sentence")),
    "sst": _tsv_source(_glue_files("SST-2"), ("sentence",), "label", uid=None),
    "mrpc": _tsv_source(_glue_files("MRPC"), ("#1 String", "#2 String"), "Quality", uid=None),
    "stsb": _tsv_source(_glue_files("STS-B"), _PAIR, "score"),
    "qqp": _tsv_source(_glue_files("QQP"), ("question1", "question2"), "is_duplicate", uid="id",
                       test_uid="id", skip_malformed_train=True),
    "mnli": _tsv_source(_glue_files("MNLI", _MNLI_FILES), _PAIR, "gold_label"),
    "qnli": _tsv_source(_glue_files("QNLI"), ("question", "sentence"), "label"),
    "rte": _tsv_source(_glue_files("RTE"), _PAIR, "label"),
    "wnli": _tsv_source(_glue_files("WNLI"), _PAIR, "label"),
    "ax": _tsv_source({"test": "diagnostic/diagnostic.tsv"}, _PAIR, "label"),
}


def read_tsv_layout(task: TaskDef, split: str, path: Path, layout: TsvLayout,
                    skipped: Skipped) -> Iterator[Row]:
  """Canonical rows of one raw TSV file."""
  with open_input(path) as f:
    records = tsv_records(path, f)
    if layout.columns is None:
      try:
        _, columns = next(records)
      except StopIteration:
        raise InputError(path, "empty file, expected a header row") from None
    else:
      columns = list(layout.columns)
    needed = [*layout.texts, *([layout.label] if layout.label else []),
              *([layout.uid] if layout.uid else [])]
    missing = [c for c in needed if c not in columns]
    if missing:
      raise InputError(path, f"the header lacks the column(s) {missing} (found {columns}); is "
                       "this the file GLUE's download script writes?", line=1)
    index = {c: i for i, c in enumerate(columns)}
    for row_number, (line, fields) in enumerate(records):
      if line == 1 and looks_like_header(fields):
        raise InputError(path, f"a header row where none belongs (expected data: "
                         f"{', '.join(columns)}): {fields}", line=line)
      if len(fields) != len(columns):
        if layout.skip_malformed:
          skipped["row with missing fields"] += 1
          continue
        raise InputError(path, f"expected {len(columns)} tab-separated fields "
                         f"({', '.join(columns)}), found {len(fields)}", line=line)
      row = Row(uid=fields[index[layout.uid]] if layout.uid else str(row_number),
                label=fields[index[layout.label]].strip() if layout.label else task.dummy_label(),
                texts=tuple(fields[index[c]].strip() for c in layout.texts))
      if layout.skip_malformed and not all(row.texts):
        skipped["row with an empty text"] += 1
        continue
      yield check_row(task, row, path, line)


def _read_qnli_ranking(task: TaskDef, split: str, path: Path, skipped: Skipped) -> Iterator[Row]:
  """QNLI as ranking: the candidate sentences of one question become one example.

  GLUE's QNLI v2 no longer puts each question's sentences on adjacent lines, so rows are grouped
  by question text (in order of first appearance). A labelled question is kept when exactly one
  candidate has the best grade (entailment) and at least one does not.
  """
  pairs = dataclasses.replace(task, task_type=TaskType.CLASSIFICATION,
                              data_format=DataFormat.PREMISE_AND_ONE_HYPOTHESIS,
                              n_class=len(task.labels))
  layout = TsvLayout(("question", "sentence"), None if is_test_split(split) else "label", "index")
  groups: dict[str, list[Row]] = {}
  for row in read_tsv_layout(pairs, split, path, layout, skipped):
    groups.setdefault(row.texts[0], []).append(row)
  best = task.labels[-1]
  for question_number, (question, candidates) in enumerate(groups.items()):
    labels = tuple(c.label for c in candidates)
    if len(candidates) < 2:
      skipped["question with a single candidate"] += 1
    elif not is_test_split(split) and labels.count(best) != 1:
      skipped[f"question without exactly one {best} candidate"] += 1
    else:
      yield check_row(task, Row(uid=str(question_number), label=labels,
                                texts=(question, *(c.texts[1] for c in candidates)),
                                candidate_uids=tuple(c.uid for c in candidates)), path, None)


def _read_snli(task: TaskDef, split: str, path: Path, skipped: Skipped) -> Iterator[Row]:
  """SNLI 1.0 JSON lines; pairs whose annotators reached no consensus ("-") are dropped."""
  with open_input(path) as f:
    for line, raw in enumerate(f, 1):
      if not raw.strip():
        continue
      try:
        record = json.loads(raw.decode("utf-8"))
      except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text (byte {raw[e.start:e.start + 1]!r} at column "
                         f"{e.start + 1})", line=line) from None
      except json.JSONDecodeError as e:
        raise InputError(path, f"not a JSON object: {e.msg} at column {e.colno}",
                         line=line) from None
      missing = [k for k in ("pairID", "sentence1", "sentence2", "gold_label")
                 if not isinstance(record, dict) or not isinstance(record.get(k), str)]
      if missing:
        raise InputError(path, f"the record lacks the text field(s) {missing}", line=line)
      if record["gold_label"] == "-":
        skipped["pair without a gold label (-)"] += 1
        continue
      yield check_row(task, Row(record["pairID"], record["gold_label"],
                                (clean_text(record["sentence1"]),
                                                          clean_text(record["sentence2"]))),
                      path, line)


RAW_SOURCES: dict[str, RawSource] = {
    **GLUE_SOURCES,
    "qnlir": RawSource(GLUE_SOURCES["qnli"].files, _read_qnli_ranking),
    "snli": RawSource({s: f"snli_1.0/snli_1.0_{s}.jsonl" for s in ("train", "dev", "test")},
                      _read_snli),
    # SciTail's TSV has no header and no ids: premise, hypothesis, entails/neutral.
    "scitail": _tsv_source(
        {s: f"SciTailV1.1/tsv_format/scitail_1.0_{s}.tsv" for s in ("train", "dev", "test")},
        ("premise", "hypothesis"), "label", uid=None,
        headerless_columns=("premise", "hypothesis", "label"), labelled_test=True),
    # CoNLL-2003: the original files (testa is the dev set, testb the test set, both labelled).
    "conll": RawSource({"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"},
                       lambda task, split, path, skipped: read_conll(path)),
}


def raw_file(task: TaskDef, split: str, raw_dir: str | os.PathLike) -> Path:
  """The raw file holding `split` of `task`; InputError if we know no layout for it."""
  source = RAW_SOURCES.get(task.name)
  if source is None:
    raise InputError(None, f"no raw layout is known for task {task.name!r} (known: "
                     f"{', '.join(RAW_SOURCES)}); write its canonical files yourself or read it "
                     "from TFDS", field=f"task {task.name}")
  if split not in source.files:
    raise InputError(None, f"split {split!r} has no raw file (known: {', '.join(source.files)})",
                     field=f"task {task.name}")
  return Path(raw_dir) / source.files[split]


def convert_split(task: TaskDef, split: str, raw_dir: str | os.PathLike,
                  output_dir: str | os.PathLike, skipped: Skipped) -> int:
  """Raw file → `<output_dir>/<task>_<split>.tsv` (atomically); returns the row count."""
  rows = RAW_SOURCES[task.name].read(task, split, raw_file(task, split, raw_dir), skipped)
  return write_canonical(canonical_path(output_dir, task.name, split), rows, task.data_format)


def subset_split_name(fraction: float) -> str:
  """0.001 → "train_0.1pct": the split holding that fraction of train."""
  return f"train_{fraction * 100:g}pct"


def write_train_subsets(task: TaskDef, output_dir: str | os.PathLike, fractions: Sequence[float],
                        seed: int) -> dict[str, int]:
  """Random subsets of the canonical train split (domain adaptation: 0.1%, 1%, 10% of it).

  One permutation drawn from `seed` is cut at each size, so the subsets are nested and the
  same seed always gives the same rows; rows keep their order in train.
  """
  rows = read_canonical(canonical_path(output_dir, task.name, "train"), task)
  order = np.random.default_rng(seed).permutation(len(rows))
  counts = {}
  for fraction in fractions:
    if not 0 < fraction <= 1:
      raise InputError(None, f"a train fraction must be in (0, 1], got {fraction}")
    size = max(1, round(len(rows) * fraction))
    chosen = np.sort(order[:size])
    split = subset_split_name(fraction)
    counts[split] = write_canonical(canonical_path(output_dir, task.name, split),
                                    (rows[i] for i in chosen), task.data_format)
  return counts
