#!/usr/bin/env python
"""Strip a training run down to its encoder: a model directory, as the converters write.

  python scripts/strip_model.py --workdir runs/mtl --output models/mtdnn

Takes the best checkpoint (by the run's dev metric), or --which latest. The task heads are
dropped (released MT-DNN models are the encoder alone); the vocabulary and tokenizer settings
come from the model directory the run started from. A run trained under a super ticket is
exported as one task's pruned encoder (its pruned heads' and neurons' output rows zeroed, so the
model directory computes what the run computed for that task): --task picks it when the run has
several.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtdnn_jax import cli  # noqa: E402


def main():
  p = cli.parser(__doc__)
  p.add_argument("--workdir", required=True, help="a scripts/train.py workdir")
  p.add_argument("--which", choices=("best", "latest"), default="best")
  p.add_argument("--task", help="a super-ticket run: whose ticket the encoder is exported under")
  cli.add_output_args(p)
  args = p.parse_args()

  import jax
  import numpy as np

  from mtdnn_jax.checkpoint import Checkpoints
  from mtdnn_jax.errors import InputError
  from mtdnn_jax.model_dir import load_model_dir, save_model_dir
  from mtdnn_jax.pretrained import resolve_model_dir
  from mtdnn_jax.tickets import WORKDIR_TICKET, Tickets
  from mtdnn_jax.tokenization import read_vocab

  workdir = Path(args.workdir)
  config_path = workdir / "config.json"
  if not config_path.is_file():
    raise InputError(config_path, "not a training workdir (no config.json)")
  run_config = json.loads(config_path.read_text())
  origin = load_model_dir(resolve_model_dir(run_config["model_dir"]))
  checkpoints = Checkpoints(workdir, asynchronous=False)
  step, params = checkpoints.restore_params(args.which)
  checkpoints.close()
  encoder, ticket_task = params["encoder"], None
  if (workdir / WORKDIR_TICKET).is_file():
    tasks = [t.strip() for t in str(run_config["tasks"]).split(",") if t.strip()]
    ticket_task = args.task or (tasks[0] if len(tasks) == 1 else None)
    if ticket_task not in tasks:
      raise InputError(None, f"the run trained under a super ticket with a mask per task: name "
                       f"the task to export ({', '.join(tasks)})", field="--task")
    ticket = Tickets.load(workdir / WORKDIR_TICKET, tasks, origin.config)
    encoder = ticket.apply(params, tasks.index(ticket_task))["encoder"]
  save_model_dir(args.output, config=origin.config,
                 params=jax.tree.map(np.asarray, encoder),
                 vocab=read_vocab(origin.path / "vocab.txt"),
                 tokenizer_settings=origin.tokenizer_settings, overwrite=args.overwrite,
                 provenance={"source": str(workdir), "source_format": "mtdnn_jax training run",
                             "checkpoint": args.which, "step": step,
                             "tasks": run_config["tasks"], "initial_model": run_config["model_dir"],
                             **({"super_ticket_of": ticket_task} if ticket_task else {})})
  print(f"wrote the encoder of {workdir} ({args.which} checkpoint, step {step}) to {args.output}")


if __name__ == "__main__":
  cli.run(main)
