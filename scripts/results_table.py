#!/usr/bin/env python
"""Markdown table of the dev metrics that scripts/glue_results.sh's runs reached.

  python scripts/results_table.py runs/results
  python scripts/results_table.py docs/results/glue_minilm     # the logs kept in the repository

For each task: single-task fine-tuning, the MTL model itself (before fine-tuning) and MT-DNN
(MTL, then fine-tuned), each at its last evaluated epoch, read from the runs' metrics.jsonl.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtdnn_jax.reporting import METRICS_FILE, read_metrics_log  # noqa: E402


def last_eval(workdir: Path, task: str) -> dict[str, float] | None:
  path = workdir / METRICS_FILE
  if not path.is_file():
    return None
  rows = [r for r in read_metrics_log(path)
          if r["kind"] == "eval" and r.get("task") == task and r.get("split") == "dev"]
  if not rows:
    return None
  last = max(rows, key=lambda r: r["step"])
  return {k: v for k, v in last.items()
          if k not in ("kind", "step", "epoch", "task", "split") and v is not None}


def fmt(metrics: dict[str, float] | None) -> str:
  return "/".join(f"{v:.1f}" for v in metrics.values()) if metrics else "not run"


def main(out: str) -> None:
  out = Path(out)
  tasks = {p.name.split("_", 1)[1] for p in out.glob("single_*")}
  if (out / "mtl" / "config.json").is_file():
    tasks |= set(json.loads((out / "mtl" / "config.json").read_text())["tasks"].split(","))
  tasks = sorted(tasks)
  print("| task (dev metric) | single-task | MTL model, before fine-tuning | MT-DNN (MTL + fine-tuning) |")
  print("|---|---|---|---|")
  for task in tasks:
    single = last_eval(out / f"single_{task}", task)
    reference = single or last_eval(out / "mtl", task)
    names = "/".join(reference) if reference else "?"
    print(f"| {task} ({names}) | {fmt(single)} | {fmt(last_eval(out / 'mtl', task))} | "
          f"{fmt(last_eval(out / f'finetune_{task}', task))} |")


if __name__ == "__main__":
  main(*sys.argv[1:])
