"""Sequence labelling (CoNLL-2003 NER): conversion, windows, entity F1, and training it in one
MT-DNN with sentence-level tasks."""
import json

import numpy as np
import pytest
from seqeval.metrics.sequence_labeling import get_entities

from mtdnn_jax.data.conll import iob1_to_bio, read_conll
from mtdnn_jax.data.features import tokenize_rows
from mtdnn_jax.errors import InputError
from mtdnn_jax.evaluate import Predictions
from mtdnn_jax.metrics import entity_metrics
from mtdnn_jax.tasks import load_task_defs
from mtdnn_jax.tokenization import Tokenizer
from tests.tiny_setup import REPO, tiny_config, write_tiny_data

CONLL = load_task_defs(REPO / "configs" / "task_defs" / "ner.yml")["conll"]


@pytest.mark.parametrize("name, sentences", [("eng.train", 14041), ("eng.testa", 3250),
                                             ("eng.testb", 3453)])
def test_conll_conversion_keeps_every_sentence_and_entity(shared_data, name, sentences):
  path = shared_data / "conll2003" / name
  rows = list(read_conll(path))
  assert len(rows) == sentences
  # The original IOB1 tags, read independently of our reader.
  original = []
  for block in path.read_text().split("\n\n"):
    tags = [line.split()[-1] for line in block.splitlines()
            if line.strip() and not line.startswith("-DOCSTART-")]
    if tags:
      original.append(tags)
  assert [list(r.label) for r in rows] != original or name == "none"  # BIO differs from IOB1
  for row, tags in zip(rows, original):
    assert len(row.label) == len(row.texts) == len(tags)
    assert get_entities(list(row.label)) == get_entities(tags)  # same entities, same spans
    assert all(not (t.startswith("I-") and (i == 0 or row.label[i - 1][2:] != t[2:]))
               for i, t in enumerate(row.label))  # valid BIO


def test_iob1_to_bio_by_hand():
  assert iob1_to_bio(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == \
         ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]


def test_entity_metrics_hand_computed():
  gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG"]]
  guess = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG"]]
  # Entities: gold {PER 0-1, LOC 3, ORG}; predicted {PER 0-1, ORG 3, ORG}: 2 of 3 right each way.
  m = entity_metrics(gold, guess)
  assert m["precision"] == pytest.approx(200 / 3) and m["recall"] == pytest.approx(200 / 3)
  assert m["SeqEval"] == pytest.approx(200 / 3)


def test_gold_tags_through_windows_and_back_score_100(shared_data, minilm_hf_dir):
  rows = list(read_conll(shared_data / "conll2003" / "eng.testa"))[:400]
  tokenizer = Tokenizer(minilm_hf_dir / "vocab.txt")
  features = tokenize_rows(rows, CONLL, tokenizer, max_seq_len=24)  # forces many windows
  assert len(features) > len(rows)
  length = int(features.seq_lengths.max())
  labels = np.full((len(features), length), -1, np.int32)
  for i in range(len(features)):
    start, end = features.seq_offsets[i], features.seq_offsets[i + 1]
    labels[i, :end - start] = features.labels[start:end]
  predictions = Predictions(CONLL, np.arange(len(features)), {"token_predictions": labels},
                            labels, features)
  assert predictions.uids == [r.uid for r in rows]
  assert predictions.labels == [list(r.label) for r in rows] == predictions.predictions
  assert predictions.metrics(CONLL)["SeqEval"] == 100.0


def test_bad_conll_lines_name_file_and_line(tmp_path):
  path = tmp_path / "bad.conll"
  path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ I-VP\n")
  with pytest.raises(InputError, match=r"bad.conll:4: 3 columns where the file's lines have 4"):
    list(read_conll(path))
  path.write_text("EU NNP B-NP ORG\n")
  with pytest.raises(InputError, match=r"bad.conll:1: NER tag 'ORG' is not O, B-TYPE or I-TYPE"):
    list(read_conll(path))


def test_ner_trains_with_sentence_tasks_in_one_model(tmp_path, shared_data, tiny):
  from mtdnn_jax.data.canonical import write_canonical
  from mtdnn_jax.train import train_and_evaluate
  data = write_tiny_data(tmp_path / "data")
  for split, source, n in (("train", "eng.train", 40), ("dev", "eng.testa", 24)):
    rows = list(read_conll(shared_data / "conll2003" / source))[:n]
    write_canonical(data / f"conll_{split}.tsv", rows, CONLL.data_format)
  task_def = tmp_path / "tasks.yml"
  task_def.write_text((REPO / "configs/task_defs/demo.yml").read_text() + "\n" +
                      (REPO / "configs/task_defs/ner.yml").read_text())
  model = tiny[0]
  results = train_and_evaluate(tiny_config(model, data, task_def=str(task_def),
                                           tasks="sts,paraphrase,conll", num_epochs=1),
                               str(tmp_path / "run"))
  assert 0 <= results["conll/dev/SeqEval"] <= 100 and "sts/dev/Pearson" in results
  assert results["train_step_compilations"] <= 2  # one bucket x {sentence, token} label layouts
  lines = (tmp_path / "run" / "predictions" / "epoch_1" / "conll_dev_predictions.conll").read_text()
  sentences = [s for s in lines.split("\n\n") if s.strip()]
  assert len(sentences) == 24
  first = read_conll(shared_data / "conll2003" / "eng.testa").__next__()
  assert [l.split()[:2] for l in sentences[0].splitlines()] == \
         [[w, t] for w, t in zip(first.texts, first.label)]
  scores = json.loads((tmp_path / "run" / "predictions" / "epoch_1" / "conll_dev_scores.json").read_text())
  assert scores["metrics"]["SeqEval"] == pytest.approx(results["conll/dev/SeqEval"])
