"""What every command-line entry point shares: bad input ends in one clear line and exit 2."""
from __future__ import annotations

import sys
from typing import Callable

from mtdnn_jax.errors import InputError


def run(main: Callable[[], None]) -> None:
  try:
    main()
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
