"""SMART (SPEC.md §3): the perturbation's normalisation, the non-finite skip, the Bregman
teacher, and the regulariser inside the real compiled train step."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdnn_jax import smart
from mtdnn_jax.models.heads import HeadOutputs, head_layout
from mtdnn_jax.tasks import load_task_defs
from mtdnn_jax.train import train_and_evaluate
from tests.tiny_setup import REPO, tiny_config, train_losses

GLUE = load_task_defs(REPO / "configs" / "task_defs" / "glue.yml")


@pytest.mark.parametrize("p_norm, norm", [
    ("inf", lambda x, axes: np.abs(x).max(axis=axes)),
    ("l2", lambda x, axes: np.sqrt((x ** 2).sum(axis=axes))),
    ("l1", lambda x, axes: np.abs(x).sum(axis=axes)),
])
@pytest.mark.parametrize("level, axes", [("token", -1), ("sentence", (-2, -1))])
def test_normalised_perturbation_has_unit_norm(p_norm, norm, level, axes):
  delta = np.random.default_rng(0).normal(size=(3, 5, 8)).astype(np.float32) * 1e-3
  normalised = np.asarray(smart.normalize(jnp.asarray(delta), p_norm, level, epsilon=1e-9))
  np.testing.assert_allclose(norm(normalised, axes), 1.0, rtol=1e-4)
  # The direction is kept: a positive multiple of the input, per token or per sentence.
  ratio = normalised / delta
  spread = ratio.std(axis=axes) / ratio.mean(axis=axes)
  assert np.all(spread < 1e-4)


def _batch_and_divergence():
  layout = head_layout([GLUE["cola"], GLUE["stsb"]])
  divergence = smart.PredictionDivergence([GLUE["cola"], GLUE["stsb"]], layout)
  batch = {"task_id": jnp.array([0, 0, 1]), "weights": jnp.ones(3)}
  return layout, divergence, batch


def test_divergence_per_task_kind():
  _, divergence, batch = _batch_and_divergence()
  p = HeadOutputs(jnp.array([[1.0, 0.0, -1e9]] * 3), jnp.array([0.5, 0.5, 2.0]))
  q = HeadOutputs(jnp.array([[0.0, 1.0, -1e9]] * 3), jnp.array([0.5, 0.5, 3.5]))
  got = np.asarray(divergence(p, q, batch))
  a, b = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum(), np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
  sym_kl = np.sum(a * np.log(a / b)) + np.sum(b * np.log(b / a))
  np.testing.assert_allclose(got, [sym_kl, sym_kl, 1.5 ** 2], rtol=1e-5)


def test_non_finite_ascent_gradient_skips_the_term_and_counts_it():
  _, divergence, batch = _batch_and_divergence()
  base = jnp.array([[0.3, -0.2, -1e9]] * 3)

  def apply(delta):  # d sqrt(0·δ)/dδ = inf · 0 = NaN: a poisoned gradient
    bump = jnp.sqrt(0.0 * delta).sum(axis=(1, 2))[:, None]
    return HeadOutputs(base + bump, jnp.zeros(3) + bump[:, 0])

  config = smart.default_smart_config()
  value, skipped = smart.smoothness_regularizer(apply, apply(jnp.zeros((3, 4, 2))), batch,
                                                divergence, (3, 4, 2), jax.random.PRNGKey(0),
                                                config)
  assert float(skipped) == 1.0 and float(value) == 0.0 and np.isfinite(float(value))


def test_regulariser_is_positive_for_a_sensitive_model():
  _, divergence, batch = _batch_and_divergence()
  features = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 2))
  weight = jax.random.normal(jax.random.PRNGKey(3), (2, 3))

  def apply(delta=None):
    perturbed = features if delta is None else features + 1e4 * delta
    logits = jnp.einsum("bth,hc->bc", perturbed, weight)
    return HeadOutputs(logits, logits[:, 0])

  value, skipped = smart.smoothness_regularizer(apply, apply(), batch, divergence, (3, 4, 2),
                                                jax.random.PRNGKey(0),
                                                smart.default_smart_config())
  assert float(skipped) == 0.0 and float(value) > 0.0




def test_smart_and_bregman_in_the_compiled_step(tmp_path, tiny):
  """Classification and regression tasks together, SMART and Bregman on: one compilation per
  bucket still, the terms are logged, the loss differs from plain training, and the teacher
  follows θ̃ ← (1-β)θ + βθ̃."""
  from mtdnn_jax.checkpoint import Checkpoints
  overrides = {"num_epochs": 1, "smart.adv_train": True, "smart.bregman": True,
               "smart.adv_alpha": 10.0, "smart.adv_step_size": 1e-3, "smart.bregman_beta": 0.5,
               "stop_at_step": 3, "checkpoint.every_steps": 1}
  results = train_and_evaluate(tiny_config(*tiny, **overrides), str(tmp_path / "smart"))
  assert results["train_step_compilations"] == 1
  rows = [r for r in map(json.loads, (tmp_path / "smart" / "metrics.jsonl").read_text().splitlines())
          if r["kind"] == "train"]
  assert all(r["smart_skipped"] == 0 and r["smart_regularizer"] > 0 and r["bregman"] >= 0
             for r in rows)
  # The teacher starts as the student: the first divergence is zero up to the rounding of two
  # separately compiled forward passes (2e-16 seen on one CI host), the third (after a real
  # update, the first step's learning rate being 0) is not.
  assert rows[0]["bregman"] < 1e-9 < rows[2]["bregman"]
  plain = train_and_evaluate(tiny_config(*tiny, num_epochs=1, stop_at_step=3),
                             str(tmp_path / "plain"))
  assert plain["step"] == 3
  assert train_losses(tmp_path / "smart")[2] != pytest.approx(train_losses(tmp_path / "plain")[2])

  checkpoints = Checkpoints(tmp_path / "smart", keep=5, asynchronous=False)
  states = {step: checkpoints.restore_state(step) for step in (2, 3)}
  checkpoints.close()
  before, after = states[2], states[3]
  for key in ("layers", "embeddings"):
    jax.tree.map(lambda teacher_then, teacher_now, params_now: np.testing.assert_allclose(
        teacher_now, 0.5 * teacher_then + 0.5 * params_now, atol=1e-6),
        before["teacher_params"]["encoder"][key], after["teacher_params"]["encoder"][key],
        after["params"]["encoder"][key])
