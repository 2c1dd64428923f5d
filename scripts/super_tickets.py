#!/usr/bin/env python
"""Super tickets (SPEC.md §5) from a fine-tuned run: score every attention head and feed-forward
neuron per task, then write one ticket (per-task pruning masks) per sparsity.

  python scripts/train.py --config configs/single_task.py:rte --workdir runs/rte
  python scripts/super_tickets.py --workdir runs/rte --output_dir tickets/rte \
      --sparsities 0.1,0.2,0.3,0.4
  python scripts/train.py --config configs/super_tickets.py:rte --workdir runs/rte_ticket0.3 \
      --config.tickets.file=tickets/rte/ticket_0.3.json

The last step is the rewinding: a fresh fine-tuning run from the pre-trained encoder under the
ticket's masks; the super ticket is the sparsity at which it beats the full model on dev.
Multi-task ticket sharing: score a multi-task run (every task gets its own masks from its own
training loss), then train the multi-task config with the ticket; each batch uses its task's
masks, so the shared encoder is trained under their union.

Writes <output_dir>/importance.npz (each task's normalised head and neuron scores, read with
numpy, no pickles) and <output_dir>/ticket_<sparsity>.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtdnn_jax import cli  # noqa: E402


def fractions(text: str, field: str) -> list[float]:
  from mtdnn_jax.errors import InputError
  try:
    values = [float(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise InputError(None, f"expected comma-separated fractions, got {text!r}",
                     field=field) from None
  if not values or not all(0 <= v < 1 for v in values):
    raise InputError(None, f"each sparsity must be in [0, 1), got {text!r}", field=field)
  return values


def main():
  p = cli.parser(__doc__)
  p.add_argument("--workdir", required=True, help="a fine-tuned scripts/train.py workdir")
  p.add_argument("--which", choices=("best", "latest"), default="latest", help="checkpoint")
  p.add_argument("--output_dir", required=True, help="where importance.npz and tickets go")
  p.add_argument("--sparsities", default="0.1,0.2,0.3,0.4,0.5",
                 help="fractions of the attention heads to prune, one ticket each")
  p.add_argument("--ffn_sparsities", default="",
                 help="fractions of the feed-forward neurons, paired with --sparsities "
                      "(default: the same fractions)")
  p.add_argument("--tasks", default="", help="comma-separated (default: all the run's tasks)")
  p.add_argument("--split", default="train", help="the labelled split to score on")
  p.add_argument("--data_dir", help="canonical files (default: the run's data_dir)")
  p.add_argument("--max_batches", type=int, default=0, help="score on this many batches (0: all)")
  args = p.parse_args()

  import numpy as np

  from mtdnn_jax import tickets
  from mtdnn_jax.data.canonical import canonical_path, read_canonical
  from mtdnn_jax.data.features import tokenize_rows
  from mtdnn_jax.errors import InputError
  from mtdnn_jax.evaluate import TrainedRun
  from mtdnn_jax.fileio import atomic_file

  head_sparsities = fractions(args.sparsities, "--sparsities")
  ffn_sparsities = (fractions(args.ffn_sparsities, "--ffn_sparsities") if args.ffn_sparsities
                    else head_sparsities)
  if len(ffn_sparsities) != len(head_sparsities):
    raise InputError(None, f"{len(ffn_sparsities)} values for {len(head_sparsities)} "
                     "--sparsities", field="--ffn_sparsities")
  run = TrainedRun(args.workdir, args.which)
  names = [n.strip() for n in args.tasks.split(",") if n.strip()] or [t.name for t in run.tasks]
  data_dir = Path(args.data_dir or run.config.data_dir)
  importance = {}
  for name in names:
    task = run.tasks[run.task_id(name)]
    rows = read_canonical(canonical_path(data_dir, name, args.split), task)
    features = tokenize_rows(rows, task, run.tokenizer, run.config.max_seq_len)
    heads, ffn = tickets.unit_importance(run, name, features, args.max_batches)
    importance[name] = (tickets.normalise_per_layer(heads), tickets.normalise_per_layer(ffn))

  out = Path(args.output_dir)
  with atomic_file(out / "importance.npz", "wb") as f:
    np.savez(f, **{f"{name}_{kind}": scores for name, pair in importance.items()
                   for kind, scores in zip(("heads", "ffn"), pair)})
  source = f"{args.workdir} ({args.which} checkpoint, step {run.step}), {args.split} split"
  for head_sparsity, ffn_sparsity in zip(head_sparsities, ffn_sparsities):
    masks = {name: (tickets.prune_mask(h, head_sparsity), tickets.prune_mask(f, ffn_sparsity))
             for name, (h, f) in importance.items()}
    label = (f"{head_sparsity:g}" if head_sparsity == ffn_sparsity
             else f"{head_sparsity:g}_{ffn_sparsity:g}")
    path = out / f"ticket_{label}.json"
    tickets.write_ticket(path, masks, {"heads": head_sparsity, "ffn": ffn_sparsity}, source)
    print(f"{path}: {tickets.Tickets(masks, list(masks)).summary()}")


if __name__ == "__main__":
  cli.run(main, runs_models=True)
