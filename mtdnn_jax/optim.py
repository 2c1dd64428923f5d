"""The optimizer as one optax chain, described by the config's `optim` section (SPEC.md §2).

    build_optimizer(config, total_steps) =
      MultiSteps(k,                                  # gradient accumulation, if k > 1
        multi_transform(frozen encoder -> zero,      # if freeze_encoder
          chain(clip_by_global_norm(clip_norm),      # if clip_norm > 0
                <optimizer>(learning_rate_schedule, weight_decay, decay_mask),
                scale_by_layer_decay(layer_decay))))  # if layer_decay < 1

The paper's setting is the default: Adamax, lr 5e-5, linear warm-up over 10% of the updates then
linear decay to 0, global-norm clipping at 1.0, weight decay 0.01 on everything but biases and
LayerNorm parameters. Weight decay is decoupled (Loshchilov & Hutter): the update is
`-lr_t * (direction + weight_decay * param)`, as in `optax.adamw` / `optax.adamaxw`; only
`adam` adds the decay to the gradient instead (plain L2, as `torch.optim.Adam` does), which is
what tells it apart from `adamw`.

`total_steps` always counts train steps (micro-batches); the schedule counts optimizer updates,
`total_steps // grad_accumulation_steps`, because MultiSteps advances the inner chain (and so
the schedule's count) only on the micro-batch that completes an accumulation.
"""
from __future__ import annotations

import difflib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mtdnn_jax.errors import InputError

SCHEDULES = ("bert", "cosine", "constant")


def default_optim_config() -> ml_collections.ConfigDict:
  """The `optim` section of an experiment config: the paper's optimizer."""
  return ml_collections.ConfigDict(dict(
      name="adamax",  # one of OPTIMIZERS
      lr=5e-5,  # peak learning rate
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      radam_threshold=5.0,  # radam: below this SMA length the update is un-rectified momentum
      weight_decay=0.01,  # never on biases and norm parameters, see decay_mask
      clip_norm=1.0,  # global-norm clipping of the (accumulated) gradient; 0 disables
      schedule="bert",  # one of SCHEDULES
      warmup=0.1,  # fraction of the optimizer updates spent warming up linearly from 0
      grad_accumulation_steps=1,  # k: one update per k micro-batches (effective batch x k)
      freeze_encoder=False,  # train the task heads only
      layer_decay=1.0,  # layer-wise lr decay, see scale_by_layer_decay; 1 = off
      ema_decay=0.0,  # EMA of the weights kept by the train step (toolkit: 0.995); 0 = off
  ))


# --------------------------------------------------------------------------- parameter paths

def _path_keys(path) -> tuple[str, ...]:
  """The dict keys along a pytree path (skipping attribute keys of boxed parameters)."""
  return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def _encoder_part(keys: tuple[str, ...]) -> str | None:
  """Which part of the encoder ("embeddings", "layers", "pooler") a leaf is in, if any."""
  if "encoder" not in keys:
    return None
  position = keys.index("encoder")
  return keys[position + 1] if position + 1 < len(keys) else None


def _is_decayed(keys: tuple[str, ...]) -> bool:
  # BERT's convention: biases and normalisation parameters are not pulled towards 0, the
  # norm's scale in particular should stay near 1.
  return keys[-1] != "bias" and not any(k.lower().endswith("norm") for k in keys)


def decay_mask(params) -> Any:
  """True for the leaves that get weight decay: all but biases and LayerNorm/`*_norm` params."""
  return jax.tree_util.tree_map_with_path(lambda path, _: _is_decayed(_path_keys(path)), params)


def _freeze_encoder_labels(params) -> Any:
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "frozen" if "encoder" in _path_keys(path) else "trainable", params)


# --------------------------------------------------------------------------- layer-wise decay

