"""mtdnn_jax/runtime.py: scripts re-execute themselves under jemalloc when it is installed."""
import os
import subprocess
import sys

import pytest

from mtdnn_jax import runtime
from tests.conftest import REPO

PROBE = ("from mtdnn_jax import runtime; runtime.use_fast_allocator(); import os; "
         "print(repr(os.environ.get('LD_PRELOAD', '')), repr(os.environ.get('MALLOC_CONF', '')))")


def probe(**env_changes) -> tuple[str, str]:
  env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF",
                                                          runtime.ALLOCATOR_ENV)}
  env.update(env_changes)
  done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True,
                        text=True, check=True)
  preload, conf = (eval(x) for x in done.stdout.split())  # the two reprs printed above
  return preload, conf + done.stderr


def test_preloads_jemalloc_once_and_keeps_user_settings():
  library = runtime.find_jemalloc()
  if library is None:
    pytest.skip("libjemalloc is not installed here (scripts/install.sh installs it when root)")
  preload, conf = probe(MALLOC_CONF="narenas:2")
  assert preload == library  # once: the re-executed process does not preload it again
  # Ours first, the user's after, so theirs win where they overlap (jemalloc reads in order).
  assert conf.startswith(runtime.JEMALLOC_CONF + ",narenas:2")


def test_system_allocator_on_request():
  assert probe(**{runtime.ALLOCATOR_ENV: "system"})[0] == ""


def test_a_missing_library_is_named_and_the_run_goes_on():
  preload, stderr = probe(**{runtime.ALLOCATOR_ENV: "/nonexistent/libjemalloc.so"})
  assert preload == ""
  assert "/nonexistent/libjemalloc.so is not a file" in stderr
