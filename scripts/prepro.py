"""Raw datasets → canonical TSV files → tokenized feature cache.

  python scripts/prepro.py --task_def configs/task_defs/glue.yml \
      --raw_dir ../shared/data/glue --output_dir data/glue \
      --model_dir path/to/bert  [--tasks rte stsb] [--max_seq_len 512]

writes `<output_dir>/<task>_<split>.tsv` for every split of every task whose raw file exists
(splits not on disk are listed and skipped), then, when a tokenizer is given (--model_dir, or
--vocab with --[no-]do_lower_case), `<output_dir>/features/<task>_<split>.npz`, rebuilding only
caches whose inputs changed. Domain adaptation: `--train_fractions 0.001 0.01 0.1` also writes
`<task>_train_0.1pct.tsv` etc., drawn with --seed. `--source tfds` reads TFDS instead of
--raw_dir (`--tfds_data_dir`, nothing is downloaded).
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from mtdnn_jax.data import raw  # noqa: E402
from mtdnn_jax.data.features import load_or_build_features  # noqa: E402
from mtdnn_jax.errors import InputError  # noqa: E402
from mtdnn_jax.pretrained import resolve_model_dir  # noqa: E402
from mtdnn_jax.tasks import load_task_defs  # noqa: E402
from mtdnn_jax.tokenization import Tokenizer, TokenizerSettings  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task_def", required=True, help="task-definition YAML file")
  parser.add_argument("--output_dir", required=True, help="where canonical files go")
  parser.add_argument("--raw_dir", help="the raw datasets (GLUE's download layout, snli_1.0/, "
                      "SciTailV1.1/); required with --source raw")
  parser.add_argument("--source", choices=("raw", "tfds"), default="raw")
  parser.add_argument("--tfds_data_dir", help="TFDS data directory (--source tfds)")
  parser.add_argument("--tasks", nargs="+", help="tasks to prepare (default: all in --task_def)")
  parser.add_argument("--train_fractions", nargs="+", type=float, default=[],
                      help="also write random subsets of train of these fractions")
  parser.add_argument("--seed", type=int, default=13, help="seed of the train subsets")
  tokenizer = parser.add_mutually_exclusive_group()
  tokenizer.add_argument("--model_dir", help="a model directory (or packaged:<name>) with vocab.txt and "
                         "tokenizer_config.json; tokenizes into the feature cache")
  tokenizer.add_argument("--vocab", help="a BERT vocab.txt; tokenizes into the feature cache")
  parser.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=True,
                      help="with --vocab: lower-case and strip accents (uncased models)")
  parser.add_argument("--max_seq_len", type=int, default=512)
  args = parser.parse_args(argv)
  if args.source == "raw" and not args.raw_dir:
    parser.error("--raw_dir is required with --source raw")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    run(args)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def run(args: argparse.Namespace) -> None:
  task_defs = load_task_defs(args.task_def)
  names = args.tasks or list(task_defs)
  unknown = [n for n in names if n not in task_defs]
  if unknown:
    raise InputError(args.task_def, f"defines no task(s) {unknown} (it has {list(task_defs)})")
  if args.vocab:
    tokenizer = Tokenizer(args.vocab, TokenizerSettings(do_lower_case=args.do_lower_case))
  elif args.model_dir:
    tokenizer = Tokenizer.from_model_dir(resolve_model_dir(args.model_dir))
  else:
    tokenizer = None
  output_dir = Path(args.output_dir)
  for name in names:
    task = task_defs[name]
    written = []
    for split in task.split_names:
      skipped = collections.Counter()
      if args.source == "tfds":
        from mtdnn_jax.data.tfds_source import convert_tfds_split
        count = convert_tfds_split(task, split, args.tfds_data_dir, output_dir, skipped)
      else:
        source = raw.raw_file(task, split, args.raw_dir)
        if not source.is_file():
          print(f"{name}_{split}: {source} not found, skipped")
          continue
        count = raw.convert_split(task, split, args.raw_dir, output_dir, skipped)
      notes = "".join(f"; skipped {n} {reason}" for reason, n in sorted(skipped.items()))
      print(f"{name}_{split}: {count} rows{notes}")
      written.append(split)
    if args.train_fractions and "train" in written:
      for split, count in raw.write_train_subsets(task, output_dir, args.train_fractions,
                                                  args.seed).items():
        print(f"{name}_{split}: {count} rows (seed {args.seed})")
        written.append(split)
    if tokenizer is not None:
      for split in written:
        features, built = load_or_build_features(task, split, output_dir, output_dir / "features",
                                                 tokenizer, args.max_seq_len)
        print(f"{name}_{split}: {len(features)} examples tokenized"
              + ("" if built else " (cached)"))


if __name__ == "__main__":
  sys.exit(main())
