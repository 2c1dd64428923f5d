"""What every command-line entry point shares: bad input ends in one clear line and exit 2."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from mtdnn_jax import runtime
from mtdnn_jax.errors import InputError


def run(main: Callable[[], None], runs_models: bool = False) -> None:
  """Runs `main`; InputError → one line on stderr and exit 2. Scripts that run a model pass
  `runs_models=True` to get the fast CPU settings first (mtdnn_jax/runtime.py)."""
  if runs_models:
    runtime.use_fast_cpu_settings()
  try:
    main()
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def parser(doc: str) -> argparse.ArgumentParser:
  """A parser whose --help shows the script's docstring (its usage examples) as written."""
  return argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def add_output_args(p: argparse.ArgumentParser, what: str = "model directory to write") -> None:
  p.add_argument("--output", required=True, help=what)
  p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def add_do_lower_case_arg(p: argparse.ArgumentParser, default: str) -> None:
  p.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=None,
                 help=f"lower-case text before WordPiece (default: {default})")
