"""scripts/seed_table.py: the per-arm mean and spread over seeds that docs/RESULTS.md quotes."""
import json
import subprocess
import sys

from tests.conftest import REPO


def write_run(root, name, step_metrics):
  (root / name).mkdir()
  with open(root / name / "metrics.jsonl", "w") as f:
    for step, acc in step_metrics:
      f.write(json.dumps({"kind": "eval", "step": step, "epoch": step // 10,
                          "task": name.split("_")[1],  # <arm>_<task>_seed<n>
                          "split": "dev", "ACC": acc}) + "\n")


def test_seed_table_reports_each_arms_last_epoch_mean_and_sample_std(tmp_path):
  write_run(tmp_path, "plain_mrpc_seed1", [(10, 50.0), (20, 70.0)])  # the last epoch counts
  write_run(tmp_path, "plain_mrpc_seed2", [(20, 74.0)])
  write_run(tmp_path, "smart_mrpc_seed1", [(20, 71.0)])
  write_run(tmp_path, "student_mrpc_seed1", [(20, 72.5)])
  (tmp_path / "soft_mrpc").mkdir()  # not a run, but its dev file scores the teachers' ensemble
  (tmp_path / "soft_mrpc" / "mrpc_dev_soft.json").write_text(json.dumps(
      {"metrics": {"teachers": 3.0, "ACC": 75.25, "F1": 83.0}, "uids": [], "scores": []}))
  plot = tmp_path / "seeds.png"
  table = subprocess.run([sys.executable, "scripts/seed_table.py", str(tmp_path), "--plot",
                          str(plot)], cwd=REPO, capture_output=True, text=True, check=True).stdout
  # mean 72, sample std of (70, 74) = 2.83
  assert "| mrpc | plain fine-tuning | ACC 72.0 ± 2.8 (n=2) | ACC 70.0, 74.0 |" in table
  assert "| mrpc | SMART | ACC 71.0 (n=1) | ACC 71.0 |" in table
  assert "| mrpc | ensemble of the 3 plain models (their predictions averaged) | ACC 75.2; F1 83.0 |" in table
  assert plot.stat().st_size > 10_000


def seed_table(*args: str) -> str:
  return subprocess.run([sys.executable, "scripts/seed_table.py", *args], cwd=REPO,
                        capture_output=True, text=True, check=True).stdout


def test_seed_table_reads_several_folders_and_shows_the_arms_asked_for(tmp_path):
  """The super-ticket table: the full model's runs from one folder, the tickets' from another,
  the tickets after it from the least pruned; arms not asked for and their ensemble left out."""
  full, tickets = tmp_path / "smart", tmp_path / "tickets"
  full.mkdir(), tickets.mkdir()
  write_run(full, "plain_mrpc_seed1", [(20, 70.0)])
  write_run(full, "student_mrpc_seed1", [(20, 69.0)])
  (full / "soft_mrpc").mkdir()
  (full / "soft_mrpc" / "mrpc_dev_soft.json").write_text(json.dumps(
      {"metrics": {"teachers": 3.0, "ACC": 75.25}, "uids": [], "scores": []}))
  write_run(tickets, "ticket50_mrpc_seed1", [(20, 66.0)])
  write_run(tickets, "ticket10_mrpc_seed1", [(20, 71.0)])
  write_run(tickets, "ticket10_mrpc_seed2", [(20, 73.0)])
  rows = seed_table(str(full), str(tickets), "--arms", "plain,ticket").splitlines()[2:]
  assert rows == ["| mrpc | plain fine-tuning | ACC 70.0 (n=1) | ACC 70.0 |",
                  "| mrpc | super ticket, 10% pruned (rewound) | ACC 72.0 ± 1.4 (n=2) | ACC 71.0, 73.0 |",
                  "| mrpc | super ticket, 50% pruned (rewound) | ACC 66.0 (n=1) | ACC 66.0 |"]
  write_run(full, "plain_stsb_seed1", [(20, 80.0)])  # a task the tickets were not cut for
  rows = seed_table(str(full), str(tickets), "--arms", "plain,ticket", "--tasks", "mrpc")
  assert "stsb" not in rows and "| mrpc | plain fine-tuning |" in rows
  assert "stsb" in seed_table(str(full), str(tickets), "--arms", "plain,ticket")
  write_run(tickets, "plain_mrpc_seed1", [(20, 70.0)])  # the same run in two folders: which?
  failed = subprocess.run([sys.executable, "scripts/seed_table.py", str(full), str(tickets)],
                          cwd=REPO, capture_output=True, text=True)
  assert failed.returncode != 0 and "plain_mrpc_seed1 is also in" in failed.stderr