def layer_decay_scales(params, layer_decay: float) -> Any:
  """Per-leaf update scales of layer-wise lr decay (BEiT's convention, see below).

  With L Transformer layers: task heads and the pooler get 1; Transformer layer l (1-based,
  layer 1 nearest the embeddings) gets layer_decay**(L + 1 - l), so the top layer gets
  layer_decay and the bottom one layer_decay**L; the embeddings get layer_decay**(L + 1).
  Encoder layers are stacked on axis 0, so their scale is a length-L vector shaped to
  broadcast along that axis; every other scale is a Python float.
  """
  leaves = jax.tree_util.tree_leaves_with_path(params)
  layer_counts = {leaf.shape[0] for path, leaf in leaves
                  if _encoder_part(_path_keys(path)) == "layers"}
  if len(layer_counts) > 1:
    raise ValueError(f"encoder layer parameters disagree on the layer count: {layer_counts}")
  num_layers = layer_counts.pop() if layer_counts else None

  def scale(path, leaf):
    part = _encoder_part(_path_keys(path))
    if part == "layers":
      per_layer = layer_decay ** (num_layers - np.arange(num_layers, dtype=np.float64))
      return per_layer.astype(np.float32).reshape((num_layers,) + (1,) * (leaf.ndim - 1))
    if part == "embeddings":
      if num_layers is None:
        raise ValueError("layer decay needs the encoder's stacked layers to place the embeddings")
      return layer_decay ** (num_layers + 1)
    return 1.0

  return jax.tree_util.tree_map_with_path(scale, params)


def scale_by_layer_decay(layer_decay: float) -> optax.GradientTransformation:
  """Multiplies each update by its `layer_decay_scales` (stateless; scales are constants).

  The scales depend only on the tree's paths and shapes, so they are recomputed at trace time
  instead of being stored in the optimizer state.
  """
  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    scales = layer_decay_scales(updates, layer_decay)
    return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

  return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------- schedules

