"""mtdnn_jax.models.dropout draws jax's own threefry masks, computed so XLA:CPU fuses them.

The truth is jax itself: `jax.random.bits` / `jax.random.bernoulli` and flax's `nn.Dropout` on
the same keys must give the same bits, masks and outputs, bit for bit."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdnn_jax.models import dropout

SHAPES = [(), (1,), (7,), (3, 5, 11), (2, 12, 16, 16), (4, 128, 96)]


@pytest.mark.parametrize("shape", SHAPES)
def test_random_bits_are_jax_threefry_bits(shape):
  for key in (jax.random.key(3), jax.random.key(2**31 + 17), jax.random.PRNGKey(11)):
    expected = jax.random.bits(key, shape, jnp.uint32)
    got = jax.jit(dropout.random_bits, static_argnums=1)(key, shape)
    assert got.dtype == jnp.uint32 and got.shape == shape
    np.testing.assert_array_equal(got, expected)


def test_the_hash_is_jax_threefry2x32_on_arbitrary_counters():
  rng = np.random.default_rng(0)
  key1, key2, hi, lo = (jnp.asarray(rng.integers(0, 2**32, 257, dtype=np.uint64), jnp.uint32)
                        for _ in range(4))
  for k1, k2 in ((key1[0], key2[0]), (np.uint32(0), np.uint32(0)), (key1[5], key2[9])):
    expected = jax.extend.random.threefry_2x32(jnp.stack([k1, k2]), jnp.concatenate([hi, lo]))
    got = dropout.threefry2x32(k1, k2, hi, lo)
    np.testing.assert_array_equal(jnp.concatenate(got), expected)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_bernoulli_is_jax_bernoulli(p):
  for key in (jax.random.key(5), jax.random.PRNGKey(5)):
    np.testing.assert_array_equal(dropout.bernoulli(key, p, (64, 33)),
                                  jax.random.bernoulli(key, p, (64, 33)))


def test_bernoulli_with_a_probability_per_row():
  p = jnp.asarray([0.0, 0.1, 0.5, 0.97], jnp.float32)[:, None]
  key = jax.random.key(9)
  np.testing.assert_array_equal(dropout.bernoulli(key, p, (4, 500)),
                                jax.random.bernoulli(key, p, (4, 500)))


def test_other_prng_implementations_go_through_jax():
  key = jax.random.key(4, impl="rbg")
  np.testing.assert_array_equal(dropout.bernoulli(key, 0.8, (50,)),
                                jax.random.bernoulli(key, 0.8, (50,)))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dropout_is_flax_dropout(rate, dtype):
  x = jax.random.normal(jax.random.key(0), (3, 17, 40)).astype(dtype)
  rngs = {"dropout": jax.random.key(1)}
  for deterministic in (False, True):
    expected = nn.Dropout(rate).apply({}, x, deterministic=deterministic, rngs=rngs)
    got = dropout.Dropout(rate).apply({}, x, deterministic=deterministic, rngs=rngs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_dropout_keeps_one_minus_rate_and_rescales():
  out = dropout.Dropout(0.1).apply({}, jnp.ones((400, 500)), deterministic=False,
                                   rngs={"dropout": jax.random.key(3)})
  kept = np.asarray(out) != 0
  assert abs(kept.mean() - 0.9) < 5 * np.sqrt(0.09 / kept.size)  # 5 standard deviations
  np.testing.assert_allclose(np.asarray(out)[kept], 1 / 0.9, rtol=1e-6)


def test_the_mask_compiles_without_a_loop():
  """What makes it fast on CPU: jax's threefry there is a `while` of 5 passes; ours is not."""
  def compiled_hlo(draw):
    return jax.jit(lambda key: draw(key, 0.9, (8, 128, 64))).lower(
        jax.random.key(0)).compile().as_text()

  assert "while" in compiled_hlo(jax.random.bernoulli) or jax.default_backend() != "cpu"
  assert "while" not in compiled_hlo(dropout.bernoulli)
