"""Canonical data: the reference MT-DNN's tab-separated files, one per task and split.

`<task>_<split>.tsv`, no header, one example per line (SPEC.md §6):

  PremiseOnly                uid \t label \t text
  PremiseAndOneHypothesis    uid \t label \t premise \t hypothesis
  PremiseAndMultiHypothesis  uid \t ruid1,ruid2,... \t label1,label2,... \t premise \t hyp1 \t hyp2 ...
  Seqence                    uid \t ['B-PER', 'O', ...] \t ['John', 'runs', ...]

Labels are strings mapped through the task's `labels` (without them, class ids; regression,
floats); a ranking row has one label per candidate; Seqence lists are Python list literals as
the reference writes them, read with `ast.literal_eval` (literals only, never `eval`). Every
row is checked where it is made or read, so an unusable row is reported as `file:line` and a
canonical file on disk only ever holds rows that will tokenize.
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import atomic_file
from mtdnn_jax.tasks import DataFormat, TaskDef

# GLUE and the reference quote nothing: a '"' is part of the text. Long MRC-style fields exceed
# csv's default 128 KiB field limit.
csv.field_size_limit(sys.maxsize)


@dataclasses.dataclass(frozen=True)
class Row:
  """One canonical example, labels still as text."""
  uid: str
  label: str | tuple[str, ...]  # a tuple for ranking (one per candidate) and Seqence (per word)
  texts: tuple[str, ...]  # (text,), (premise, hypothesis), (premise, *candidates), or the words
  candidate_uids: tuple[str, ...] = ()  # PremiseAndMultiHypothesis only


def canonical_path(directory: str | os.PathLike, task: str, split: str) -> Path:
  return Path(directory) / f"{task}_{split}.tsv"


def check_row(task: TaskDef, row: Row, path: str | os.PathLike, line: int | None) -> Row:
  """Returns `row` if `task` can use it; InputError naming `path:line` otherwise."""

  def bad(problem: str):
    raise InputError(path, problem, line=line)

  fmt = task.data_format
  if any(c in field for field in (row.uid, *row.candidate_uids) for c in "\t\n\r"):
    bad("an id contains a tab or line break")
  if fmt is DataFormat.PREMISE_ONLY and len(row.texts) != 1:
    bad(f"{fmt.value} takes 1 text, got {len(row.texts)}")
  if fmt is DataFormat.PREMISE_AND_ONE_HYPOTHESIS and len(row.texts) != 2:
    bad(f"{fmt.value} takes 2 texts, got {len(row.texts)}")
  if fmt is DataFormat.PREMISE_AND_MULTI_HYPOTHESIS:
    n_candidates = len(row.texts) - 1
    if n_candidates < 1:
      bad("a premise needs at least one candidate hypothesis")
    if not len(row.candidate_uids) == len(row.label) == n_candidates:
      bad(f"{n_candidates} candidate(s) but {len(row.candidate_uids)} candidate id(s) and "
          f"{len(row.label)} label(s)")
  if fmt is DataFormat.SEQUENCE:
    if not row.texts:
      bad("empty text: no words")
    if len(row.label) != len(row.texts):
      bad(f"{len(row.label)} labels for {len(row.texts)} words")
  if fmt is DataFormat.MRC:
    bad("MRC data has no canonical TSV layout (SPEC.md §6)")
  for i, text in enumerate(row.texts):
    if not text.strip():
      bad(f"empty text (field {i + 1} of the texts)" if len(row.texts) > 1 else "empty text")
    if any(c in text for c in "\t\n\r"):
      bad("a text contains a tab or line break")
  try:
    task.encode_label(row.label)
  except ValueError as e:
    bad(str(e))
  return row


def clean_text(text: str) -> str:
  """Tabs and line breaks become spaces: they delimit fields and rows in the canonical files."""
  return re.sub(r"[\t\r\n]+", " ", text).strip()


def format_row(row: Row, data_format: DataFormat) -> str:
  if data_format is DataFormat.PREMISE_AND_MULTI_HYPOTHESIS:
    fields = [row.uid, ",".join(row.candidate_uids), ",".join(row.label), *row.texts]
  elif data_format is DataFormat.SEQUENCE:
    fields = [row.uid, repr(list(row.label)), repr(list(row.texts))]
  else:
    fields = [row.uid, row.label, *row.texts]
  return "\t".join(fields) + "\n"


def write_canonical(path: str | os.PathLike, rows: Iterable[Row], data_format: DataFormat) -> int:
  """Writes rows atomically (all or nothing, even if `rows` raises midway); returns the count."""
  count = 0
  with atomic_file(path) as f:
    for row in rows:
      f.write(format_row(row, data_format))
      count += 1
  return count


def tsv_records(path: str | os.PathLike, f: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
  """(line number, fields) for each non-blank line of a tab-separated file, nothing quoted.

  Lines are decoded one at a time so that bytes that are not UTF-8 are reported with their
  line; a UTF-8 byte-order mark (GLUE's MRPC files have one) is dropped.
  """

  def decoded_lines() -> Iterator[str]:
    for line_number, raw in enumerate(f, 1):
      try:
        text = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text (byte {raw[e.start:e.start + 1]!r} at column "
                         f"{e.start + 1})", line=line_number) from None
      yield text.removeprefix("\ufeff") if line_number == 1 else text

  reader = csv.reader(decoded_lines(), delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
  for fields in reader:
    if fields:  # a blank line, e.g. a trailing one left by an editor
      yield reader.line_num, fields


def open_input(path: str | os.PathLike) -> IO[bytes]:
  try:
    return open(path, "rb")
  except FileNotFoundError:
    raise InputError(path, "file not found") from None
  except IsADirectoryError:
    raise InputError(path, "is a directory, expected a file") from None


def read_canonical(path: str | os.PathLike, task: TaskDef) -> list[Row]:
  """Reads and checks a canonical file of `task`."""
  rows = []
  with open_input(path) as f:
    for line, fields in tsv_records(path, f):
      if line == 1 and looks_like_header(fields):
        raise InputError(path, f"a header row where none belongs (canonical files have no "
                         f"header): {fields[:3]}", line=line)
      try:
        row = _parse_fields(fields, task.data_format)
      except ValueError as e:
        raise InputError(path, str(e), line=line) from None
      rows.append(check_row(task, row, path, line))
  return rows


_HEADER_WORDS = frozenset({
    "uid", "id", "index", "label", "labels", "premise", "hypothesis", "text", "sentence",
    "sentence1", "sentence2", "question", "question1", "gold_label", "ruid", "words", "score",
    "quality", "is_duplicate", "sentence_source", "label_notes"})


def looks_like_header(fields: Sequence[str]) -> bool:
  """Two or more fields that are column names: a header row, not an example."""
  return sum(f.strip().lower() in _HEADER_WORDS for f in fields) >= 2


def _parse_fields(fields: list[str], fmt: DataFormat) -> Row:
  expected = {DataFormat.PREMISE_ONLY: 3, DataFormat.PREMISE_AND_ONE_HYPOTHESIS: 4,
              DataFormat.SEQUENCE: 3}.get(fmt)
  if expected is not None and len(fields) != expected:
    raise ValueError(f"expected {expected} tab-separated fields for {fmt.value} "
                     f"(uid, label, text{'s' if expected > 3 else ''}), found {len(fields)}")
  if fmt is DataFormat.PREMISE_AND_MULTI_HYPOTHESIS:
    if len(fields) < 5:
      raise ValueError(f"expected at least 5 tab-separated fields for {fmt.value} (uid, "
                       f"candidate uids, labels, premise, hypotheses...), found {len(fields)}")
    return Row(fields[0], tuple(fields[2].split(",")), tuple(fields[3:]),
               tuple(fields[1].split(",")))
  if fmt is DataFormat.SEQUENCE:
    return Row(fields[0], _string_list(fields[1], "labels"), _string_list(fields[2], "words"))
  if fmt is DataFormat.MRC:
    raise ValueError("MRC data has no canonical TSV layout (SPEC.md §6)")
  return Row(fields[0], fields[1], tuple(fields[2:]))


def _string_list(text: str, what: str) -> tuple[str, ...]:
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError, MemoryError, RecursionError):
    raise ValueError(f"the {what} field is not a Python list literal: {text[:60]!r}") from None
  if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
    raise ValueError(f"the {what} field is not a list of strings: {text[:60]!r}")
  return tuple(value)
