"""Training-run reports: a JSON-lines metrics log, TensorBoard event files, and a PNG plot.

`<workdir>/metrics.jsonl` holds one object per line, e.g.
  {"kind": "train", "step": 100, "loss": 0.61, "lr": 4.8e-05, "seq_per_s": 212.0}
  {"kind": "eval", "step": 500, "epoch": 1, "task": "rte", "split": "dev", "ACC": 66.1}
It is appended to (a resumed run goes on in the same file) and flushed line by line, so a
crashed run keeps everything it logged. The same scalars go to `<workdir>/tensorboard/` under
the tag `<task>/<split>/<name>` for a row with a task (`rte/dev/ACC`) and `<kind>/<name>`
otherwise (`train/loss`). Non-finite values are written to the JSON log as null.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import atomic_file
from mtdnn_jax.tasks import METRICS, is_test_split

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_ROW_FIELDS = ("kind", "step", "epoch", "task", "split")  # what a row is, beside its scalars
_SMOOTHING_MIN_POINTS = 20  # fewer loss points are drawn as they are


class MetricsLog:
  """Appends metric rows to `<workdir>/metrics.jsonl` and TensorBoard.

  Only one process of a multi-host run writes: the others pass `enabled=False` and every call
  is then a no-op.
  """

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.enabled = enabled
    self._file = None
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter
      workdir = Path(workdir)
      workdir.mkdir(parents=True, exist_ok=True)
      self._file = open(workdir / METRICS_FILE, "a", encoding="utf-8")
      self._writer = SummaryWriter(logdir=str(workdir / TENSORBOARD_DIR))

  def log(self, step: int, kind: str, scalars: Mapping[str, Any], *, task: str | None = None,
          split: str | None = None, epoch: int | None = None) -> None:
    """Records `scalars` (name → number) at `step`.

    `epoch` (the number of epochs completed) goes to the JSON log only: TensorBoard and the plot
    index by step, and the plot adds an epoch axis from it.
    """
    if not self.enabled:
      return
    values = {name: float(value) for name, value in scalars.items()}  # jax / numpy scalars too
    clashing = sorted(set(values) & set(_ROW_FIELDS))
    if clashing:
      raise ValueError(f"scalar name(s) {clashing} are the row's own fields {_ROW_FIELDS}")
    row: dict[str, Any] = {"kind": kind, "step": int(step)}
    row.update((key, value) for key, value in (("epoch", epoch), ("task", task), ("split", split))
               if value is not None)
    row.update((name, value if math.isfinite(value) else None) for name, value in values.items())
    self._file.write(json.dumps(row, allow_nan=False) + "\n")
    self._file.flush()
    prefix = "/".join(part for part in (task, split) if part) if task else kind
    for name, value in values.items():
      self._writer.add_scalar(f"{prefix}/{name}", value, int(step))
    self._writer.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._writer.close()
      self._file = self._writer = None

  def __enter__(self) -> MetricsLog:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_metrics_log(path: str | os.PathLike) -> list[dict[str, Any]]:
  """The rows of a metrics.jsonl; a last line cut short (the run was killed mid-write) is
  skipped, any other unreadable line is an error."""
  lines = Path(path).read_text(encoding="utf-8").splitlines()
  rows = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines):
        break
      raise InputError(path, f"not a JSON object ({e.msg})", line=number) from None
    if not isinstance(row, dict) or "step" not in row or "kind" not in row:
      raise InputError(path, "a metrics row needs 'step' and 'kind'", line=number)
    rows.append(row)
  return rows


def plot_training(metrics_jsonl_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
  """Plots the training loss and each task's dev metrics over steps into a PNG.

  Top: the loss of the "train" rows without a task, raw (faint) and smoothed. Below, one panel
  per task: each evaluated non-test split's metrics (×100). A step logged twice (a resumed
  run re-logs the steps after its last checkpoint) keeps its last value.
  """
  # A bare Figure renders with Agg and touches no pyplot state: no window, no display needed,
  # and nothing changes for a caller that uses pyplot itself.
  from matplotlib.figure import Figure

  rows = read_metrics_log(metrics_jsonl_path)
  loss = _series(row for row in rows
                 if row["kind"] == "train" and "task" not in row and row.get("loss") is not None)
  loss = {step: row["loss"] for step, row in loss.items()}
  dev_rows = [row for row in rows if row["kind"] == "eval" and "task" in row
              and not is_test_split(row.get("split") or "")]
  tasks = list(dict.fromkeys(row["task"] for row in dev_rows))  # in order of first appearance

  n_cols = min(3, max(1, len(tasks)))
  n_task_rows = -(-len(tasks) // n_cols)
  has_loss_panel = bool(loss) or not tasks
  figure = Figure(figsize=(5.2 * n_cols if tasks else 8, 3.6 * (has_loss_panel + n_task_rows)),
                  layout="constrained")
  grid = figure.add_gridspec(has_loss_panel + n_task_rows, n_cols)
  figure.suptitle(f"Training run: {Path(metrics_jsonl_path).parent.name or '.'}",
                  fontweight="bold")
  steps_per_epoch = _steps_per_epoch(dev_rows)

  loss_axes = None
  if has_loss_panel:
    axes = loss_axes = figure.add_subplot(grid[0, :])
    if loss:
      steps, values = np.array(list(loss)), np.array(list(loss.values()))
      if len(values) > _SMOOTHING_MIN_POINTS:
        axes.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=1, label="loss (raw)")
        axes.plot(steps, _smooth(values), color="tab:blue", linewidth=2, label="loss (smoothed)")
      else:  # too few points to smooth: each one matters
        axes.plot(steps, values, color="tab:blue", linewidth=2, marker="o", label="loss")
      axes.legend(loc="upper right")
    else:
      axes.text(0.5, 0.5, "nothing logged yet", ha="center", va="center",
                transform=axes.transAxes, color="gray")
      axes.set_yticks([])
    axes.set(title="Training loss", xlabel="step", ylabel="loss")
    axes.grid(alpha=0.3)

  for i, task in enumerate(tasks):
    # Sharing the loss panel's step axis lines evaluations up with the loss curve above.
    axes = figure.add_subplot(grid[has_loss_panel + i // n_cols, i % n_cols], sharex=loss_axes)
    task_rows = [row for row in dev_rows if row["task"] == task]
    splits = list(dict.fromkeys(row.get("split") for row in task_rows))
    for split in splits:
      points = _series(row for row in task_rows if row.get("split") == split)
      for metric in METRICS:
        curve = [(step, row[metric]) for step, row in points.items()
                 if row.get(metric) is not None]
        if curve:
          steps, values = zip(*curve)
          label = metric if len(splits) == 1 else f"{split} {metric}"
          line, = axes.plot(steps, values, marker="o", linewidth=1.8, label=label)
          axes.annotate(f"{values[-1]:.1f}", (steps[-1], values[-1]), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=8, color=line.get_color())
    split_names = ", ".join(str(s) for s in splits)
    axes.set(title=f"{task} ({split_names})", xlabel="step", ylabel="metric (×100)")
    axes.margins(y=0.15)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)

  # After all panels are drawn: their shared step range then covers every panel's points.
  for axes in figure.axes:
    _format_step_axis(axes, steps_per_epoch)
  with atomic_file(png_path, "wb") as f:
    figure.savefig(f, format="png", dpi=110)


def _series(rows) -> dict[int, dict[str, Any]]:
  """Rows by step, increasing; a repeated step keeps its last row."""
  by_step = {int(row["step"]): row for row in rows}
  return dict(sorted(by_step.items()))


def _smooth(values: np.ndarray) -> np.ndarray:
  """Bias-corrected exponential moving average (TensorBoard's smoothing), spanning about 5% of
  the points, so its look does not depend on how often the loss was logged."""
  decay = 1 - 1 / (len(values) / _SMOOTHING_MIN_POINTS)
  smoothed = np.empty(len(values))
  average = 0.0
  for i, value in enumerate(values):
    average = decay * average + (1 - decay) * value
    smoothed[i] = average / (1 - decay ** (i + 1))
  return smoothed


def _steps_per_epoch(eval_rows: list[dict[str, Any]]) -> float | None:
  """Steps per epoch, when evaluations record the epoch they ended (evaluated at epoch ends)."""
  ratios = [row["step"] / row["epoch"] for row in eval_rows if row.get("epoch")]
  return float(np.median(ratios)) if ratios else None


def _format_step_axis(axes, steps_per_epoch: float | None) -> None:
  """Whole steps from 0, and whole epochs along the top when they are known."""
  from matplotlib.ticker import FuncFormatter, MaxNLocator
  axes.set_xlim(left=min(0, axes.get_xlim()[0]))  # keeps the margin of a point at step 0
  axes.xaxis.set_major_locator(MaxNLocator(integer=True))
  if steps_per_epoch:
    top = axes.secondary_xaxis("top", functions=(lambda step: step / steps_per_epoch,
                                                 lambda epoch: epoch * steps_per_epoch))
    top.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    top.xaxis.set_major_formatter(FuncFormatter(lambda epoch, _: f"epoch {epoch:g}"))
    top.tick_params(labelsize=7, colors="dimgray")
