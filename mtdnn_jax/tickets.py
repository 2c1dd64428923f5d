"""Super tickets (Liang et al., ACL 2021; SPEC.md §5): structured pruning of attention heads and
feed-forward neurons by importance, rewinding to the pre-trained weights, and re-training.

A head's or a neuron's output reaches the rest of the encoder only through its rows of an output
projection: head h through `attention/out/kernel[layer, h]` ([head_dim, hidden]), neuron j
through `output/kernel[layer, j]` ([hidden]). Multiplying those rows by ξ is exactly multiplying
the head's context or the neuron's activation by ξ, which gives both halves of the method
without a mask inside the encoder:

- importance (Michel et al., 2019): ∂L/∂ξ at ξ = 1 is <∇_W L, W> summed over the unit's rows (a
  directional derivative), so one ordinary gradient per batch scores every head and neuron; a
  unit's importance is the sum over batches of |∂L/∂ξ|, normalised per layer (L2);
- a ticket is a 0/1 mask per task on those rows, applied to the parameters in the forward pass:
  a pruned unit contributes nothing and gets no gradient from its task's batches. In a
  multi-task model each batch uses its task's ticket (SPEC.md §5's ticket sharing), so the
  shared encoder is trained under the union of the tickets.

Rewinding is a fresh fine-tuning run from the pre-trained encoder with `config.tickets.file`
set; the run copies the ticket into its workdir, so that evaluation and scripts/predict.py
apply the same masks.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import read_json, write_json

FORMAT = "mtdnn-jax super ticket"
WORKDIR_TICKET = "ticket.json"  # the copy a training run keeps of its ticket


def default_tickets_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      file="",  # a ticket from scripts/super_tickets.py: train under its masks ("" = off)
  ))


def output_rows(encoder_params) -> tuple[Any, Any]:
  """(attention output kernel [layers, heads, head_dim, hidden], feed-forward output kernel
  [layers, intermediate, hidden]): the rows through which each head and neuron is heard."""
  layers = encoder_params["layers"]
  return layers["attention"]["out"]["kernel"], layers["output"]["kernel"]


def unit_sensitivity(encoder_grads, encoder_params) -> tuple[jax.Array, jax.Array]:
  """∂L/∂ξ per head [layers, heads] and per feed-forward neuron [layers, intermediate]."""
  head_grad, ffn_grad = output_rows(encoder_grads)
  head_kernel, ffn_kernel = output_rows(encoder_params)
  return (jnp.sum(head_grad * head_kernel, axis=(-2, -1)),
          jnp.sum(ffn_grad * ffn_kernel, axis=-1))


def mask_encoder(encoder_params, head_mask: jax.Array, ffn_mask: jax.Array):
  """The encoder's parameters with each head's and neuron's output rows multiplied by its mask
  ([layers, heads], [layers, intermediate])."""
  head_kernel, ffn_kernel = output_rows(encoder_params)
  layers = dict(encoder_params["layers"])  # new dicts on the way down: the input is not changed
  attention = dict(layers["attention"])
  attention["out"] = dict(attention["out"],
                          kernel=head_kernel * head_mask[..., None, None].astype(head_kernel.dtype))
  layers["attention"] = attention
  layers["output"] = dict(layers["output"],
                          kernel=ffn_kernel * ffn_mask[..., None].astype(ffn_kernel.dtype))
  return dict(encoder_params, layers=layers)


def normalise_per_layer(importance: np.ndarray) -> np.ndarray:
  """Each layer's scores divided by their L2 norm (Michel et al.), so layers compare."""
  norm = np.linalg.norm(importance, axis=-1, keepdims=True)
  return importance / np.where(norm > 0, norm, 1.0)


def prune_mask(importance: np.ndarray, sparsity: float) -> np.ndarray:
  """0/1 mask that removes the round(sparsity · count) least important units over all layers
  (after per-layer normalisation); ties go to the earlier unit in row-major order."""
  if not 0 <= sparsity < 1:
    raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
  scores = normalise_per_layer(np.asarray(importance, np.float64)).ravel()
  pruned = int(round(sparsity * scores.size))
  mask = np.ones(scores.size, np.float32)
  mask[np.argsort(scores, kind="stable")[:pruned]] = 0.0
  return mask.reshape(np.shape(importance))


# ------------------------------------------------------------------------------ ticket files

def write_ticket(path: str | os.PathLike, masks: dict[str, tuple[np.ndarray, np.ndarray]],
                 sparsity: dict[str, float], source: str) -> None:
  """masks: {task: (head mask [layers, heads], ffn mask [layers, intermediate])}."""
  write_json(path, {
      "format": FORMAT, "source": source, "sparsity": sparsity,
      "tasks": {task: {"heads": np.asarray(h, int).tolist(), "ffn": np.asarray(f, int).tolist()}
                for task, (h, f) in masks.items()}})


