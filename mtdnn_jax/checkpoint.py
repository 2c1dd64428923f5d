"""Training checkpoints with orbax: train state, sampler position and config, atomically.

Two managers: `checkpoints/` keeps the latest N for resuming (orbax writes each step into a
temporary directory and renames it when complete, so an interrupted save is never mistaken for
a checkpoint), and `best/` keeps the single best by the configured dev metric. Saves are
asynchronous: the train loop continues while the previous save is written.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from mtdnn_jax.errors import InputError


class Checkpoints:
  def __init__(self, workdir: str | os.PathLike, *, keep: int = 2, asynchronous: bool = True):
    workdir = Path(workdir).absolute()
    self._latest = ocp.CheckpointManager(
        workdir / "checkpoints", item_names=("state", "sampler", "config"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                             enable_async_checkpointing=asynchronous))
    self._best = ocp.CheckpointManager(
        workdir / "best", item_names=("params", "config"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda metrics: metrics["score"], best_mode="max",
            keep_checkpoints_without_metrics=False, enable_async_checkpointing=asynchronous))

  def save(self, step: int, state: Any, sampler_state: dict, config: dict) -> None:
    if step in self._latest.all_steps():  # e.g. a finished run opened again
      return
    self._latest.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), sampler=ocp.args.JsonSave(sampler_state),
        config=ocp.args.JsonSave(config)))

  def save_if_best(self, step: int, params: Any, score: float, config: dict) -> None:
    if step in self._best.all_steps():
      return
    self._best.save(step, metrics={"score": float(score)}, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), config=ocp.args.JsonSave(config)))

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def best_step(self) -> int | None:
    return self._best.best_step()

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """(step, state, sampler position) of the latest checkpoint, laid out as `abstract_state`
    (a tree of jax.ShapeDtypeStruct with shardings), or None when there is none."""
    step = self._latest.latest_step()
    if step is None:
      return None
    restored = self._latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), sampler=ocp.args.JsonRestore()))
    return step, restored["state"], restored["sampler"]

  def restore_params(self, which: str = "best") -> tuple[int, Any]:
    """(step, parameters) of the best or the latest checkpoint, as host arrays."""
    if which == "best":
      step = self._best.best_step()
      if step is None:
        raise InputError(self._best.directory, "no best checkpoint (no epoch was evaluated)")
      return step, self._best.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore()))["params"]
    step = self._latest.latest_step()
    if step is None:
      raise InputError(self._latest.directory, "no checkpoint")
    return step, self.restore_state(step)["params"]

  def restore_state(self, step: int) -> Any:
    """The whole train state saved at `step`, as host arrays (for inspection and tools)."""
    return self._latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"]

  def wait(self) -> None:
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    self._latest.close()
    self._best.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `tree`, for restoring onto the same layout."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)
