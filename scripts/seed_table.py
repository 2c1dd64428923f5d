#!/usr/bin/env python
"""Markdown table of scripts/smart_results.sh's and scripts/tickets_results.sh's runs: each
arm's dev metrics over seeds.

  python scripts/seed_table.py runs/smart [--plot docs/results/smart_minilm.png]
  python scripts/seed_table.py docs/results/smart_minilm     # the logs kept in the repository
  python scripts/seed_table.py docs/results/smart_minilm docs/results/tickets_minilm \
      --arms plain,ticket --tasks mrpc,rte                  # full model vs its super tickets

Runs are `<arm>_<task>_seed<n>` workdirs (arms: plain, smart, bregman, student, and ticket<p> for
a ticket with p% of the heads and neurons pruned), read from every folder given; a cell is mean ±
sample standard deviation over the seeds found (each at its last evaluated epoch), with the seed
count and each seed's value; then, with the student arm shown, the teachers' ensemble scored as
one model, from soft_<task>/<task>_dev_soft.json when present.
"""
import argparse
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
TICKET = re.compile(r"ticket(\d+)")  # scripts/tickets_results.sh: ticket30 = 30% pruned


def arm_title(arm: str) -> str | None:
  """The arm's row title, None for a folder that is not an arm."""
  ticket = TICKET.fullmatch(arm)
  return f"super ticket, {ticket[1]}% pruned (rewound)" if ticket else ARMS.get(arm)


def arm_order(arm: str) -> tuple[int, int]:
  """ARMS in their order, then the tickets from the least pruned."""
  ticket = TICKET.fullmatch(arm)
  return (len(ARMS), int(ticket[1])) if ticket else (list(ARMS).index(arm), 0)


def collect(folders: list[Path], shown: list[str] | None = None,
            tasks: list[str] | None = None) -> tuple[dict, dict]:
  """({(task, arm): {seed: metrics}}, {task: (teachers, the ensemble's dev metrics)}) over the
  runs in all `folders`; `shown`: the arms to keep (a prefix keeps every arm it starts, as
  'ticket' keeps ticket10 and ticket30), None for all; `tasks`: the tasks to keep, None for all."""
  runs = collections.defaultdict(dict)
  found = {}
  for out in folders:
    for workdir in sorted(out.iterdir()):
      match = re.fullmatch(r"([a-z]+\d*)_([a-z0-9]+)_seed(\d+)", workdir.name)
      if not match or arm_title(match[1]) is None:
        continue
      if shown is not None and not any(match[1].startswith(prefix) for prefix in shown):
        continue
      if tasks is not None and match[2] not in tasks:
        continue
      if workdir.name in found:
        raise SystemExit(f"{workdir}: the run {workdir.name} is also in {found[workdir.name]}")
      found[workdir.name] = out
      metrics = last_eval(workdir, match[2])
      if metrics:
        runs[(match[2], match[1])][int(match[3])] = metrics
  ensembles = {}
  for task in {t for t, _ in runs}:
    if (task, "student") not in runs:  # the ensemble is what the students learnt from
      continue
    for out in folders:
      path = out / f"soft_{task}" / f"{task}_dev_soft.json"
      if path.exists():  # scripts/distill.py --split dev: the teachers as one model
        metrics = json.loads(path.read_text())["metrics"]
        ensembles[task] = (int(metrics.pop("teachers")), metrics)
  return runs, ensembles


def arms_of(runs: dict, task: str) -> list[str]:
  return sorted({arm for t, arm in runs if t == task}, key=arm_order)


def metric_names(runs: dict, task: str) -> list[str]:
  """The task's metrics, as its first run logged them."""
  first = next(per_seed for (t, _), per_seed in runs.items() if t == task)
  return list(next(iter(first.values())))


