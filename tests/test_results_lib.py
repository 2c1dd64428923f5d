"""scripts/results_lib.sh: which runs the results scripts train, skip and keep as evidence.

The scripts run with `python` replaced by a stand-in that records its arguments and leaves what
the real script would: a finished workdir for scripts/train.py (metrics.jsonl, config.json, the
plot written last), a soft-label file for scripts/distill.py, ticket files for
scripts/super_tickets.py.
"""
import subprocess

from tests.helpers import REPO

FAKE_PYTHON = r'''#!/usr/bin/env bash
# Stands in for python: records the command; a training run leaves a finished workdir, a
# distillation its soft-label file, a ticket search its tickets.
echo "$*" >> "$CALLS"
args=" $* "
if [[ $1 == scripts/train.py ]]; then
  workdir=$(sed -E 's/.* --workdir ([^ ]+) .*/\1/' <<< "$args")
  mkdir -p "$workdir"; echo '{}' > "$workdir/metrics.jsonl"; echo '{}' > "$workdir/config.json"
  touch "$workdir/training.png"
elif [[ $1 == scripts/distill.py ]]; then
  out=$(sed -E 's/.* --output_dir ([^ ]+) .*/\1/' <<< "$args")
  task=$(sed -E 's/.* --tasks ([^ ]+) .*/\1/' <<< "$args")
  split=$(sed -E 's/.* --split ([^ ]+) .*/\1/' <<< "$args")
  mkdir -p "$out"; echo '{}' > "$out/${task}_${split}_soft.json"
elif [[ $1 == scripts/super_tickets.py ]]; then
  out=$(sed -E 's/.* --output_dir ([^ ]+) .*/\1/' <<< "$args")
  mkdir -p "$out"
  for sparsity in $(sed -E 's/.* --sparsities ([^ ]+) .*/\1/' <<< "$args" | tr , ' '); do
    echo '{}' > "$out/ticket_$sparsity.json"
  done
fi
'''


def stand_in_python(tmp_path) -> dict[str, str]:
  """An environment whose `python` is the stand-in above, recording into tmp_path/calls.txt."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / "python").write_text(FAKE_PYTHON)
  (bin_dir / "python").chmod(0o755)
  (tmp_path / "calls.txt").write_text("")  # this call's only
  return {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls.txt")}


def bash(tmp_path, body: str, keep: str = "") -> list[str]:
  """Runs `body` after sourcing results_lib.sh in tmp_path; the train calls it made."""
  env = stand_in_python(tmp_path)
  script = (f"set -euo pipefail\nCOMMON=(--config.num_epochs=2)\n"
            f"{'KEEP=' + keep if keep else ''}\nsource {REPO / 'scripts/results_lib.sh'}\n{body}\n")
  subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, check=True)
  return (tmp_path / "calls.txt").read_text().splitlines()


def test_run_trains_and_keeps_the_logs_at_once(tmp_path):
  calls = bash(tmp_path, "run configs/a.py out/plain_x_seed1 --config.seed=1", keep="kept")
  assert calls == ["scripts/train.py --config configs/a.py --workdir out/plain_x_seed1 "
                   "--config.num_epochs=2 --config.seed=1"]
  assert (tmp_path / "kept/plain_x_seed1/metrics.jsonl").is_file()
  assert (tmp_path / "kept/plain_x_seed1/config.json").is_file()


def test_a_run_kept_by_an_earlier_session_is_not_run_again(tmp_path):
  (tmp_path / "kept/plain_x_seed1").mkdir(parents=True)
  (tmp_path / "kept/plain_x_seed1/metrics.jsonl").write_text("{}\n")
  assert bash(tmp_path, "run configs/a.py out/plain_x_seed1", keep="kept") == []
  # train_run is for runs whose checkpoints are needed (teachers): it trains all the same.
  assert len(bash(tmp_path, "train_run configs/a.py out/plain_x_seed1", keep="kept")) == 1


def test_a_finished_workdir_is_not_trained_again_but_is_kept(tmp_path):
  bash(tmp_path, "run configs/a.py out/r1")  # no KEEP: trains, keeps nothing
  assert not (tmp_path / "kept").exists()
  assert bash(tmp_path, "run configs/a.py out/r1", keep="kept") == []
  assert (tmp_path / "kept/r1/metrics.jsonl").is_file()


def test_keep_logs_keeps_only_finished_runs(tmp_path):
  calls = bash(tmp_path, "run configs/a.py out/done\n"
               "mkdir -p out/interrupted && echo '{}' > out/interrupted/metrics.jsonl\n"
               "keep_logs out dest")
  assert len(calls) == 1
  assert (tmp_path / "dest/done/metrics.jsonl").is_file()
  assert not (tmp_path / "dest/interrupted").exists()  # its last epoch is not the run's result




def results_script(tmp_path, script: str, kept: dict[str, bool] = {}) -> list[str]:
  """Runs scripts/<script> (TASKS=mrpc) in a copy of its folder with a stand-in python; `kept`:
  runs and files (paths under docs/results) an earlier session left there. Its calls, summarised."""
  (tmp_path / "scripts").mkdir()
  for name in (script, "results_lib.sh"):
    (tmp_path / "scripts" / name).write_text((REPO / "scripts" / name).read_text())
  env = {**stand_in_python(tmp_path), "TASKS": "mrpc"}
  for name in kept:
    target = tmp_path / "docs/results" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".json"):
      target.write_text("{}")
    else:
      target.mkdir()
      (target / "metrics.jsonl").write_text("{}\n")
  subprocess.run(["bash", str(tmp_path / "scripts" / script)], env=env, check=True)
  return [summary(c.split()) for c in (tmp_path / "calls.txt").read_text().splitlines()]


def smart_results(tmp_path, kept: dict[str, bool] = {}) -> list[str]:
  return results_script(tmp_path, "smart_results.sh",
                        {f"smart_minilm/{name}": True for name in kept})


def summary(argv: list[str]) -> str:
  """A call as its script and what it makes: a train run's workdir, a distillation's split."""
  flag = {"scripts/train.py": "--workdir", "scripts/distill.py": "--split",
          "scripts/super_tickets.py": "--sparsities"}.get(argv[0])
  return f"{argv[0]} {argv[argv.index(flag) + 1]}" if flag else argv[0]


def test_smart_results_order_on_a_fresh_machine(tmp_path):
  calls = smart_results(tmp_path)
  arms = [f"scripts/train.py runs/smart/{arm}_mrpc_seed{s}" for s in (1, 2, 3)
          for arm in ("smart", "bregman")]
  assert calls == (
      ["scripts/prepro.py"] +
      [f"scripts/train.py runs/smart/plain_mrpc_seed{s}" for s in (1, 2, 3)] +
      ["scripts/distill.py dev", "scripts/distill.py train"] +
      [f"scripts/train.py runs/smart/student_mrpc_seed{s}" for s in (1, 2, 3)] + arms +
      ["scripts/seed_table.py"])
  keep = tmp_path / "docs/results/smart_minilm"
  assert (keep / "soft_mrpc/mrpc_train_soft.json").is_file()
  assert (keep / "bregman_mrpc_seed3/metrics.jsonl").is_file()


def test_smart_results_resumes_from_what_an_earlier_session_kept(tmp_path):
  """Every run kept and only the dev soft labels (as MRPC was left): nothing is trained."""
  runs = [f"{arm}_mrpc_seed{s}" for arm in ("plain", "student", "smart", "bregman")
          for s in (1, 2, 3)]
  calls = smart_results(tmp_path, dict.fromkeys(runs + ["soft_mrpc/mrpc_dev_soft.json"]))
  assert calls == ["scripts/prepro.py", "scripts/seed_table.py"]


def test_smart_results_retrains_teachers_whose_soft_labels_are_missing(tmp_path):
  """The plain runs kept, but no soft labels and a student to train: the teachers' checkpoints
  are gone with the earlier session's machine, so they are trained again (deterministically)."""
  runs = [f"plain_mrpc_seed{s}" for s in (1, 2, 3)] + ["student_mrpc_seed1"]
  calls = smart_results(tmp_path, dict.fromkeys(runs))
  assert calls[1:6] == ([f"scripts/train.py runs/smart/plain_mrpc_seed{s}" for s in (1, 2, 3)] +
                        ["scripts/distill.py dev", "scripts/distill.py train"])
  assert "scripts/train.py runs/smart/student_mrpc_seed1" not in calls
  assert "scripts/train.py runs/smart/student_mrpc_seed2" in calls


