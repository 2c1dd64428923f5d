"""Tokenized features and their cache: layouts, labels, reuse and rebuilding."""
import os

import numpy as np
import pytest

from mtdnn_jax.data.canonical import Row, write_canonical
from mtdnn_jax.data.features import (IGNORE_LABEL, feature_cache_path, load_features,
                                     load_or_build_features, tokenize_rows)
from mtdnn_jax.errors import InputError
from mtdnn_jax.tasks import load_task_defs, parse_task_def
from mtdnn_jax.tokenization import Tokenizer, TokenizerSettings
from tests.conftest import REPO

GLUE = load_task_defs(REPO / "configs" / "task_defs" / "glue.yml")


@pytest.fixture(scope="module")
def tokenizer(minilm_hf_dir):
  return Tokenizer.from_model_dir(minilm_hf_dir)


def canonical(tmp_path, task, split, rows):
  write_canonical(tmp_path / f"{task.name}_{split}.tsv", rows, task.data_format)
  return tmp_path


RTE_ROWS = [Row("0", "entailment", ("The cat sat on the mat.", "A cat sat.")),
            Row("1", "not_entailment", ("Dana Reeve died at age 44. " * 20, "Reeve had an accident."))]


def test_pair_layout_labels_and_truncation(tmp_path, tokenizer):
  features, built = load_or_build_features(GLUE["rte"], "dev", canonical(tmp_path, GLUE["rte"],
                                           "dev", RTE_ROWS), tmp_path / "cache", tokenizer, 32)
  assert built and len(features) == 2 and list(features.uids) == ["0", "1"]
  assert features.labels.tolist() == [1, 0] and features.labels.dtype == np.int32
  first = features.input_ids[features.seq_offsets[0]:features.seq_offsets[1]]
  assert tokenizer.convert_ids_to_tokens(first) == [
      "[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]", "a", "cat", "sat", ".", "[SEP]"]
  assert features.segment_ids[:14].tolist() == [0] * 9 + [1] * 5
  # The long premise is cut, longest first, to exactly max_seq_len; the hypothesis survives.
  assert features.seq_lengths.tolist() == [14, 32]
  second = tokenizer.convert_ids_to_tokens(features.input_ids[14:])
  assert second[-6:] == ["reeve", "had", "an", "accident", ".", "[SEP]"]
  assert features.max_candidates is None and not features.labels_per_token


def test_regression_ranking_and_single_sentence(tmp_path, tokenizer):
  stsb = tokenize_rows([Row("0", "3.800", ("A man.", "A woman."))], GLUE["stsb"], tokenizer, 64)
  assert stsb.labels.dtype == np.float32 and stsb.labels.tolist() == [pytest.approx(3.8)]
  cola = tokenize_rows([Row("0", "1", ("Hello world.",))], GLUE["cola"], tokenizer, 64)
  assert tokenizer.convert_ids_to_tokens(cola.input_ids) == ["[CLS]", "hello", "world", ".", "[SEP]"]
  assert cola.segment_ids.tolist() == [0] * 5
  rank = tokenize_rows([Row("0", ("not_entailment", "entailment", "not_entailment"),
                            ("Who?", "Him.", "Her.", "Them."), ("1", "2", "3")),
                        Row("1", ("entailment", "not_entailment"), ("Why?", "So.", "No."),
                            ("4", "5"))], GLUE["qnlir"], tokenizer, 64)
  assert rank.example_offsets.tolist() == [0, 3, 5] and rank.labels.tolist() == [1, 0]
  assert rank.max_candidates == 3
  third = rank.input_ids[rank.seq_offsets[2]:rank.seq_offsets[3]]
  assert tokenizer.convert_ids_to_tokens(third) == ["[CLS]", "who", "?", "[SEP]", "them", ".", "[SEP]"]


