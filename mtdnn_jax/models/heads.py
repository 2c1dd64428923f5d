"""Task-specific layers (SPEC.md §1): one head per task, stacked by kind on a `tasks` axis.

Heads of one kind share a shape, so their parameters are stacked on a leading `tasks` axis and
applied with `nn.vmap`; every example then picks its own task's row by `task_id`. One compiled
step serves every task, and a batch may mix tasks. Heads are tiny next to the encoder, so
computing all heads of a kind for every example costs little and keeps shapes static.

Kinds:
  classifier  dropout → Linear(H, C) on the pooled [CLS]       (classification, linear)
  san         the stochastic answer network on the token states (pair classification, SAN)
  scorer      dropout → Linear(H, 1) on the pooled [CLS]       (regression; ranking per candidate)
  tagger      dropout → Linear(H, C) on every token state       (sequence labelling)
  span        Linear(H, 2) on every token state: start and end  (SQuAD; v2: [CLS] = no answer)
Classification and tagging heads are padded to their kind's largest class count; a task's
unused classes are masked.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mtdnn_jax.errors import InputError
from mtdnn_jax.losses import MASKED, masked_logits
from mtdnn_jax.models.dropout import bernoulli
from mtdnn_jax.tasks import TaskDef, TaskType

KINDS = ("classifier", "san", "scorer", "tagger", "span")
_CLASS_KINDS = ("classifier", "san")  # kinds whose output is one distribution per example
_TOKEN_KINDS = ("san", "tagger", "span")  # kinds that read every token state, not only [CLS]


@dataclasses.dataclass(frozen=True)
class TaskHead:
  """What the model needs to know of a task (static, hashable)."""
  name: str
  kind: str  # one of KINDS
  n_class: int  # 1 for scorer heads
  dropout: float
  ranking: bool = False

  @classmethod
  def from_task_def(cls, task: TaskDef) -> TaskHead:
    t = task.task_type
    if t is TaskType.CLASSIFICATION:
      kind = "san" if task.enable_san else "classifier"
    elif t is TaskType.SEQUENCE_LABELING:
      kind = "tagger"
    elif t in (TaskType.SPAN, TaskType.SPAN_YN):
      kind = "span"
    elif t in (TaskType.REGRESSION, TaskType.RANKING):
      if task.enable_san:  # tasks.py refuses this already; the model must not rely on it
        raise InputError(None, f"task {task.name!r}: SAN needs several classes, a "
                         f"{t.value} task has one output")
      kind = "scorer"
    else:
      raise InputError(None, f"task {task.name!r}: {t.value} heads are not available in this "
                       "model yet")
    return cls(task.name, kind, {"scorer": 1, "span": 2}.get(kind, task.n_class), task.dropout_p,
               ranking=t is TaskType.RANKING)


@dataclasses.dataclass(frozen=True)
class HeadLayout:
  """Where each task's head lives: its kind and its row in that kind's stack."""
  heads: tuple[TaskHead, ...]

  def tasks_of(self, kind: str) -> list[int]:
    return [i for i, h in enumerate(self.heads) if h.kind == kind]

  def kind_code(self) -> np.ndarray:
    return np.array([KINDS.index(h.kind) for h in self.heads], np.int32)

  def row_in_kind(self) -> np.ndarray:
    rows = np.zeros(len(self.heads), np.int32)
    for kind in KINDS:
      for row, task in enumerate(self.tasks_of(kind)):
        rows[task] = row
    return rows

  @property
  def reads_every_token(self) -> bool:
    """Whether some head reads token states beyond the pooled [CLS]; when none does, the
    encoder computes its last layer at [CLS] alone (BertEncoder's `cls_only`)."""
    return any(h.kind in _TOKEN_KINDS for h in self.heads)

  @property
  def max_classes(self) -> int:
    return max([h.n_class for h in self.heads if h.kind in _CLASS_KINDS], default=1)

  @property
  def max_tags(self) -> int:
    return max([h.n_class for h in self.heads if h.kind == "tagger"], default=1)

  def class_mask(self, width: int | None = None) -> np.ndarray:
    """[tasks, width]: which of `width` (default max_classes) logits each task uses."""
    width = self.max_classes if width is None else width
    return np.arange(width)[None, :] < np.array([h.n_class for h in self.heads])[:, None]


class HeadOutputs(flax.struct.PyTreeNode):
  # [B, C] float32 log-probabilities-or-logits of the example's classification head, its unused
  # classes at MASKED; None for ranking batches.
  logits: jax.Array | None
  # [B] regression score, or [B, K] per-candidate ranking scores; float32.
  scores: jax.Array | None
  # [B, L, T] float32 per-token logits of the example's tagging head (unused tags at MASKED).
  token_logits: jax.Array | None = None
  # [B, L, 2] float32 start and end logits of the example's span head (padding at MASKED).
  span_logits: jax.Array | None = None


def per_example_dropout(x, rates, rng, deterministic: bool):
  """Dropout whose rate is each example's task's `dropout_p` (rows of `x` are examples)."""
  if deterministic:
    return x
  rates = rates.reshape((-1,) + (1,) * (x.ndim - 1))
  keep = bernoulli(rng, 1.0 - rates, x.shape)
  return jnp.where(keep, x / (1.0 - rates), 0).astype(x.dtype)


def _masked_softmax(logits, mask):
  return jax.nn.softmax(jnp.where(mask, logits.astype(jnp.float32), MASKED), axis=-1)


class StochasticAnswerNetwork(nn.Module):
  """SAN (SPEC.md §1.1) for one task; `nn.vmap` stacks one per SAN task.

  K turns of: attend over the premise with the state, update the state with a GRU, score with
  the *updated* state (the paper's order; the reference scores before the update). Dropout on
  the token states is variational: one mask per (example, hidden unit), shared over time.
  At training each turn's prediction is dropped with probability `prediction_dropout` (at
  least one kept) and the kept turns' probabilities averaged; at evaluation all are averaged.
  Returns log(mean probability).
  """
  hidden_size: int
  num_classes: int
  num_turns: int = 5
  prediction_dropout: float = 0.1
  initializer_range: float = 0.02
  deterministic: bool = True

  @nn.compact
  def __call__(self, states, premise_mask, hypothesis_mask, class_mask, dropout_rates):
    init = nn.initializers.normal(self.initializer_range)
    states = states.astype(jnp.float32)
    if not self.deterministic:
      rates = dropout_rates[:, None, None]
      keep = bernoulli(self.make_rng("dropout"), 1.0 - rates, (states.shape[0], 1, states.shape[2]))
      states = jnp.where(keep, states / (1.0 - rates), 0.0)

    # Initial state: self-attentive summary of the hypothesis.
    alpha = _masked_softmax(nn.Dense(1, kernel_init=init, name="hypothesis_attention")(states)[..., 0],
                            hypothesis_mask)
    state = jnp.einsum("bt,bth->bh", alpha, states)
    bilinear = nn.Dense(self.hidden_size, kernel_init=init, name="premise_attention")
    gru = nn.GRUCell(self.hidden_size, name="gru")
    classifier = nn.Dense(self.num_classes, kernel_init=init, name="classifier")
    turn_probs = []
    for _ in range(self.num_turns):
      beta = _masked_softmax(jnp.einsum("bth,bh->bt", states, bilinear(state)), premise_mask)
      attended = jnp.einsum("bt,bth->bh", beta, states)
      state, _ = gru(state, attended)
      features = jnp.concatenate(
          [attended, state, jnp.abs(attended - state), attended * state], axis=-1)
      turn_probs.append(_masked_softmax(classifier(features), class_mask))
    probs = jnp.stack(turn_probs, axis=1)  # [B, K, C]

    batch = probs.shape[0]
    if self.deterministic:
      kept = jnp.ones((batch, self.num_turns), jnp.float32)
    else:
      drop_rng, fallback_rng = jax.random.split(self.make_rng("dropout"))
      kept = bernoulli(drop_rng, 1.0 - self.prediction_dropout, (batch, self.num_turns))
      fallback = jax.nn.one_hot(jax.random.randint(fallback_rng, (batch,), 0, self.num_turns),
                                self.num_turns, dtype=bool)
      kept = jnp.where(kept.any(axis=1, keepdims=True), kept, fallback).astype(jnp.float32)
    mean_probs = jnp.einsum("bkc,bk->bc", probs, kept) / kept.sum(axis=1, keepdims=True)
    return jnp.where(class_mask, jnp.log(jnp.maximum(mean_probs, 1e-30)), MASKED)


def _stacked(module_cls, num_tasks: int, **kwargs):
  """`num_tasks` copies of a head module, parameters stacked on a leading `tasks` axis, each
  applied to the same (broadcast) inputs; outputs gain a leading tasks axis."""
  return nn.vmap(module_cls, variable_axes={"params": 0}, split_rngs={"params": True,
                                                                         "dropout": True},
                 in_axes=None, out_axes=0, axis_size=num_tasks,
                 metadata_params={nn.PARTITION_NAME: "tasks"})(**kwargs)


class TaskHeads(nn.Module):
  layout: HeadLayout
  hidden_size: int
  initializer_range: float = 0.02
  deterministic: bool = True

  @nn.compact
  def __call__(self, sequence_output, pooled, attention_mask, segment_ids, task_id,
               candidates: int | None = None) -> HeadOutputs:
    """`pooled` is [B·K, H] for ranking batches (K = `candidates`), [B, H] otherwise."""
    layout = self.layout
    rows = jnp.asarray(layout.row_in_kind())[task_id]  # [B]
    rates = jnp.asarray([h.dropout for h in layout.heads], jnp.float32)[task_id]
    class_mask = jnp.asarray(layout.class_mask())[task_id]  # [B, C]
    batch = task_id.shape[0]
    pick = lambda stacked: stacked[rows, jnp.arange(batch)]  # [n, B, ...] → [B, ...]
    dense = lambda features: dict(
        features=features, kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(self.initializer_range), ("embed", None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (None,)))

    scores = None
    if layout.tasks_of("scorer"):
      if candidates:
        dropped = per_example_dropout(pooled, jnp.repeat(rates, candidates), self._rng(),
                                      self.deterministic)
        per_task = _stacked(nn.Dense, len(layout.tasks_of("scorer")), **dense(1),
                            name="scorer")(dropped)[..., 0]  # [n, B·K]
        scores = pick(per_task.reshape(-1, batch, candidates))
      else:
        dropped = per_example_dropout(pooled, rates, self._rng(), self.deterministic)
        scores = pick(_stacked(nn.Dense, len(layout.tasks_of("scorer")), **dense(1),
                               name="scorer")(dropped)[..., 0])
    if candidates:
      return HeadOutputs(None, scores.astype(jnp.float32))

    token_logits = None
    if layout.tasks_of("tagger"):
      dropped = per_example_dropout(sequence_output, rates, self._rng(), self.deterministic)
      per_token = pick(_stacked(nn.Dense, len(layout.tasks_of("tagger")),
                                **dense(layout.max_tags), name="tagger")(dropped))  # [B, L, T]
      tag_mask = jnp.asarray(layout.class_mask(layout.max_tags))[task_id][:, None, :]
      token_logits = masked_logits(per_token, tag_mask)

    span_logits = None
    if layout.tasks_of("span"):
      per_token = pick(_stacked(nn.Dense, len(layout.tasks_of("span")), **dense(2),
                                name="span")(sequence_output))  # [B, L, 2]
      span_logits = masked_logits(per_token, attention_mask.astype(bool)[..., None])

    logits = jnp.full((batch, layout.max_classes), MASKED, jnp.float32)
    kind = jnp.asarray(layout.kind_code())[task_id]
    if layout.tasks_of("classifier"):
      dropped = per_example_dropout(pooled, rates, self._rng(), self.deterministic)
      linear = pick(_stacked(nn.Dense, len(layout.tasks_of("classifier")),
                             **dense(layout.max_classes), name="classifier")(dropped))
      logits = jnp.where((kind == KINDS.index("classifier"))[:, None],
                         masked_logits(linear, class_mask), logits)
    if layout.tasks_of("san"):
      mask = attention_mask.astype(bool)
      san = pick(_stacked(StochasticAnswerNetwork, len(layout.tasks_of("san")),
                          hidden_size=self.hidden_size, num_classes=layout.max_classes,
                          initializer_range=self.initializer_range,
                          deterministic=self.deterministic, name="san")(
          sequence_output, mask & (segment_ids == 0), mask & (segment_ids == 1), class_mask,
          rates))
      logits = jnp.where((kind == KINDS.index("san"))[:, None], san, logits)
    return HeadOutputs(logits, None if scores is None else scores.astype(jnp.float32),
                       token_logits, span_logits)

  def _rng(self):
    return None if self.deterministic else self.make_rng("dropout")


def head_layout(tasks: Sequence[TaskDef]) -> HeadLayout:
  return HeadLayout(tuple(TaskHead.from_task_def(t) for t in tasks))