PLAIN = [f"smart_minilm/plain_mrpc_seed{s}" for s in (1, 2, 3)]
TICKET_RUNS = [f"ticket{p}_mrpc_seed{s}" for p in (10, 30, 50) for s in (1, 2, 3)]


def test_tickets_results_order_on_a_fresh_machine(tmp_path):
  """The full model's three plain runs (kept with smart_results.sh's), tickets cut from seed 1's,
  each rewound ticket trained with every seed; the table reads both folders."""
  calls = results_script(tmp_path, "tickets_results.sh")
  assert calls == (
      ["scripts/prepro.py"] +
      [f"scripts/train.py runs/smart/plain_mrpc_seed{s}" for s in (1, 2, 3)] +
      ["scripts/super_tickets.py 0.1,0.3,0.5"] +
      [f"scripts/train.py runs/smart/{name}" for name in TICKET_RUNS] + ["scripts/seed_table.py"])
  assert (tmp_path / "docs/results/smart_minilm/plain_mrpc_seed2/metrics.jsonl").is_file()
  assert (tmp_path / "docs/results/tickets_minilm/ticket50_mrpc_seed3/metrics.jsonl").is_file()
  ticket_flags = [c for c in (tmp_path / "calls.txt").read_text().splitlines() if "ticket30" in c]
  assert all("--config.tickets.file=docs/results/tickets_minilm/tickets_mrpc/ticket_0.3.json"
             in c for c in ticket_flags) and len(ticket_flags) == 3


def test_tickets_results_resumes_without_the_full_models_checkpoint(tmp_path):
  """Plain runs and tickets kept by an earlier session: only the ticket runs not kept train."""
  tickets = [f"tickets_minilm/tickets_mrpc/ticket_{sp}.json" for sp in ("0.1", "0.3", "0.5")]
  kept = PLAIN + tickets + [f"tickets_minilm/{name}" for name in TICKET_RUNS[:4]]
  calls = results_script(tmp_path, "tickets_results.sh", dict.fromkeys(kept))
  assert calls == (["scripts/prepro.py"] +
                   [f"scripts/train.py runs/smart/{name}" for name in TICKET_RUNS[4:]] +
                   ["scripts/seed_table.py"])


def test_tickets_results_retrains_the_scored_model_when_a_ticket_is_missing(tmp_path):
  kept = PLAIN + ["tickets_minilm/tickets_mrpc/ticket_0.1.json"]
  calls = results_script(tmp_path, "tickets_results.sh", dict.fromkeys(kept))
  assert calls[1:3] == ["scripts/train.py runs/smart/plain_mrpc_seed1",
                        "scripts/super_tickets.py 0.3,0.5"]
  assert "scripts/train.py runs/smart/plain_mrpc_seed2" not in calls
