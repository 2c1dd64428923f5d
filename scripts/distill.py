#!/usr/bin/env python
"""Soft labels for knowledge distillation: an ensemble of trained MT-DNNs scores the training data.

  python scripts/distill.py --teachers runs/t1 runs/t2 runs/t3 --output_dir soft/
  python scripts/train.py --config configs/distill.py:rte,mrpc --workdir runs/student \
      --config.distill.soft_labels_dir=soft/

For every task the teachers share (or --tasks), each teacher scores the split with its own
tokenizer and best checkpoint; the class probabilities (regression: scores) are averaged into
<output_dir>/<task>_<split>_soft.json, with the ensemble's own metrics when the split is labelled
(`--split dev` scores the teachers as one model).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtdnn_jax import cli  # noqa: E402


def formatted(metrics: dict[str, float]) -> str:
  return " ".join(f"{k}={v:.2f}" for k, v in metrics.items())


def main():
  p = cli.parser(__doc__)
  p.add_argument("--teachers", nargs="+", required=True, help="scripts/train.py workdirs")
  p.add_argument("--output_dir", required=True, help="where the soft-label files go")
  p.add_argument("--tasks", help="comma-separated (default: the tasks all teachers have)")
  p.add_argument("--split", default="train")
  p.add_argument("--data_dir", help="canonical files (default: the first teacher's data_dir)")
  p.add_argument("--which", choices=("best", "latest"), default="best")
  args = p.parse_args()

  from mtdnn_jax.data.canonical import canonical_path, read_canonical
  from mtdnn_jax.data.features import tokenize_rows
  from mtdnn_jax.distill import soft_label_path, write_ensemble_soft_labels
  from mtdnn_jax.errors import InputError
  from mtdnn_jax.evaluate import TrainedRun

  teachers = [TrainedRun(w, args.which) for w in args.teachers]
  shared = [t.name for t in teachers[0].tasks
            if all(t.name in [u.name for u in run.tasks] for run in teachers)]
  names = [n.strip() for n in args.tasks.split(",")] if args.tasks else shared
  for name in names:
    if name not in shared:
      raise InputError(None, f"not a task of every teacher (shared: {', '.join(shared)})",
                       field="--tasks")
  data_dir = Path(args.data_dir or teachers[0].config.data_dir)
  for name in names:
    task = teachers[0].tasks[teachers[0].task_id(name)]
    rows = read_canonical(canonical_path(data_dir, name, args.split), task)
    predictions = []
    for run in teachers:
      features = tokenize_rows(rows, task, run.tokenizer, run.config.max_seq_len)
      predictions.append(run.predict(name, features))
      metrics = predictions[-1].metrics(task)
      print(f"{name} {args.split}: teacher {run.workdir} (step {run.step}) " +
            formatted(metrics))
    out = soft_label_path(args.output_dir, name, args.split)
    ensemble = write_ensemble_soft_labels(out, task, predictions)
    print(f"{name} {args.split}: ensemble of {len(teachers)} teachers " +
          formatted(ensemble))
    print(f"{name}: {len(rows)} soft labels from {len(teachers)} teachers -> {out}")


if __name__ == "__main__":
  cli.run(main, runs_models=True)
