"""scripts/results_lib.sh: which runs the results scripts train, skip and keep as evidence.

The library is sourced by bash with `python` replaced by a function that records its arguments
and leaves a finished workdir behind, as scripts/train.py does (metrics.jsonl, config.json, the
plot written last).
"""
import subprocess

from tests.helpers import REPO

FAKE_TRAIN = r'''
python() {
  echo "$*" >> "$CALLS"
  local workdir; workdir=$(sed -E 's/.*--workdir ([^ ]+).*/\1/' <<< "$*")
  mkdir -p "$workdir"
  echo '{"kind": "eval"}' > "$workdir/metrics.jsonl"; echo '{}' > "$workdir/config.json"
  touch "$workdir/training.png"
}
'''


def bash(tmp_path, body: str, keep: str = "") -> list[str]:
  """Runs `body` after sourcing results_lib.sh in tmp_path; the train calls it made."""
  calls = tmp_path / "calls.txt"
  calls.write_text("")  # this call's only
  script = (f"set -euo pipefail\nCALLS={calls}\nCOMMON=(--config.num_epochs=2)\n"
            f"{'KEEP=' + keep if keep else ''}\nsource {REPO / 'scripts/results_lib.sh'}\n"
            f"{FAKE_TRAIN}\n{body}\n")
  subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True)
  return calls.read_text().splitlines()


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
