#!/usr/bin/env python
"""Score a file with a trained MT-DNN: predictions and scores, and metrics when it is labelled.

  python scripts/predict.py --workdir runs/mtl --task rte --input data/glue/rte_dev.tsv \
      --output rte_dev_scores.json
  python scripts/predict.py --workdir runs/mtl --task rte --raw_dir glue_data --split test \
      --output rte_test_scores.json --glue_submission RTE.tsv

--input is a canonical file of the task; --raw_dir/--split read the raw dataset layout
(GLUE, SNLI, SciTail) instead. Test splits carry no gold labels, so they get no metrics.
Evaluation is the training run's own jitted, length-bucketed batch evaluation.
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtdnn_jax import cli  # noqa: E402


def main():
  p = cli.parser(__doc__)
  p.add_argument("--workdir", required=True, help="a scripts/train.py workdir")
  p.add_argument("--which", choices=("best", "latest"), default="best", help="checkpoint")
  p.add_argument("--task", required=True, help="one of the run's tasks")
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--input", help="a canonical TSV of the task")
  source.add_argument("--raw_dir", help="the raw dataset folder (with --split)")
  p.add_argument("--split", help="with --raw_dir: which split to read")
  p.add_argument("--output", required=True, help="score file to write (JSON)")
  p.add_argument("--glue_submission", help="also write GLUE's index/prediction TSV here")
  args = p.parse_args()

  from mtdnn_jax.data.canonical import read_canonical
  from mtdnn_jax.data.features import tokenize_rows
  from mtdnn_jax.data.raw import Skipped, convert_split
  from mtdnn_jax.errors import InputError
  from mtdnn_jax.evaluate import TrainedRun
  from mtdnn_jax.submission import write_glue_submission, write_score_file
  from mtdnn_jax.tasks import is_test_split

  run = TrainedRun(args.workdir, args.which)
  task = run.tasks[run.task_id(args.task)]
  if args.raw_dir:
    if not args.split:
      raise InputError(None, "needed with --raw_dir", field="--split")
    with tempfile.TemporaryDirectory() as tmp:
      convert_split(task, args.split, args.raw_dir, tmp, Skipped())
      rows = read_canonical(Path(tmp) / f"{task.name}_{args.split}.tsv", task)
    split = args.split
  else:
    rows = read_canonical(args.input, task)
    split = Path(args.input).stem

  features = tokenize_rows(rows, task, run.tokenizer, run.config.max_seq_len)
  predictions = run.predict(task.name, features)
  step = run.step
  metrics = {} if is_test_split(split) else predictions.metrics(task)
  write_score_file(args.output, task=task, uids=predictions.uids,
                   predictions=predictions.predictions, scores=predictions.scores, metrics=metrics)
  if args.glue_submission:
    write_glue_submission(args.glue_submission, task=task, uids=predictions.uids,
                          predictions=predictions.predictions, scores=predictions.scores)
  summary = ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()) or "no gold labels"
  print(f"{len(predictions.uids)} examples of {task.name} scored with the {args.which} "
        f"checkpoint (step {step}): {summary}; wrote {args.output}")


if __name__ == "__main__":
  cli.run(main, runs_models=True)
