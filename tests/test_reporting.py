"""The metrics log (JSON lines and TensorBoard events) and the training plot."""
import json
import struct

import numpy as np
import pytest

from mtdnn_jax.errors import InputError
from mtdnn_jax.reporting import MetricsLog, plot_training, read_metrics_log

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def log_a_short_run(workdir):
  with MetricsLog(workdir) as log:
    for step in range(1, 61):
      log.log(step, "train", {"loss": np.float32(1.0 / step), "lr": 5e-5, "seq_per_s": 100.0})
      if step % 20 == 0:
        log.log(step, "eval", {"ACC": 50.0 + step / 2}, task="rte", split="dev",
                epoch=step // 20)
        log.log(step, "eval", {"Pearson": 80.0, "Spearman": 79.0}, task="stsb", split="dev",
                epoch=step // 20)
  return workdir / "metrics.jsonl"


def png_size(path):
  data = path.read_bytes()
  assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
  return struct.unpack(">II", data[16:24])  # width, height


def test_metrics_jsonl_has_one_flushed_object_per_call(tmp_path):
  log = MetricsLog(tmp_path)
  log.log(3, "train", {"loss": np.float32(0.5), "lr": 1e-4})
  # Flushed before close: a crashed run keeps what it logged.
  assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {
      "kind": "train", "step": 3, "loss": 0.5, "lr": 1e-4}
  log.log(10, "eval", {"ACC": 71.5, "F1": float("nan")}, task="mrpc", split="dev", epoch=1)
  log.close()
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 2
  assert json.loads(lines[1]) == {"kind": "eval", "step": 10, "epoch": 1, "task": "mrpc",
                                  "split": "dev", "ACC": 71.5, "F1": None}


def test_a_resumed_run_appends(tmp_path):
  with MetricsLog(tmp_path) as log:
    log.log(1, "train", {"loss": 1.0})
  with MetricsLog(tmp_path) as log:
    log.log(2, "train", {"loss": 0.5})
  assert [row["step"] for row in read_metrics_log(tmp_path / "metrics.jsonl")] == [1, 2]


def test_disabled_log_writes_nothing(tmp_path):
  with MetricsLog(tmp_path / "run", enabled=False) as log:
    log.log(1, "train", {"loss": 1.0})
  assert not (tmp_path / "run").exists()


def test_scalar_names_cannot_overwrite_row_fields(tmp_path):
  with MetricsLog(tmp_path) as log, pytest.raises(ValueError, match="step"):
    log.log(1, "train", {"step": 4.0})


def test_tensorboard_events_hold_the_tags_and_values(tmp_path):
  tf = pytest.importorskip("tensorflow")
  log_a_short_run(tmp_path)
  event_files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(event_files) == 1
  values = {}
  for event in tf.compat.v1.train.summary_iterator(str(event_files[0])):
    for value in event.summary.value:
      values[(value.tag, event.step)] = value.simple_value
  tags = {tag for tag, _ in values}
  assert tags == {"train/loss", "train/lr", "train/seq_per_s", "rte/dev/ACC", "stsb/dev/Pearson",
                  "stsb/dev/Spearman"}
  assert values[("train/loss", 4)] == pytest.approx(0.25)
  assert values[("rte/dev/ACC", 40)] == pytest.approx(70.0)
  assert sorted(step for tag, step in values if tag == "rte/dev/ACC") == [20, 40, 60]


def test_plot_of_a_full_log_is_a_png_of_reasonable_size(tmp_path):
  png = tmp_path / "plots" / "training.png"
  plot_training(log_a_short_run(tmp_path), png)
  width, height = png_size(png)
  assert 600 <= width <= 3000 and 600 <= height <= 3000  # loss panel over two task panels
  assert png.stat().st_size > 20_000  # curves, labels and legends, not an empty canvas


@pytest.mark.parametrize("rows", [
    [{"kind": "train", "step": 1, "loss": 0.9}],  # only training so far
    [{"kind": "eval", "step": 5, "epoch": 1, "task": "rte", "split": "dev", "ACC": 55.0}],
    [{"kind": "eval", "step": 5, "task": "ax", "split": "test"}],  # nothing plottable
    [],
])
def test_a_partial_log_still_plots(tmp_path, rows):
  log_path = tmp_path / "metrics.jsonl"
  log_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
  plot_training(log_path, tmp_path / "plot.png")
  width, height = png_size(tmp_path / "plot.png")
  assert width >= 400 and height >= 300


def test_plot_skips_a_cut_off_last_line_but_not_a_broken_middle_line(tmp_path):
  log_path = tmp_path / "metrics.jsonl"
  good = json.dumps({"kind": "train", "step": 1, "loss": 0.9})
  log_path.write_text(good + "\n" + '{"kind": "train", "st')  # killed mid-write
  assert read_metrics_log(log_path) == [{"kind": "train", "step": 1, "loss": 0.9}]
  plot_training(log_path, tmp_path / "plot.png")
  assert png_size(tmp_path / "plot.png")

  log_path.write_text('{"kind": "train", "st\n' + good + "\n")
  with pytest.raises(InputError, match=":1:"):
    read_metrics_log(log_path)
