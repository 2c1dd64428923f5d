"""Knowledge distillation end to end (SPEC.md §4): teachers → soft labels → student."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from mtdnn_jax import distill, smart
from mtdnn_jax.errors import InputError
from mtdnn_jax.models.heads import HeadOutputs, head_layout
from mtdnn_jax.tasks import load_task_defs
from mtdnn_jax.train import train_and_evaluate
from tests.helpers import run_cli
from tests.tiny_setup import REPO, tiny_config

DEMO = load_task_defs(REPO / "configs" / "task_defs" / "demo.yml")


def test_kd_loss_hand_computed():
  tasks = [DEMO["paraphrase"], DEMO["sts"]]
  layout = head_layout(tasks)
  kd = smart.PredictionDivergence(tasks, layout, "kd_loss", default="KlCriterion")
  student = HeadOutputs(jnp.array([[0.0, 0.0], [0.0, 0.0]]), jnp.array([0.0, 2.5]))
  soft = jnp.array([[0.8, 0.2], [3.0, 0.0]])  # paraphrase probabilities; sts teachers' score
  batch = {"task_id": jnp.array([0, 1])}
  got = np.asarray(kd(distill.soft_outputs(soft, student), student, batch))
  expected_kl = 0.8 * np.log(0.8 / 0.5) + 0.2 * np.log(0.2 / 0.5)  # KL(soft ‖ student)
  np.testing.assert_allclose(got, [expected_kl, (3.0 - 2.5) ** 2], rtol=1e-5)


def test_kd_loss_of_a_classification_only_model():
  """A student with no regression head (one GLUE classification task) has no scores."""
  tasks = [DEMO["paraphrase"]]
  kd = smart.PredictionDivergence(tasks, head_layout(tasks), "kd_loss", default="KlCriterion")
  student = HeadOutputs(jnp.log(jnp.array([[0.25, 0.75]])), None)
  teachers = distill.soft_outputs(jnp.array([[0.5, 0.5]]), student)
  assert teachers.scores is None
  got = np.asarray(kd(teachers, student, {"task_id": jnp.array([0])}))
  np.testing.assert_allclose(got, [0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)],
                             rtol=1e-5)




def test_ensemble_soft_labels_and_student(tmp_path, tiny):
  from mtdnn_jax.data.canonical import read_canonical
  from mtdnn_jax.data.features import tokenize_rows
  from mtdnn_jax.evaluate import TrainedRun
  teachers = []
  for seed in (1, 2):
    workdir = tmp_path / f"teacher{seed}"
    train_and_evaluate(tiny_config(*tiny, num_epochs=1, seed=seed), str(workdir))
    teachers.append(workdir)
  soft_dir = tmp_path / "soft"
  result = run_cli("scripts/distill.py", "--teachers", *map(str, teachers), "--output_dir",
                   str(soft_dir), "--data_dir", str(tiny[1]))
  assert result.returncode == 0, result.stderr[-2000:]
  for name in ("sts", "paraphrase"):
    soft = json.loads((soft_dir / f"{name}_train_soft.json").read_text())
    rows = read_canonical(tiny[1] / f"{name}_train.tsv", DEMO[name])
    each = []
    for workdir in teachers:
      run = TrainedRun(workdir)
      predictions = run.predict(name, tokenize_rows(rows, DEMO[name], run.tokenizer, 64))
      each.append(predictions.scores)
    average, gold = np.mean(each, axis=0), predictions.labels
    np.testing.assert_allclose(soft["scores"], average, atol=1e-5)
    assert len(soft["uids"]) == 40
    # The file also scores the teachers as one model (what a student is compared with), from
    # its own averaged scores: the tiny teachers' regression scores spread over ~3e-5, so the
    # float32 rounding of another batching (~1e-8) alone moves their Pearson by ~1e-3 (×100).
    scores = np.asarray(soft["scores"])
    if name == "paraphrase":
      assert soft["metrics"]["ACC"] == pytest.approx(100 * np.mean(scores.argmax(-1) == gold))
    else:
      assert soft["metrics"]["Pearson"] == pytest.approx(100 * np.corrcoef(scores, gold)[0, 1],
                                                         abs=1e-6)
    assert soft["metrics"]["teachers"] == 2

  student = tmp_path / "student"
  results = train_and_evaluate(
      tiny_config(*tiny, num_epochs=1, **{"distill.soft_labels_dir": str(soft_dir)}), str(student))
  assert results["train_step_compilations"] == 1
  rows = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
  kd = [r["distillation"] for r in rows if r["kind"] == "train"]
  assert len(kd) == 10 and all(v > 0 for v in kd)


def test_soft_labels_of_other_examples_are_refused(tmp_path, tiny):
  soft_dir = tmp_path / "soft"
  soft_dir.mkdir()
  (soft_dir / "paraphrase_train_soft.json").write_text(json.dumps(
      {"metrics": {}, "predictions": [0], "scores": [[0.5, 0.5]], "uids": ["nope"]}))
  with pytest.raises(InputError, match="paraphrase_train_soft.json: its 1 uids do not match the "
                     "40 examples"):
    train_and_evaluate(tiny_config(*tiny, **{"distill.soft_labels_dir": str(soft_dir)}),
                       str(tmp_path / "run"))
