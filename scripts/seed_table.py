#!/usr/bin/env python
"""Markdown table of scripts/smart_results.sh's runs: each arm's dev metrics over seeds.

  python scripts/seed_table.py runs/smart
  python scripts/seed_table.py docs/results/smart_minilm     # the logs kept in the repository

Runs are `<arm>_<task>_seed<n>` workdirs; a cell is mean ± sample standard deviation over the
seeds found (each at its last evaluated epoch), with the seed count and each seed's value; then
the teachers' ensemble scored as one model, from soft_<task>/<task>_dev_soft.json when present.
"""
import collections
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.results_table import last_eval  # noqa: E402

ARMS = {"plain": "plain fine-tuning", "smart": "SMART", "bregman": "SMART + Bregman",
        "student": "KD student (3-teacher ensemble)"}


def main(out: str) -> None:
  runs = collections.defaultdict(dict)  # (task, arm) -> {seed: metrics}
  for workdir in sorted(Path(out).iterdir()):
    match = re.fullmatch(r"([a-z]+)_([a-z0-9]+)_seed(\d+)", workdir.name)
    if match and match[1] in ARMS:
      metrics = last_eval(workdir, match[2])
      if metrics:
        runs[(match[2], match[1])][int(match[3])] = metrics
  print("| task | arm | " + "dev metric: mean ± std (seeds) | per seed |")
  print("|---|---|---|---|")
  for task in sorted({t for t, _ in runs}):
    for arm, title in ARMS.items():
      per_seed = runs.get((task, arm))
      if not per_seed:
        continue
      cells, values = [], []
      for name in next(iter(per_seed.values())):
        xs = [m[name] for _, m in sorted(per_seed.items())]
        spread = f" ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else ""  # no spread from one seed
        cells.append(f"{name} {statistics.mean(xs):.1f}{spread}")
        values.append(f"{name} " + ", ".join(f"{x:.1f}" for x in xs))
      print(f"| {task} | {title} | {'; '.join(cells)} (n={len(per_seed)}) | {'; '.join(values)} |")
    ensemble = Path(out) / f"soft_{task}" / f"{task}_dev_soft.json"
    if ensemble.exists():  # scripts/distill.py --split dev: the teachers as one model
      metrics = json.loads(ensemble.read_text())["metrics"]
      teachers = int(metrics.pop("teachers"))
      cells = "; ".join(f"{name} {value:.1f}" for name, value in metrics.items())
      print(f"| {task} | ensemble of the {teachers} plain models (probabilities averaged) | "
            f"{cells} | — |")


if __name__ == "__main__":
  main(*sys.argv[1:])
