"""Per-example losses and divergences; the train step takes their weighted mean.

Everything is computed in float32 whatever the compute dtype, and returns one value per example
so that padding rows (weight 0) and examples of other tasks drop out by weighting. Logits of
classes a task does not have are masked to `MASKED` before any softmax.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MASKED = -1e9  # a logit that softmax turns into exactly 0 in float32, without inf - inf NaNs


def masked_logits(logits: jax.Array, class_mask: jax.Array) -> jax.Array:
  return jnp.where(class_mask, logits.astype(jnp.float32), MASKED)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """[B, C] logits (already masked), [B] int labels → [B]."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  return jnp.square(predictions.astype(jnp.float32) - targets.astype(jnp.float32))


def ranking_cross_entropy(scores: jax.Array, candidate_mask: jax.Array,
                          labels: jax.Array) -> jax.Array:
  """Softmax over one question's candidates ([B, K] scores; absent candidates masked)."""
  return cross_entropy(masked_logits(scores, candidate_mask.astype(bool)), labels)


def token_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[B, T, C] logits, [B, T] labels with -1 where nothing is scored → ([B] summed loss,
  [B] number of scored tokens)."""
  scored = labels >= 0
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.maximum(labels, 0)[..., None], axis=-1)[..., 0]
  return -jnp.sum(jnp.where(scored, picked, 0.0), axis=-1), jnp.sum(scored, axis=-1)


# --- divergences between two predictive distributions given as logits ([B, C] → [B]) ---

def kl_divergence(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
  """KL(p ‖ q) = Σ p (log p − log q)."""
  log_p = jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def symmetric_kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
  return kl_divergence(p_logits, q_logits) + kl_divergence(q_logits, p_logits)


def js_divergence(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
  """Jensen–Shannon: ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½ (p + q)."""
  log_p = jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
  log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
  return 0.5 * (jnp.sum(jnp.exp(log_p) * (log_p - log_m), axis=-1) +
                jnp.sum(jnp.exp(log_q) * (log_q - log_m), axis=-1))


def hellinger_distance(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
  """Squared Hellinger distance ½ Σ (√p − √q)² (in [0, 1])."""
  sqrt_p = jnp.exp(0.5 * jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1))
  sqrt_q = jnp.exp(0.5 * jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1))
  return 0.5 * jnp.sum(jnp.square(sqrt_p - sqrt_q), axis=-1)


DIVERGENCES = {
    # names as the reference's task definitions spell them (kd_loss / adv_loss)
    "KlCriterion": kl_divergence,
    "SymKlCriterion": symmetric_kl,
    "JSCriterion": js_divergence,
    "HLCriterion": hellinger_distance,
}


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean over real examples; 0 for a batch of padding alone."""
  weights = weights.astype(jnp.float32)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)
