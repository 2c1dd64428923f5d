"""What only a GPU can check: cuDNN's fused attention (`attention_impl="cudnn"`, which the
benchmark and GPU users evaluate with) against our written-out attention. Skipped where JAX has
no GPU (CI); `scripts/gpu_check.sh run` runs this file first on a lent GPU machine. Needs neither
PyTorch nor the packaged model, which that machine may lack."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdnn_jax.models import BertEncoder, EncoderConfig

pytestmark = pytest.mark.skipif(jax.devices()[0].platform != "gpu", reason="needs a GPU")

CONFIG = EncoderConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=512, max_position_embeddings=128)  # head_dim 64


def _batch(lengths, seq=128):
  rng = np.random.default_rng(0)
  ids = rng.integers(5, CONFIG.vocab_size, (len(lengths), seq)).astype(np.int32)
  mask = (np.arange(seq)[None] < np.array(lengths)[:, None]).astype(np.int32)
  segments = (np.arange(seq)[None] >= np.array(lengths)[:, None] // 2).astype(np.int32) * mask
  return ids * mask, segments, mask


@pytest.mark.parametrize("cls_only", [False, True], ids=["every_position", "cls_only"])
def test_cudnn_attention_matches_ours_at_real_tokens(cls_only):
  """bfloat16 both ways, padding on the right (cuDNN takes it as sequence lengths): the two
  agree at every real token to bfloat16's rounding over two layers (the outputs are
  LayerNormed, order 1)."""
  ids, segments, mask = _batch([128, 97, 40, 3])
  params = BertEncoder(CONFIG).init(jax.random.PRNGKey(0), ids, segments, mask)["params"]
  outputs = {}
  for impl in ("xla", "cudnn"):
    encoder = BertEncoder(CONFIG, dtype=jnp.bfloat16, attention_impl=impl, cls_only=cls_only)
    out = jax.jit(encoder.apply)({"params": params}, ids, segments, mask)
    outputs[impl] = np.asarray(out.last_hidden_state.astype(jnp.float32))
  real = mask.astype(bool)[:, :outputs["xla"].shape[1]]
  ours, cudnn = outputs["xla"][real], outputs["cudnn"][real]
  assert np.abs(ours - cudnn).max() < 0.1
  assert np.linalg.norm(ours - cudnn) / np.linalg.norm(ours) < 1e-2


def test_cudnn_attention_is_the_fused_kernel_at_evaluation_only():
  """The compiled evaluation holds cuDNN's attention call; training (dropout on the
  probabilities, which that kernel lacks) keeps ours."""
  ids, segments, mask = _batch([128, 64])
  params = BertEncoder(CONFIG).init(jax.random.PRNGKey(0), ids, segments, mask)["params"]
  encoder = BertEncoder(CONFIG, dtype=jnp.bfloat16, attention_impl="cudnn")
  evaluation = jax.jit(encoder.apply).lower({"params": params}, ids, segments, mask)
  assert "cudnn$fmha" in evaluation.compile().as_text()
  loss = lambda p, rng: encoder.apply({"params": p}, ids, segments, mask, deterministic=False,
                                      rngs={"dropout": rng}).last_hidden_state.sum()
  training = jax.jit(jax.grad(loss)).lower(params, jax.random.PRNGKey(1))
  assert "cudnn$fmha" not in training.compile().as_text()
