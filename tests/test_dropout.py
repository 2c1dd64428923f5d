"""mtdnn_jax.models.dropout: jax's threefry, computed so XLA:CPU fuses it.

The truth is jax itself: `random_bits` / `bernoulli` must be `jax.random.bits` /
`jax.random.bernoulli` on the same keys, bit for bit, and `keep_mask` (what `Dropout` uses) the
16-bit pieces of jax's `threefry_2x32` on the counters its docstring names, recomputed here with
numpy; its statistics are checked against the binomial law."""
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


def expected_keep_mask(key, keep_prob, shape):
  """keep_mask's definition, from jax's threefry_2x32 and numpy."""
  *lead, length = shape if shape else (1,)
  hashes_per_row = -(-length // 4)
  counters = np.arange(int(np.prod(lead, dtype=np.int64)) * hashes_per_row, dtype=np.uint32)
  words = np.asarray(jax.extend.random.threefry_2x32(
      jax.random.key_data(key), np.concatenate([np.zeros_like(counters), counters])))
  first, second = words[:counters.size], words[counters.size:]
  pieces = [word.reshape(*lead, hashes_per_row) for word in
            (first & 0xFFFF, first >> 16, second & 0xFFFF, second >> 16)]
  # Row element j: piece j // hashes_per_row of the row's hash j % hashes_per_row.
  row = np.concatenate(pieces, axis=-1)[..., :length]
  return (row < round(keep_prob * 2**16)).reshape(shape)


@pytest.mark.parametrize("shape", SHAPES)
def test_keep_mask_is_the_hash_cut_in_four(shape):
  for key in (jax.random.key(3), jax.random.key(2**31 + 17), jax.random.PRNGKey(11)):
    for keep_prob in (0.9, 0.5, 0.37):
      keep, realised = jax.jit(dropout.keep_mask, static_argnums=(1, 2))(key, keep_prob, shape)
      assert keep.shape == shape and keep.dtype == jnp.bool_
      np.testing.assert_array_equal(keep, expected_keep_mask(key, keep_prob, shape))
      assert realised == round(keep_prob * 2**16) / 2**16


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dropout_keeps_the_mask_and_rescales_by_the_realised_probability(rate, dtype):
  x = jax.random.normal(jax.random.key(0), (3, 17, 40)).astype(dtype)
  rngs = {"dropout": jax.random.key(1)}
  assert dropout.Dropout(rate).apply({}, x, deterministic=True, rngs=rngs) is x
  got = dropout.Dropout(rate).apply({}, x, deterministic=False, rngs=rngs)
  # the key the module draws from its rng collection
  key = dropout.Dropout(rate).apply({}, rngs=rngs, method=lambda module: module.make_rng("dropout"))
  keep_prob = round((1 - rate) * 2**16) / 2**16
  keep = expected_keep_mask(key, 1 - rate, x.shape)
  expected = np.where(keep, np.asarray(x / keep_prob) if keep_prob else 0, 0)
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.asarray(got, np.float32), expected.astype(np.float32))


def test_dropout_keeps_one_minus_rate_unbiased_and_independent():
  n_rows, n_cols = 400, 500
  out = np.asarray(dropout.Dropout(0.1).apply({}, jnp.ones((n_rows, n_cols)), deterministic=False,
                                              rngs={"dropout": jax.random.key(3)}))
  kept = out != 0
  sigma = np.sqrt(0.09 / kept.size)
  assert abs(kept.mean() - 0.9) < 5 * sigma  # 5 standard deviations
  np.testing.assert_allclose(out[kept], 2**16 / round(0.9 * 2**16), rtol=1e-6)
  assert abs(out.mean() - 1.0) < 5 * sigma / 0.9  # the expected output is the input
  # The four elements one hash serves (a quarter of the row apart) and those of its neighbour
  # (the next element of each quarter) are uncorrelated.
  quarter = n_cols // 4
  by_hash = kept.reshape(n_rows, 4, quarter)[:, :, :quarter // 2 * 2]
  groups = by_hash.reshape(n_rows, 4, -1, 2).transpose(0, 2, 1, 3).reshape(-1, 8)
  groups = groups.astype(np.float64)
  correlation = np.corrcoef(groups, rowvar=False)
  off_diagonal = correlation[~np.eye(8, dtype=bool)]
  assert np.abs(off_diagonal).max() < 5 / np.sqrt(groups.shape[0])


def test_the_mask_differs_between_keys_and_layers():
  keep_a, _ = dropout.keep_mask(jax.random.key(0), 0.5, (64, 64))
  keep_b, _ = dropout.keep_mask(jax.random.key(1), 0.5, (64, 64))
  assert 0.4 < float(jnp.mean(keep_a != keep_b)) < 0.6  # independent masks differ on half


def test_keep_mask_with_other_prng_implementations_is_jax_bernoulli():
  key = jax.random.key(4, impl="rbg")
  keep, keep_prob = dropout.keep_mask(key, 0.8, (50,))
  np.testing.assert_array_equal(keep, jax.random.bernoulli(key, 0.8, (50,)))
  assert keep_prob == 0.8


def test_the_mask_compiles_without_a_loop():
  """What makes it fast on CPU: jax's threefry there is a `while` of 5 passes; ours is not."""
  def compiled_hlo(draw):
    return jax.jit(lambda key: draw(key, 0.9, (8, 128, 64))).lower(
        jax.random.key(0)).compile().as_text()

  assert "while" in compiled_hlo(jax.random.bernoulli) or jax.default_backend() != "cpu"
  assert "while" not in compiled_hlo(dropout.bernoulli)
  assert "while" not in compiled_hlo(lambda key, p, shape: dropout.keep_mask(key, p, shape)[0])