def table(runs: dict, ensembles: dict) -> str:
  lines = ["| task | arm | dev metric: mean ± std (seeds) | per seed |", "|---|---|---|---|"]
  for task in sorted({t for t, _ in runs}):
    for arm in arms_of(runs, task):
      per_seed, title = runs[(task, arm)], arm_title(arm)
      cells, values = [], []
      for name in metric_names(runs, task):
        xs = [m[name] for _, m in sorted(per_seed.items())]
        spread = f" ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else ""  # no spread from one seed
        cells.append(f"{name} {statistics.mean(xs):.1f}{spread}")
        values.append(f"{name} " + ", ".join(f"{x:.1f}" for x in xs))
      lines.append(f"| {task} | {title} | {'; '.join(cells)} (n={len(per_seed)}) | "
                   f"{'; '.join(values)} |")
    if task in ensembles:
      teachers, metrics = ensembles[task]
      cells = "; ".join(f"{name} {value:.1f}" for name, value in metrics.items())
      lines.append(f"| {task} | ensemble of the {teachers} plain models (their predictions averaged) "
                   f"| {cells} | — |")
  return "\n".join(lines)


def plot(runs: dict, ensembles: dict, path: Path) -> None:
  """One panel per task and metric: each seed's value per arm (dots), their mean (line) ± sample
  std, and the teachers' ensemble (dashed line)."""
  from matplotlib.figure import Figure
  panels = [(task, name) for task in sorted({t for t, _ in runs})
            for name in metric_names(runs, task)]
  fig = Figure(figsize=(3.2 * len(panels), 3.6))
  for i, (task, name) in enumerate(panels):
    axes = fig.add_subplot(1, len(panels), i + 1)
    arms = arms_of(runs, task)
    for x, arm in enumerate(arms):
      values = [m[name] for m in runs[(task, arm)].values()]
      # Mean as a short line and ± sample std as a bar beside the dots: a truncated axis would
      # make bars from zero lie about the differences.
      mean = statistics.mean(values)
      axes.plot([x - 0.25, x + 0.25], [mean, mean], color="black", lw=1.5)
      if len(values) > 1:
        axes.errorbar(x + 0.12, mean, yerr=statistics.stdev(values), color="gray", capsize=3)
      axes.scatter([x - 0.08] * len(values), values, color="tab:blue", s=14, zorder=3)
    if task in ensembles and name in ensembles[task][1]:
      axes.axhline(ensembles[task][1][name], color="tab:red", ls="--", lw=1,
                   label=f"ensemble of {ensembles[task][0]}")
      axes.legend(fontsize=7, loc="lower right")
    every = [m[name] for arm in arms for m in runs[(task, arm)].values()]
    if task in ensembles and name in ensembles[task][1]:
      every.append(ensembles[task][1][name])  # the ensemble's line stays in view
    low, high = min(every), max(every)
    axes.set_ylim(low - 0.2 * (high - low + 1), high + 0.2 * (high - low + 1))
    axes.set_xlim(-0.6, len(arms) - 0.4)
    axes.set_xticks(range(len(arms)), [arm_title(a).split(" (")[0].replace(" + ", "\n+ ")
                                       .replace(", ", "\n") for a in arms], fontsize=7)
    axes.set_title(f"{task} dev {name}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("out", type=Path, nargs="+",
                      help="folders of runs: a results script's OUT, or the logs it kept")
  comma_list = lambda text: text.split(",")  # noqa: E731
  parser.add_argument("--arms", type=comma_list,
                      help="comma-separated arms (or their prefixes) to show; default: all found")
  parser.add_argument("--tasks", type=comma_list,
                      help="comma-separated tasks to show; default: all found")
  parser.add_argument("--plot", type=Path, help="also draw the seeds per arm into this PNG")
  args = parser.parse_args(argv)
  runs, ensembles = collect(args.out, args.arms, args.tasks)
  print(table(runs, ensembles))
  if args.plot:
    plot(runs, ensembles, args.plot)


if __name__ == "__main__":
  main()
