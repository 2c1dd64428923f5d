"""SMART (Jiang et al., arXiv:1911.03437; SPEC.md §3): a smoothness-inducing adversarial
regulariser and the Bregman proximal point, as terms of the training loss.

Smoothness: noise δ is added once to the embedding layer's output (the reference feeds e + δ
back through the embedding layer, adding position/segment embeddings and LayerNorm twice; we do
not). δ starts as N(0, adv_noise_var²), takes `adv_k` normalised ascent steps on the divergence
between the perturbed and the clean predictions, and the regulariser is that divergence at the
final δ. The clean and perturbed passes share one dropout mask, so they differ by δ alone. A
non-finite ascent gradient drops the term for that step (the reference crashes there) and is
counted in the step's metrics.

Bregman proximal point (in the paper, absent from the reference): a momentum teacher
θ̃ ← (1-β)θ + βθ̃ kept in the train state, and μ · D(f(x; θ), f(x; θ̃)) added to the loss.

Divergences per example: a classification task's `adv_loss` (symmetric KL by default; KL, JS,
Hellinger), squared error for a regression score, the task's divergence over the candidates of a
ranking question.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from mtdnn_jax.errors import InputError
from mtdnn_jax.losses import DIVERGENCES, masked_logits, mean_squared_error, weighted_mean
from mtdnn_jax.models.heads import KINDS, HeadLayout, HeadOutputs
from mtdnn_jax.tasks import TaskDef

P_NORMS = ("inf", "l2", "l1")
NORM_LEVELS = ("token", "sentence")


def default_smart_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      adv_train=False,  # add the smoothness regulariser
      adv_alpha=1.0,  # its weight
      adv_k=1,  # ascent steps on the perturbation
      adv_step_size=1e-5,  # η
      adv_noise_var=1e-5,  # σ of the initial noise
      adv_epsilon=1e-6,  # keeps the normalisation's division stable
      adv_p_norm="inf",  # inf, l2 or l1
      adv_norm_level="token",  # normalise per token, or over the whole sentence
      bregman=False,  # add the Bregman proximal-point term
      bregman_mu=1.0,  # its weight μ
      bregman_beta=0.99,  # the teacher's momentum β
  ))


def check_smart_config(config: ml_collections.ConfigDict) -> None:
  if config.adv_p_norm not in P_NORMS:
    raise InputError(None, f"unknown norm {config.adv_p_norm!r} (known: {', '.join(P_NORMS)})",
                     field="smart.adv_p_norm")
  if config.adv_norm_level not in NORM_LEVELS:
    raise InputError(None, f"unknown level {config.adv_norm_level!r} (known: "
                     f"{', '.join(NORM_LEVELS)})", field="smart.adv_norm_level")
  if config.adv_k < 1:
    raise InputError(None, "must be at least 1", field="smart.adv_k")
  if not 0 <= config.bregman_beta < 1:
    raise InputError(None, "must be in [0, 1)", field="smart.bregman_beta")


def normalize(delta: jax.Array, p_norm: str, level: str, epsilon: float) -> jax.Array:
  """δ divided by its norm per token ([..., hidden]) or per sentence ([..., seq, hidden])."""
  axes = (-1,) if level == "token" else (-2, -1)
  magnitude = jnp.abs(delta)
  if p_norm == "inf":
    norm = jnp.max(magnitude, axis=axes, keepdims=True)
  elif p_norm == "l2":
    norm = jnp.sqrt(jnp.sum(jnp.square(delta), axis=axes, keepdims=True))
  else:
    norm = jnp.sum(magnitude, axis=axes, keepdims=True)
  return delta / (norm + epsilon)


class PredictionDivergence:
  """Per-example divergence between two predictions of the same batch, each example under its
  own task's rule."""

  def __init__(self, tasks: Sequence[TaskDef], layout: HeadLayout, attribute: str = "adv_loss",
               default: str = "SymKlCriterion"):
    """Each task's divergence is its `attribute` (adv_loss or kd_loss) when that names one of
    DIVERGENCES, else `default` (regression scores always use squared error)."""
    self.layout = layout
    names = [getattr(t, attribute) if getattr(t, attribute) in DIVERGENCES else default
             for t in tasks]
    self.used = sorted(set(names))
    self.code = jnp.asarray([self.used.index(n) for n in names], jnp.int32)

  def __call__(self, p: HeadOutputs, q: HeadOutputs, batch) -> jax.Array:
    task_id = batch["task_id"]
    if p.logits is None:  # ranking: over the question's candidates
      p_logits = masked_logits(p.scores, batch["candidate_mask"] > 0)
      q_logits = masked_logits(q.scores, batch["candidate_mask"] > 0)
    else:
      p_logits, q_logits = p.logits, q.logits
    per_divergence = jnp.stack([DIVERGENCES[n](p_logits, q_logits) for n in self.used])
    divergence = per_divergence[self.code[task_id], jnp.arange(task_id.shape[0])]
    if p.logits is not None and p.scores is not None and q.scores is not None:
      is_scorer = jnp.asarray(self.layout.kind_code())[task_id] == KINDS.index("scorer")
      divergence = jnp.where(is_scorer, mean_squared_error(p.scores, q.scores), divergence)
    return divergence


def smoothness_regularizer(apply: Callable[[jax.Array | None], HeadOutputs], clean: HeadOutputs,
                           batch, divergence: PredictionDivergence, shape: tuple[int, ...],
                           rng: jax.Array, config: ml_collections.ConfigDict
                           ) -> tuple[jax.Array, jax.Array]:
  """(R_s, skipped): the adversarial smoothness term and whether it was dropped (0/1).

  `apply(δ)` runs the model with δ added to the embedding output; `shape` is δ's shape.
  """
  weights = batch["weights"]
  target = jax.lax.stop_gradient(clean)
  delta = config.adv_noise_var * jax.random.normal(rng, shape, jnp.float32)
  skipped = jnp.zeros((), bool)
  for _ in range(config.adv_k):
    objective = lambda d: jnp.sum(weights * divergence(apply(d), target, batch))
    grad = jax.grad(objective)(delta)
    finite = jnp.all(jnp.isfinite(grad))
    stepped = normalize(delta + config.adv_step_size * jnp.where(finite, grad, 0.0),
                        config.adv_p_norm, config.adv_norm_level, config.adv_epsilon)
    delta = jnp.where(finite, stepped, delta)
    skipped = skipped | ~finite
  adversarial = apply(jax.lax.stop_gradient(delta))
  term = weighted_mean(divergence(adversarial, clean, batch), weights)
  return jnp.where(skipped, 0.0, term), skipped.astype(jnp.float32)