def test_sequence_labels_sit_on_first_sub_words(tokenizer):
  ner = parse_task_def("ner", {"task_type": "SeqenceLabeling", "data_format": "Seqence",
                               "labels": ["O", "B-PER", "I-PER"]})
  words = ("Johanson", "Smithers", "runs")
  pieces = [tokenizer.tokenize(w) for w in words]
  assert len(pieces[0]) > 1  # a word that splits, so the test means something
  features = tokenize_rows([Row("0", ("B-PER", "I-PER", "O"), words)], ner, tokenizer, 64)
  assert features.labels_per_token and len(features.labels) == len(features.input_ids)
  expected = [IGNORE_LABEL]
  for tag, word_pieces in zip((1, 2, 0), pieces):
    expected += [tag] + [IGNORE_LABEL] * (len(word_pieces) - 1)
  assert features.labels.tolist() == expected + [IGNORE_LABEL]
  assert tokenizer.convert_ids_to_tokens(features.input_ids) == (
      ["[CLS]"] + [p for w in pieces for p in w] + ["[SEP]"])
  # A sentence that does not fit is split into windows of whole words, never truncated: every
  # word keeps its tag, in order (the windows are rejoined at evaluation, see test_ner.py).
  short = tokenize_rows([Row("0", ("B-PER", "I-PER", "O"), words)], ner, tokenizer, 4)
  assert len(short) > 1 and short.seq_lengths.max() <= 4
  assert [t for t in short.labels.tolist() if t != IGNORE_LABEL] == [1, 2, 0]


def test_cache_reused_then_rebuilt_when_an_input_changes(tmp_path, tokenizer, minilm_hf_dir):
  task = GLUE["rte"]
  data = canonical(tmp_path, task, "train", RTE_ROWS)
  cache_dir = tmp_path / "cache"
  cache = feature_cache_path(cache_dir, "rte", "train")

  def build(max_seq_len=32, tok=tokenizer):
    return load_or_build_features(task, "train", data, cache_dir, tok, max_seq_len)

  first, built = build()
  assert built and cache.is_file()
  stamp = cache.stat().st_mtime_ns
  again, built = build()
  assert not built and cache.stat().st_mtime_ns == stamp  # not rewritten
  assert np.array_equal(again.input_ids, first.input_ids) and list(again.uids) == ["0", "1"]

  longer, built = build(max_seq_len=64)
  assert built and longer.seq_lengths.max() > 32
  _, built = build(max_seq_len=64)
  assert not built

  write_canonical(data / "rte_train.tsv", RTE_ROWS[:1], task.data_format)  # the source changes
  changed, built = build(max_seq_len=64)
  assert built and len(changed) == 1

  cased = Tokenizer(minilm_hf_dir / "vocab.txt", TokenizerSettings(do_lower_case=False))
  _, built = build(max_seq_len=64, tok=cased)
  assert built
  features, key = load_features(cache)  # allow_pickle=False inside
  assert key["max_seq_len"] == 64 and key["tokenizer"] == cased.fingerprint()
  assert [p.name for p in cache_dir.iterdir()] == ["rte_train.npz"]  # no temporary files


def test_bad_canonical_file_leaves_no_cache(tmp_path, tokenizer):
  data = tmp_path / "data"
  data.mkdir()
  (data / "rte_dev.tsv").write_text("0\tentailment\tA.\tB.\n1\tentailment\tA.\n", encoding="utf-8")
  with pytest.raises(InputError, match=r"rte_dev.tsv:2: expected 4 tab-separated fields"):
    load_or_build_features(GLUE["rte"], "dev", data, tmp_path / "cache", tokenizer, 32)
  assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
  with pytest.raises(InputError, match="canonical file not found"):
    load_or_build_features(GLUE["rte"], "test", data, tmp_path / "cache", tokenizer, 32)


def test_damaged_cache_is_rebuilt(tmp_path, tokenizer):
  data = canonical(tmp_path, GLUE["rte"], "dev", RTE_ROWS)
  cache = feature_cache_path(tmp_path / "cache", "rte", "dev")
  cache.parent.mkdir()
  cache.write_bytes(b"half a file")
  features, built = load_or_build_features(GLUE["rte"], "dev", data, cache.parent, tokenizer, 32)
  assert built and len(features) == 2 and os.path.getsize(cache) > 100


def test_real_sst2_train_tokenizes_once(shared_data, tmp_path, tokenizer):
  from scripts import prepro
  out = tmp_path / "sst"
  args = ["--task_def", str(REPO / "configs/task_defs/glue.yml"), "--raw_dir",
          str(shared_data / "glue"), "--output_dir", str(out), "--tasks", "sst",
          "--vocab", str(tokenizer.vocab_path), "--max_seq_len", "128"]
  assert prepro.main(args) == 0
  features = load_features(feature_cache_path(out / "features", "sst", "train"))[0]
  assert len(features) == 67349 and features.seq_lengths.max() <= 128
  assert int(features.labels.sum()) == 37569  # positives, as published
  mtime = feature_cache_path(out / "features", "sst", "train").stat().st_mtime_ns
  assert prepro.main(args) == 0
  assert feature_cache_path(out / "features", "sst", "train").stat().st_mtime_ns == mtime