def read_ticket(path: str | os.PathLike, task_names: Sequence[str], layers: int, heads: int,
                intermediate: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The masks of `task_names` (a task the ticket does not name keeps every unit), checked
  against the encoder's shape; errors name the file and the field."""
  data = read_json(path, "ticket file")
  if not isinstance(data, dict) or data.get("format") != FORMAT:
    raise InputError(path, f"not a super ticket (expected \"format\": \"{FORMAT}\", as "
                     "scripts/super_tickets.py writes)", field="format")
  tasks = data.get("tasks")
  if not isinstance(tasks, dict):
    raise InputError(path, "missing or not an object", field="tasks")
  unknown = sorted(set(tasks) - set(task_names))
  if unknown:
    raise InputError(path, f"tasks {', '.join(unknown)} are not tasks of this run "
                     f"({', '.join(task_names)})", field="tasks")
  masks = {}
  for name in task_names:
    entry = tasks.get(name, {})
    found = []
    for key, shape in (("heads", (layers, heads)), ("ffn", (layers, intermediate))):
      field = f"tasks.{name}.{key}"
      if name not in tasks:
        found.append(np.ones(shape, np.float32))
        continue
      try:
        mask = np.asarray(entry[key], np.float32)
      except (KeyError, TypeError, ValueError):
        raise InputError(path, f"missing, or not a {shape[0]}×{shape[1]} array of 0/1",
                         field=field) from None
      if mask.shape != shape:
        raise InputError(path, f"shape {mask.shape}, but the encoder has {shape} "
                         f"({'layers × heads' if key == 'heads' else 'layers × intermediate'})",
                         field=field)
      if not np.isin(mask, (0.0, 1.0)).all():
        raise InputError(path, "values must be 0 (pruned) or 1 (kept)", field=field)
      found.append(mask)
    masks[name] = tuple(found)
  return masks


class Tickets:
  """A run's ticket: per-task masks stacked on a task axis, applied to the parameters."""

  def __init__(self, masks: dict[str, tuple[np.ndarray, np.ndarray]], task_names: Sequence[str],
               path: str | os.PathLike | None = None):
    self.path = path  # the file it was read from
    self.task_names = list(task_names)
    self.head_masks = np.stack([masks[n][0] for n in self.task_names])  # [tasks, layers, heads]
    self.ffn_masks = np.stack([masks[n][1] for n in self.task_names])  # [tasks, layers, mlp]

  @classmethod
  def load(cls, path, task_names: Sequence[str], encoder_config) -> "Tickets":
    return cls(read_ticket(path, task_names, encoder_config.num_hidden_layers,
                           encoder_config.num_attention_heads, encoder_config.intermediate_size),
               task_names, path)

  def write(self, path: str | os.PathLike) -> None:
    """A copy of the file this ticket was read from (atomically, so also onto itself)."""
    write_json(path, read_json(self.path, "ticket file"))

  def apply(self, params, task_id):
    """`params` (the whole model's) with the encoder under task `task_id`'s masks; traceable."""
    encoder = mask_encoder(params["encoder"], jnp.asarray(self.head_masks)[task_id],
                           jnp.asarray(self.ffn_masks)[task_id])
    return dict(params, encoder=encoder)

  def summary(self) -> str:
    return "; ".join(
        f"{name}: {int(h.sum())}/{h.size} heads, {int(f.sum())}/{f.size} feed-forward neurons"
        for name, h, f in zip(self.task_names, self.head_masks, self.ffn_masks))


def under(ticket: Tickets | None, params, task_id):
  """The model's parameters as task `task_id` uses them: under its ticket's masks, if any."""
  return params if ticket is None else ticket.apply(params, task_id)


def load_for_run(config: ml_collections.ConfigDict, task_names: Sequence[str], encoder_config,
                 workdir: Path | None = None) -> Tickets | None:
  """The ticket a run trains under: its own copy in `workdir` when there is one (a resumed or
  finished run), else config.tickets.file; None when the run has none."""
  own = workdir / WORKDIR_TICKET if workdir is not None else None
  if own is not None and own.is_file():
    return Tickets.load(own, task_names, encoder_config)
  file = config.get("tickets", {}).get("file", "")
  if not file:
    return None
  if not Path(file).is_file():
    raise InputError(file, "no such ticket file", field="config.tickets.file")
  return Tickets.load(file, task_names, encoder_config)


# ------------------------------------------------------------------------------ importance

def unit_importance(run, task_name: str, features, max_batches: int = 0,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Σ over batches of |∂L/∂ξ| for every head [layers, heads] and feed-forward neuron
  [layers, intermediate] of a trained run (an evaluate.TrainedRun) on one task's labelled
  examples: the task's training loss, no dropout, in the run's own batch size and buckets.
  A run that already trains under a ticket is scored under it (its pruned units score 0)."""
  from tqdm import tqdm

  from mtdnn_jax.data.batching import Buckets, eval_batches
  from mtdnn_jax.losses import weighted_mean
  from mtdnn_jax.train import per_example_loss

  task_id = run.task_id(task_name)
  params = run.params if run.ticket is None else run.ticket.apply(run.params, task_id)

  @jax.jit
  def batch_sensitivity(params, batch):
    def loss(p):
      outputs = run.model.apply({"params": p}, batch["input_ids"], batch["segment_ids"],
                                batch["attention_mask"], batch["task_id"], deterministic=True)
      return weighted_mean(per_example_loss(outputs, batch, run.layout), batch["weights"])
    grads = jax.grad(loss)(params)
    heads, ffn = unit_sensitivity(grads["encoder"], params["encoder"])
    return jnp.abs(heads), jnp.abs(ffn)

  tok = run.tokenizer
  buckets = Buckets.make(run.config.buckets, run.config.batch_size)
  batches = eval_batches(task_id, features, buckets, tok.pad_id, tok.cls_id, tok.sep_id,
                         num_candidates=features.max_candidates)
  total = None
  for n, batch in enumerate(tqdm(batches, desc=f"importance of {task_name}", unit="batch",
                                 disable=not progress)):
    if max_batches and n >= max_batches:
      break
    scores = batch_sensitivity(params, {k: jnp.asarray(v) for k, v in batch.items()})
    total = scores if total is None else jax.tree.map(jnp.add, total, scores)
  if total is None:
    raise InputError(None, f"no labelled example of {task_name} to score", field="--split")
  return tuple(np.asarray(x, np.float64) for x in total)