def num_optimizer_updates(config: ml_collections.ConfigDict, total_steps: int) -> int:
  """How many optimizer updates `total_steps` train steps (micro-batches) make."""
  check_optim_config(config)
  updates = int(total_steps) // config.grad_accumulation_steps
  if updates < 1:
    raise InputError(None, f"{total_steps} train steps make no optimizer update with "
                     f"{config.grad_accumulation_steps} accumulation steps",
                     field="optim.grad_accumulation_steps")
  return updates


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the optimizer-update count (not the train step)."""
  num_updates = num_optimizer_updates(config, total_steps)
  warmup_steps = int(config.warmup * num_updates)  # < num_updates since warmup < 1
  decay_steps = num_updates - warmup_steps
  after_warmup = {
      "bert": lambda: optax.linear_schedule(config.lr, 0.0, decay_steps),
      "cosine": lambda: optax.cosine_decay_schedule(config.lr, decay_steps),
      "constant": lambda: optax.constant_schedule(config.lr),
  }[config.schedule]()
  if warmup_steps == 0:  # a zero-length linear_schedule would hold 0, not ramp
    return after_warmup
  return optax.join_schedules(
      [optax.linear_schedule(0.0, config.lr, warmup_steps), after_warmup], [warmup_steps])


def learning_rate_at(config: ml_collections.ConfigDict, total_steps: int, step: int) -> float:
  """The learning rate of the update that train step `step` (0-based) contributes to, to log."""
  schedule = learning_rate_schedule(config, total_steps)
  return float(schedule(step // config.grad_accumulation_steps))


# --------------------------------------------------------------------------- the optimizer

def _adam(config, learning_rate):
  # Coupled L2: the decay joins the gradient before the moment estimates.
  return optax.chain(optax.add_decayed_weights(config.weight_decay, decay_mask),
                     optax.adam(learning_rate, config.b1, config.b2, config.eps))


def _adamw(config, learning_rate):
  return optax.adamw(learning_rate, config.b1, config.b2, config.eps,
                     weight_decay=config.weight_decay, mask=decay_mask)


def _adamax(config, learning_rate):
  return optax.adamaxw(learning_rate, config.b1, config.b2, config.eps,
                       weight_decay=config.weight_decay, mask=decay_mask)


def _radam(config, learning_rate):
  # optax.radam has no weight decay; decoupled decay sits where adamw puts it, between the
  # direction and the learning rate.
  return optax.chain(
      optax.scale_by_radam(config.b1, config.b2, config.eps, threshold=config.radam_threshold),
      optax.add_decayed_weights(config.weight_decay, decay_mask),
      optax.scale_by_learning_rate(learning_rate))


def _sgd(config, learning_rate):
  # Without momentum, decoupled and coupled decay are the same update.
  return optax.chain(optax.add_decayed_weights(config.weight_decay, decay_mask),
                     optax.sgd(learning_rate))


OPTIMIZERS = {"adamax": _adamax, "adamw": _adamw, "adam": _adam, "radam": _radam, "sgd": _sgd}


def build_optimizer(config: ml_collections.ConfigDict,
                    total_steps: int) -> optax.GradientTransformation:
  """The whole update rule (see the module docstring); `total_steps` counts train steps.

  With accumulation (k > 1) every call returns zero updates except each k-th, which applies
  the mean of the k gradients; `optax.MultiSteps.has_updated(opt_state)` tells which.
  """
  schedule = learning_rate_schedule(config, total_steps)  # validates the config
  chain = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm > 0 else []
  chain.append(OPTIMIZERS[config.name](config, schedule))
  if config.layer_decay < 1.0:
    chain.append(scale_by_layer_decay(config.layer_decay))
  optimizer = optax.chain(*chain)
  if config.freeze_encoder:
    # The frozen encoder gets no optimizer state, no decay and no share of the clipping norm.
    optimizer = optax.multi_transform(
        {"trainable": optimizer, "frozen": optax.set_to_zero()},
        _freeze_encoder_labels)
  if config.grad_accumulation_steps > 1:
    optimizer = optax.MultiSteps(optimizer, config.grad_accumulation_steps).gradient_transformation()
  return optimizer


def update_ema(ema_params, params, decay: float):
  """One step of an exponential moving average of the weights: decay*ema + (1-decay)*params."""
  return jax.tree.map(
      lambda ema, new: (decay * ema.astype(jnp.float32)
                        + (1.0 - decay) * new.astype(jnp.float32)),
      ema_params, params)


# --------------------------------------------------------------------------- validation

def _unknown(kind: str, value, known, field: str) -> InputError:
  close = difflib.get_close_matches(str(value), known, n=1)
  hint = f"; did you mean {close[0]!r}?" if close else ""
  return InputError(None, f"unknown {kind} {value!r} (known: {', '.join(known)}){hint}",
                    field=field)


def check_optim_config(config: ml_collections.ConfigDict) -> None:
  """Refuses a bad `optim` section before any compute, naming the field."""
  if config.name not in OPTIMIZERS:
    raise _unknown("optimizer", config.name, list(OPTIMIZERS), "optim.name")
  if config.schedule not in SCHEDULES:
    raise _unknown("schedule", config.schedule, SCHEDULES, "optim.schedule")
  ranges = {
      # field: (holds, what it must be)
      "lr": (config.lr > 0, "> 0"),
      "b1": (0 <= config.b1 < 1, "in [0, 1)"),
      "b2": (0 <= config.b2 < 1, "in [0, 1)"),
      "eps": (config.eps >= 0, ">= 0"),
      "weight_decay": (config.weight_decay >= 0, ">= 0"),
      "clip_norm": (config.clip_norm >= 0, ">= 0 (0 disables clipping)"),
      "warmup": (0 <= config.warmup < 1, "a fraction of the updates in [0, 1)"),
      "layer_decay": (0 < config.layer_decay <= 1, "in (0, 1] (1 disables it)"),
      "grad_accumulation_steps": (
          int(config.grad_accumulation_steps) == config.grad_accumulation_steps
          and config.grad_accumulation_steps >= 1, "an integer >= 1"),
      "ema_decay": (0 <= config.ema_decay < 1, "in [0, 1) (0 disables the EMA)"),
  }
  for field, (holds, must_be) in ranges.items():
    if not holds:
      raise InputError(None, f"{config[field]!r} is not {must_be}", field=f"optim.{field}")
