"""Span tasks in the real training loop: a tiny model learns to find answers in a small
synthetic SQuAD-format set, alone and next to a sentence-level task."""
import json
import random

import pytest

from mtdnn_jax.train import train_and_evaluate
from tests.tiny_setup import REPO, tiny_config, write_tiny_data

FILLER = ("the a river city old new green blue house road north south small large quiet busy "
          "early late market bridge tower garden").split()
NAMES = "paris london berlin madrid rome vienna oslo lisbon dublin prague".split()


def synthetic_squad(n: int, seed: int, version: str) -> dict:
  """Each context names one city, after "lives in", among filler words: it answers "where does
  <person> live?". v2 adds questions whose context names no city at all."""
  rng = random.Random(seed)
  paragraphs = []
  for i in range(n):
    words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
    answerable = version == "1.1" or rng.random() < 0.75
    person, city = rng.choice("anna ben carl dora emil".split()), rng.choice(NAMES)
    cut = rng.randint(0, len(words))
    before, after = " ".join(words[:cut]), " ".join(words[cut:])
    prefix = (before + " " if before else "") + f"{person} lives in "
    context = f"{prefix}{city if answerable else rng.choice(FILLER)} . {after}".strip()
    qa = {"id": f"q{seed}-{i}", "question": f"where does {person} live ?"}
    if answerable:
      assert context[len(prefix):len(prefix) + len(city)] == city
      qa["answers"] = [{"text": city, "answer_start": len(prefix)}]
    else:
      qa["answers"] = []
    if version == "2.0":
      qa["is_impossible"] = not answerable
    paragraphs.append({"context": context, "qas": [qa]})
  return {"version": version, "data": [{"title": "synthetic", "paragraphs": paragraphs}]}


@pytest.mark.parametrize("version, task", [("1.1", "squad"), ("2.0", "squadv2")])
def test_tiny_model_learns_to_find_spans(tmp_path, tiny, version, task):
  data = write_tiny_data(tmp_path / "data")
  (data / f"{task}_train.json").write_text(json.dumps(synthetic_squad(200, 1, version)))
  (data / f"{task}_dev.json").write_text(json.dumps(synthetic_squad(40, 2, version)))
  task_def = tmp_path / "tasks.yml"
  task_def.write_text((REPO / "configs/task_defs/demo.yml").read_text() + "\n" +
                      (REPO / "configs/task_defs/squad.yml").read_text())
  model = tiny[0]
  config = tiny_config(model, data, task_def=str(task_def), tasks=f"{task},paraphrase",
                       num_epochs=2, max_seq_len=64, buckets=(64,), batch_size=16,
                       eval_batch_size=16, log_every_steps=10,
                       **{"optim.lr": 2e-3, "optim.warmup": 0.1, "squad.max_query_len": 16,
                          "squad.doc_stride": 32})
  results = train_and_evaluate(config, str(tmp_path / "run"))
  # A span drawn at random from the ~15 context words (up to 30 long) is almost never exact;
  # v2's unanswerable quarter must be recognised too.
  assert results[f"{task}/dev/EM"] > 80, results
  assert results[f"{task}/dev/F1"] >= results[f"{task}/dev/EM"]
  predictions = json.loads((tmp_path / "run" / "predictions" / "epoch_2" /
                            f"{task}_dev_predictions.json").read_text())
  assert len(predictions) == 40
  assert results["train_step_compilations"] <= 2
