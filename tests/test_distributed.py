"""Multi-process training on JAX's distributed runtime: 2 local processes x 2 CPU devices
(collectives over gloo on 127.0.0.1), sharding presets, and launches that cannot work."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.tiny_setup import REPO, train_losses


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, tiny, devices: int, overrides: dict) -> subprocess.Popen:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  return subprocess.Popen(
      [sys.executable, str(REPO / "tests" / "tiny_setup.py"), str(workdir), str(tiny[0]),
       str(tiny[1]), json.dumps(overrides)], env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> dict:
  out, err = process.communicate(timeout=900)
  assert process.returncode == 0, err[-3000:]
  return json.loads(out.strip().splitlines()[-1])


def run_pair(workdir, tiny, **overrides) -> list[dict]:
  """Two processes with two devices each, as one 4-device job."""
  port = free_port()
  processes = [launch(workdir, tiny, 2, {
      **overrides, "mesh": {"data": 4},
      "distributed.coordinator_address": f"127.0.0.1:{port}",
      "distributed.num_processes": 2, "distributed.process_id": i}) for i in range(2)]
  return [finish(p) for p in processes]




@pytest.fixture(scope="module")
def four_devices(tmp_path_factory, tiny):
  workdir = tmp_path_factory.mktemp("four")
  return workdir, finish(launch(workdir, tiny, 4, {"num_epochs": 1, "mesh": {"data": 4}}))


def test_two_processes_train_like_one_four_device_process(tmp_path, tiny, four_devices):
  results = run_pair(tmp_path, tiny, num_epochs=1)
  # Every process ends with the same metrics and the same buckets.
  assert results[0].pop("buckets") == results[1].pop("buckets")
  assert results[0] == pytest.approx(results[1])
  pair, single = train_losses(tmp_path), train_losses(four_devices[0])
  assert sorted(pair) == sorted(single) == list(range(1, 11))
  for step in single:
    assert pair[step] == pytest.approx(single[step], abs=1e-5), step
  for task in ("sts", "paraphrase"):  # evaluation counted each dev example exactly once
    scores = json.loads((tmp_path / "predictions" / "epoch_1" / f"{task}_dev_scores.json").read_text())
    assert len(scores["uids"]) == len(set(scores["uids"])) == 24
  assert results[0]["paraphrase/dev/ACC"] == pytest.approx(four_devices[1]["paraphrase/dev/ACC"])
  # Only process 0 wrote the log: one line per step, not two.
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert len([l for l in lines if l["kind"] == "train"]) == 10


def test_checkpoint_of_the_pair_resumes_in_one_process_on_another_mesh(tmp_path, tiny,
                                                                       four_devices):
  run_pair(tmp_path, tiny, num_epochs=1, stop_at_step=4)
  finish(launch(tmp_path, tiny, 1, {"num_epochs": 1, "mesh": {"data": 1}}))
  resumed, single = train_losses(tmp_path), train_losses(four_devices[0])
  assert sorted(resumed) == list(range(1, 11))
  for step in single:
    assert resumed[step] == pytest.approx(single[step], abs=1e-5), step


# tensor_parallel on 8 devices (data 4 x model 2) is tests/test_train.py's 1-vs-8 device test.
@pytest.mark.parametrize("preset, mesh", [("data_parallel", {"data": 8}),
                                          ("fsdp", {"data": 2, "fsdp": 4})])
def test_presets_on_eight_devices_match_data_parallel_on_four(tmp_path, tiny, four_devices,
                                                              preset, mesh):
  finish(launch(tmp_path, tiny, 8, {"num_epochs": 1, "mesh": mesh,
                                    "sharding_preset": preset}))
  ours, reference = train_losses(tmp_path), train_losses(four_devices[0])
  for step in reference:
    assert ours[step] == pytest.approx(reference[step], abs=1e-5), step


@pytest.mark.parametrize("case", ["too_few_processes", "unreachable_coordinator"])
def test_a_launch_that_cannot_come_together_fails_fast_and_says_why(tmp_path, tiny, case):
  port = free_port()  # nothing listens there once the probe socket is closed
  overrides = {"distributed.coordinator_address": f"127.0.0.1:{port}",
               "distributed.num_processes": 2, "distributed.initialization_timeout": 5,
               "distributed.process_id": 0 if case == "too_few_processes" else 1}
  start = time.time()
  result = finish(launch(tmp_path, tiny, 1, overrides))
  assert time.time() - start < 60
  assert "config.distributed: the processes did not come together within 5 s" in result["error"]
  assert "exactly num_processes processes were started" in result["error"]


def test_mesh_that_does_not_match_the_devices_is_refused(tmp_path, tiny):
  result = finish(launch(tmp_path, tiny, 4, {"mesh": {"data": 3}}))
  assert result["error"] == ("<input>: config.mesh: mesh {'data': 3, 'fsdp': 1, 'model': 1} "
                             "needs 3 devices, but 4 are available")


def test_rules_that_cannot_split_a_parameter_are_refused(tmp_path, tiny):
  rules = (("vocab", "model"), ("heads", "model"), ("mlp", "model"))
  result = finish(launch(tmp_path, tiny, 4, {"mesh": {"data": 1, "model": 4},
                                             "logical_axis_rules": rules}))
  assert result["error"].startswith(
      "<input>: config.logical_axis_rules: parameter ['encoder']['embeddings']"
      "['word_embeddings']['embedding'] of shape (30522, 32) cannot be split as "
      "P('model', None) over mesh {'data': 1, 'fsdp': 1, 'model': 4}")


def test_speed_rows_report_tokens_and_mfu(four_devices):
  rows = [json.loads(l) for l in (four_devices[0] / "metrics.jsonl").read_text().splitlines()]
  speed = [r for r in rows if r["kind"] == "speed"]
  assert speed and all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in speed)
