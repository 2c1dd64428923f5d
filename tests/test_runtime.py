"""mtdnn_jax/runtime.py: scripts re-execute themselves under jemalloc when it is installed, and
ask XLA:CPU for oneDNN matmuls on x86-64 (the same results as XLA's own kernels)."""
import os
import subprocess
import sys

import pytest

from mtdnn_jax import runtime
from tests.conftest import REPO

PROBE = ("from mtdnn_jax import runtime; runtime.use_fast_allocator(); import os; "
         "print(repr(os.environ.get('LD_PRELOAD', '')), repr(os.environ.get('MALLOC_CONF', '')))")


def python(code: str, unset: tuple[str, ...], **env_changes) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh Python whose environment lacks `unset` and has `env_changes`."""
  env = {k: v for k, v in os.environ.items() if k not in unset}
  env.update(env_changes)
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, check=True)


def probe(**env_changes) -> tuple[str, str]:
  done = python(PROBE, ("LD_PRELOAD", "MALLOC_CONF", runtime.ALLOCATOR_ENV), **env_changes)
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


FLAGS_PROBE = ("from mtdnn_jax import runtime; runtime.use_onednn_matmuls(); import os; "
               "print(repr(os.environ.get('XLA_FLAGS', '')))")


ONEDNN_SETTINGS = ("XLA_FLAGS", runtime.MATMULS_ENV)


def xla_flags_after(stderr: list | None = None, **env_changes) -> str:
  done = python(FLAGS_PROBE, ONEDNN_SETTINGS, **env_changes)
  if stderr is not None:
    stderr.append(done.stderr)
  return eval(done.stdout)  # the repr printed above


needs_onednn_flags = pytest.mark.skipif(not runtime.onednn_flags_supported(),
                                        reason="oneDNN flags are set on x86-64 only")


@needs_onednn_flags
def test_onednn_flags_join_the_users_and_theirs_win():
  each_dot = "--xla_cpu_experimental_onednn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
  assert xla_flags_after() == "--xla_cpu_use_onednn=true " + each_dot
  mine = "--xla_force_host_platform_device_count=2 --xla_cpu_use_onednn=false"
  assert xla_flags_after(XLA_FLAGS=mine) == mine + " " + each_dot
  assert xla_flags_after(**{runtime.MATMULS_ENV: "xla"}) == ""
  said = []
  assert xla_flags_after(said, **{runtime.MATMULS_ENV: "XLA "}) == xla_flags_after()
  assert "MTDNN_JAX_CPU_MATMULS=XLA  is neither 'xla' nor 'onednn'" in said[0]


@needs_onednn_flags
def test_the_installed_xla_takes_the_flags_and_hands_dots_to_onednn():
  # A jaxlib whose XLA lacked a flag would abort this process (ONEDNN_CHECKED_JAXLIB guards it).
  probe = ("from mtdnn_jax import runtime; runtime.use_onednn_matmuls(); import jax; "
           "x = jax.numpy.ones((64, 64)); "
           "print(jax.jit(lambda x: x @ x).lower(x).compile().as_text().count('onednn_fusion'))")
  assert int(python(probe, ONEDNN_SETTINGS).stdout) > 0


CHAINED_DOTS_PROBE = """
from mtdnn_jax import runtime; runtime.use_onednn_matmuls()
import jax, jax.numpy as jnp, numpy as np
rng = np.random.default_rng(0)
x, w = rng.standard_normal((64, 32), np.float32), rng.standard_normal((32, 32), np.float32) / 6
q = rng.standard_normal((2, 16, 4, 8), np.float32)
def attention(q):  # two dots around a softmax, as BERT's attention at evaluation
  return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(jnp.einsum("btnh,bsnh->bnts", q, q)), q)
