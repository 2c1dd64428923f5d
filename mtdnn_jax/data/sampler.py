"""The multi-task training schedule (SPEC.md §2, Algorithm 1 of the paper), per host.

Every epoch each task's training examples are shuffled and cut into bucketed batches
(`batching.py`), and the batches of all tasks are put in one order:
  mix_opt 0   all batches shuffled together, so a task is visited in proportion to its data;
  mix_opt 1   the auxiliary tasks' batches (shuffled) first, the main task's (task 0) last;
  ratio > 0   all of the main task's batches, and at most ratio × that many auxiliary batches
              drawn at random from all auxiliary batches;
  mixed       examples of all tasks pooled per bucket, so one batch holds several tasks (each
              row carries its task_id); needs tasks whose batches have one layout.
The order is drawn from (seed, epoch) alone: the reference reshuffles once at load time, we
reshuffle every epoch, and any host, or a restarted run, recomputes the same order. The
position is the small dict `{"epoch": e, "step": s}` (s batches of epoch e already given out).
Host i of n materialises rows [i·B/n, (i+1)·B/n) of every global batch of size B.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from mtdnn_jax.data.batching import (BatchPlan, Buckets, host_rows, make_batch,
                                     plan_pooled_batches, plan_task_batches)
from mtdnn_jax.data.features import Features


class MultiTaskSampler:
  """An endless iterator of training batches (dicts of numpy arrays, see `batching.py`)."""

  def __init__(self, features: Sequence[Features], buckets: Buckets, *, seed: int, pad_id: int,
               cls_id: int, sep_id: int, mix_opt: int = 0, ratio: float = 0.0,
               mixed: bool = False, host_index: int = 0, host_count: int = 1):
    """`features[t]` is task t's training split; task 0 is the main task."""
    if not features or not any(len(f) for f in features):
      raise ValueError("no training examples")
    if mix_opt not in (0, 1):
      raise ValueError(f"mix_opt is 0 (all tasks shuffled together) or 1 (main task last), "
                       f"got {mix_opt}")
    if ratio < 0:
      raise ValueError(f"ratio must be >= 0, got {ratio}")
    if mixed and (mix_opt or ratio):
      raise ValueError("mixed batches pool all tasks' examples; mix_opt and ratio order whole "
                       "single-task batches and do not apply")
    layouts = {(f.max_candidates is not None, f.labels_per_token) for f in features if len(f)}
    if mixed and len(layouts) > 1:
      raise ValueError("mixed batches need tasks with one batch layout: ranking and sequence-"
                       "labelling tasks cannot share a batch with others")
    for size in buckets.batch_sizes:
      host_rows(size, host_index, host_count)  # fail at construction, not at some later step
    self.features = list(features)
    self.buckets = buckets
    self.seed = seed
    self.mix_opt, self.ratio, self.mixed = mix_opt, ratio, mixed
    self.host_index, self.host_count = host_index, host_count
    self.special_ids = (pad_id, cls_id, sep_id)
    # A ranking task's K is fixed by its training data, so its batches keep one shape.
    self.num_candidates = {t: f.max_candidates for t, f in enumerate(features)
                           if f.max_candidates is not None}
    self.epoch, self.step = 0, 0
    self._plan_epoch, self._plan = None, []

  def state_dict(self) -> dict:
    return {"epoch": self.epoch, "step": self.step}

  def load_state_dict(self, state: dict) -> None:
    epoch, step = int(state["epoch"]), int(state["step"])
    if epoch < 0 or not 0 <= step <= len(self.epoch_plan(epoch)):
      raise ValueError(f"sampler position {state} is outside the schedule")
    self.epoch, self.step = epoch, step

  def epoch_plan(self, epoch: int) -> list[BatchPlan]:
    """The global batches of `epoch`, in order (the same on every host and every run)."""
    if self._plan_epoch != epoch:
      self._plan = self._draw_plan(epoch)
      self._plan_epoch = epoch
    return self._plan

  def steps_per_epoch(self) -> int:
    return len(self.epoch_plan(self.epoch))

  def _draw_plan(self, epoch: int) -> list[BatchPlan]:
    rng = np.random.default_rng([self.seed, epoch])
    task_ids = range(len(self.features))
    if self.mixed:
      return _shuffled(plan_pooled_batches(task_ids, self.features, self.buckets, rng), rng)
    per_task = [plan_task_batches(t, f, self.buckets, rng) for t, f in zip(task_ids, self.features)]
    main, auxiliary = per_task[0], [plan for plans in per_task[1:] for plan in plans]
    if self.ratio > 0:
      keep = min(len(auxiliary), int(self.ratio * len(main)))
      auxiliary = [auxiliary[i] for i in np.sort(rng.choice(len(auxiliary), keep, replace=False))]
    if self.mix_opt == 1:
      return _shuffled(auxiliary, rng) + _shuffled(main, rng)
    return _shuffled(main + auxiliary, rng)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    while True:
      plan = self.epoch_plan(self.epoch)
      while self.step < len(plan):
        batch_plan = plan[self.step]
        self.step += 1  # the position counts batches handed out, so a checkpoint taken after
        yield self._materialise(batch_plan)  # consuming this batch resumes after it
      self.epoch, self.step = self.epoch + 1, 0

  def _materialise(self, plan: BatchPlan) -> dict[str, np.ndarray]:
    rows = host_rows(self.buckets.batch_sizes[plan.bucket], self.host_index, self.host_count)
    return make_batch(plan, dict(enumerate(self.features)), self.buckets, *self.special_ids,
                      rows=rows, num_candidates=self.num_candidates)


def _shuffled(plans: list[BatchPlan], rng: np.random.Generator) -> list[BatchPlan]:
  return [plans[i] for i in rng.permutation(len(plans))]
