"""The real training loop on a tiny encoder: sharding equality, compile count, exact resume,
outputs, and configs refused before any compute."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mtdnn_jax.errors import InputError
from mtdnn_jax.fileio import read_json
from mtdnn_jax.train import train_and_evaluate
from tests.tiny_setup import REPO, tiny_config, train_losses




def run_in_subprocess(workdir, tiny, devices: int, **overrides) -> dict:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, str(REPO / "tests" / "tiny_setup.py"), str(workdir), str(tiny[0]),
       str(tiny[1]), json.dumps(overrides)], env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny):
  """One uninterrupted run in this process (1 device)."""
  workdir = tmp_path_factory.mktemp("reference")
  return workdir, train_and_evaluate(tiny_config(*tiny), str(workdir))


def test_run_writes_everything_a_user_looks_at(reference_run):
  workdir, results = reference_run
  steps = results["step"]
  assert steps == 2 * 10  # 2 epochs x (40 + 40 examples in batches of 8, short rows: one bucket)
  assert sorted(train_losses(workdir)) == list(range(1, steps + 1))
  assert {"sts/dev/Pearson", "sts/dev/Spearman", "paraphrase/dev/ACC",
          "paraphrase/dev/F1"} <= set(results)
  scores = json.loads((workdir / "predictions" / "epoch_2" / "paraphrase_dev_scores.json").read_text())
  assert len(scores["uids"]) == 24 and len(scores["scores"][0]) == 2
  np.testing.assert_allclose(np.sum(scores["scores"], axis=1), 1.0, atol=1e-5)
  assert scores["metrics"]["ACC"] == pytest.approx(results["paraphrase/dev/ACC"])
  assert (workdir / "training.png").stat().st_size > 10_000
  assert any((workdir / "tensorboard").iterdir())
  assert (workdir / "best").is_dir() and (workdir / "checkpoints").is_dir()


def test_compiles_once_per_bucket_shape(tmp_path, tiny, reference_run):
  # The reference run's rows all fit the first bucket: one compilation for every step.
  assert reference_run[1]["train_step_compilations"] == 1
  # Now with buckets so small that rows spread over three shapes.
  results = train_and_evaluate(tiny_config(*tiny, buckets=(16, 24, 64), num_epochs=1),
                               str(tmp_path))
  assert results["train_step_compilations"] == 3
  # Buckets fitted to the data: at most as many shapes as asked for, the last at max_seq_len.
  fitted = train_and_evaluate(tiny_config(*tiny, fit_buckets=2, num_epochs=1), str(tmp_path / "fit"))
  assert len(fitted["buckets"]) <= 2 and fitted["buckets"][-1] == 64
  assert fitted["train_step_compilations"] == len(fitted["buckets"])


def test_resume_after_interrupt_continues_exactly(tmp_path, tiny, reference_run):
  workdir = tmp_path / "interrupted"
  first = train_and_evaluate(tiny_config(*tiny, stop_at_step=7), str(workdir))
  assert first["step"] == 7
  second = train_and_evaluate(tiny_config(*tiny), str(workdir))
  assert second["step"] == 20
  resumed, uninterrupted = train_losses(workdir), train_losses(reference_run[0])
  assert sorted(resumed) == sorted(uninterrupted)
  for step in uninterrupted:
    assert resumed[step] == pytest.approx(uninterrupted[step], abs=1e-6), step
  assert second["paraphrase/dev/ACC"] == pytest.approx(reference_run[1]["paraphrase/dev/ACC"])


def test_eight_devices_with_data_and_model_parallelism_give_the_same_losses(tmp_path, tiny):
  one = run_in_subprocess(tmp_path / "one", tiny, 1, num_epochs=1)
  eight = run_in_subprocess(tmp_path / "eight", tiny, 8, num_epochs=1,
                            mesh={"data": 4, "model": 2})
  losses_one, losses_eight = train_losses(tmp_path / "one"), train_losses(tmp_path / "eight")
  assert sorted(losses_one) == sorted(losses_eight) == list(range(1, 11))
  for step in losses_one:
    assert losses_eight[step] == pytest.approx(losses_one[step], abs=1e-5), step
  # The untrained regressor's dev predictions spread over ~3e-5 around ~0.06, so float32
  # rounding (~1e-8) alone moves their Pearson by ~1e-3 (×100): compare the predictions.
  predicted = {run: np.array(read_json(tmp_path / run / "predictions" / "epoch_1" /
                                       "sts_dev_scores.json", "predictions")["predictions"])
               for run in ("one", "eight")}
  np.testing.assert_allclose(predicted["eight"], predicted["one"], rtol=1e-6)
  assert eight["sts/dev/Pearson"] == pytest.approx(one["sts/dev/Pearson"], abs=1e-2)


@pytest.mark.parametrize("overrides, field, message", [
    ({"tasks": "sts,nli"}, "config.tasks", "unknown task 'nli'"),
    ({"optim.name": "adamq"}, "optim.name", "unknown optimizer 'adamq'"),
    ({"mesh.data": 2}, "config.mesh", "needs 2 devices, but 1 are available"),
    ({"buckets": (32,)}, "config.buckets", "must increase and end at or above max_seq_len=64"),
    ({"model.dtype": "float16"}, "config.model.dtype", "unknown dtype 'float16'"),
    ({"fit_buckets": -1}, "config.fit_buckets", "must be 0"),
])
def test_bad_config_is_refused_before_any_compute(tmp_path, tiny, overrides, field, message):
  with pytest.raises(InputError, match=message) as error:
    train_and_evaluate(tiny_config(*tiny, **overrides), str(tmp_path))
  assert error.value.field == field
  assert not (tmp_path / "checkpoints").exists()


def test_batch_not_divisible_by_the_data_axis_is_refused(tmp_path, tiny):
  result = run_in_subprocess(tmp_path, tiny, 4, batch_size=6, mesh={"data": 4, "model": 1})
  assert result["error"] == ("<input>: config.batch_size: 6 is not a positive multiple of the "
                             "mesh's data axes (4 devices)")


def test_predict_script_reproduces_the_runs_own_evaluation(tmp_path, reference_run):
  from tests.helpers import run_cli
  workdir, results = reference_run
  out = tmp_path / "scores.json"
  result = run_cli("scripts/predict.py", "--workdir", str(workdir), "--which", "latest",
                   "--task", "paraphrase", "--input", str(REPO / "data" / "demo" /
                                                           "paraphrase_dev.tsv"),
                   "--output", str(out))
  assert result.returncode == 0, result.stderr[-2000:]
  ours = json.loads(out.read_text())
  # The tiny run saw the first 24 dev rows; the full file has 375, of which those come first.
  during_training = json.loads(
      (workdir / "predictions" / "epoch_2" / "paraphrase_dev_scores.json").read_text())
  assert len(ours["uids"]) == 375 and ours["uids"][:24] == during_training["uids"]
  np.testing.assert_allclose(ours["scores"][:24], during_training["scores"], atol=1e-5)
  bad = run_cli("scripts/predict.py", "--workdir", str(workdir), "--task", "rte",
                "--input", str(out), "--output", str(tmp_path / "x.json"))
  assert bad.returncode == 2 and f"--task: the run {workdir} has no task 'rte' (its tasks: sts, paraphrase)" in bad.stderr


def test_strip_model_writes_the_trained_encoder_as_a_model_directory(tmp_path, reference_run,
                                                                      tiny):
  from mtdnn_jax.checkpoint import Checkpoints
  from mtdnn_jax.model_dir import flatten_params, load_model_dir
  from tests.helpers import run_cli
  workdir, _ = reference_run
  out = tmp_path / "stripped"
  result = run_cli("scripts/strip_model.py", "--workdir", str(workdir), "--which", "latest",
                   "--output", str(out))
  assert result.returncode == 0, result.stderr[-2000:]
  stripped, initial = load_model_dir(out), load_model_dir(tiny[0])
  assert stripped.config == initial.config and stripped.heads is None
  checkpoints = Checkpoints(workdir, asynchronous=False)
  step, params = checkpoints.restore_params("latest")
  checkpoints.close()
  assert step == 20 and stripped.provenance["step"] == 20
  trained = flatten_params(params["encoder"])
  for key, value in flatten_params(stripped.params).items():
    np.testing.assert_array_equal(value, np.asarray(trained[key]), err_msg=key)
  moved = [k for k, v in flatten_params(initial.params).items()
           if not np.array_equal(v, flatten_params(stripped.params)[k])]
  assert len(moved) > 10  # training changed the encoder