# Only elementwise work between the dots: the grouped type made one oneDNN graph of them.
chain = jax.jit(lambda x, w: (x @ w + 1.0) @ w).lower(x, w).compile()
assert "onednn_fusion" in chain.as_text()
np.testing.assert_allclose(chain(x, w), (x @ w + 1.0) @ w, rtol=1e-4, atol=1e-4)
logits = np.einsum("btnh,bsnh->bnts", q, q)
probs = np.exp(logits - logits.max(-1, keepdims=True))
probs /= probs.sum(-1, keepdims=True)
np.testing.assert_allclose(jax.jit(attention)(q), np.einsum("bnts,bsnh->btnh", probs, q),
                           rtol=1e-4, atol=1e-4)
print("ok")
"""


@needs_onednn_flags
def test_chained_dots_compile_and_compute_under_the_flags():
  # With the grouped fusion type, oneDNN got both dots of a chain in one graph and failed to
  # compile it on an AVX2 host, killing the process (ONEDNN_OPTIONS says more).
  assert python(CHAINED_DOTS_PROBE, ONEDNN_SETTINGS).stdout.strip() == "ok"


@needs_onednn_flags
def test_onednn_kernels_compute_the_encoder_and_its_gradient_as_xla_does():
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np

  from mtdnn_jax.models import bert
  from mtdnn_jax.models.config import EncoderConfig
  config = EncoderConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=256, max_position_embeddings=32)
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(1, 200, (3, 32)), jnp.int32)
  mask = jnp.asarray(np.arange(32)[None] < np.array([32, 20, 5])[:, None], jnp.int32)
  encoder = bert.BertEncoder(config)
  params = nn.unbox(encoder.init(jax.random.key(0), ids, jnp.zeros_like(ids), mask)["params"])
  projection = jnp.asarray(rng.standard_normal((3, 32, 64)), jnp.float32)

  def loss(p):  # a random projection of every hidden state: every parameter gets a gradient
    hidden = encoder.apply({"params": p}, ids, jnp.zeros_like(ids), mask).last_hidden_state
    return (hidden * projection).sum()

  compiled = {name: jax.jit(jax.value_and_grad(loss)).lower(params).compile(options)
              for name, options in {"xla": {}, "onednn": runtime.ONEDNN_OPTIONS}.items()}
  assert "onednn_fusion" in compiled["onednn"].as_text()
  assert "onednn_fusion" not in compiled["xla"].as_text()
  (xla_loss, xla_grads), (onednn_loss, onednn_grads) = (c(params) for c in compiled.values())
  np.testing.assert_allclose(onednn_loss, xla_loss, rtol=1e-5)
  for path, expected in jax.tree_util.tree_leaves_with_path(xla_grads):
    got = dict(jax.tree_util.tree_leaves_with_path(onednn_grads))[path]
    scale = float(jnp.abs(expected).max())
    if scale > 1e-3:  # the key bias's gradient is zero in exact arithmetic (softmax shift)
      np.testing.assert_allclose(got, expected, atol=1e-5 * scale, err_msg=str(path))


@needs_onednn_flags
def test_a_compilation_cache_with_onednn_says_so_once_instead_of_warning_per_compile(tmp_path):
  probe = ("import warnings; warnings.simplefilter('default'); "
           "from mtdnn_jax import distributed, runtime; runtime.use_onednn_matmuls(); "
           "config = distributed.default_distributed_config(); "
           f"config.compilation_cache_dir = {str(tmp_path)!r}; distributed.initialize(config); "
           "import jax; jax.config.update('jax_persistent_cache_min_compile_time_secs', 0); "
           "x = jax.numpy.ones((64, 64)); [jax.jit(f)(x).block_until_ready() "
           "for f in (lambda x: x @ x, lambda x: x @ x.T)]")
  done = python(probe, (*ONEDNN_SETTINGS, "JAX_COMPILATION_CACHE_DIR"))
  assert done.stderr.count("not kept in the compilation cache") == 1
  assert "Error writing persistent compilation cache" not in done.stderr
