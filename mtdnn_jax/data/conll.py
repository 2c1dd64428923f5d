"""CoNLL-2003 NER files → canonical Seqence rows, tags converted to BIO.

The original files have one token per line, `word POS chunk NER` (4 columns), sentences
separated by blank lines and documents opened by `-DOCSTART-` lines; the NER tags are IOB1
(`I-X` opens an entity unless it continues one of the same type; `B-X` only separates two
adjacent entities of one type). Files already in BIO are read as they are.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from mtdnn_jax.data.canonical import Row
from mtdnn_jax.errors import InputError


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
  bio, previous = [], "O"
  for tag in tags:
    if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
      tag = "B-" + tag[2:]
    bio.append(tag)
    previous = tag
  return bio


def read_conll(path: str | os.PathLike) -> Iterator[Row]:
  """Sentences of a CoNLL file as rows (uid `<file>-<n>`, BIO tags, words)."""
  path = Path(path)
  try:
    lines = path.read_bytes().decode("utf-8").split("\n")
  except FileNotFoundError:
    raise InputError(path, "file not found") from None
  except UnicodeDecodeError as e:
    line = path.read_bytes()[:e.start].count(b"\n") + 1
    raise InputError(path, f"not UTF-8 text ({e.reason})", line=line) from None
  columns = None
  words: list[str] = []
  tags: list[str] = []
  count = 0
  for number, line in enumerate(lines, start=1):
    fields = line.split()
    if fields and fields[0] == "-DOCSTART-":
      continue
    if not fields:
      if words:
        count += 1
        yield Row(f"{path.name}-{count}", tuple(iob1_to_bio(tags)), tuple(words))
        words, tags = [], []
      continue
    if columns is None:
      columns = len(fields)
      if columns < 2:
        raise InputError(path, "a token line needs at least a word and a tag column",
                         line=number)
    if len(fields) != columns:
      raise InputError(path, f"{len(fields)} columns where the file's lines have {columns} "
                       "(word POS chunk NER)", line=number)
    tag = fields[-1]
    if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
      raise InputError(path, f"NER tag {tag!r} is not O, B-TYPE or I-TYPE", line=number)
    words.append(fields[0])
    tags.append(tag)
  if words:
    count += 1
    yield Row(f"{path.name}-{count}", tuple(iob1_to_bio(tags)), tuple(words))
