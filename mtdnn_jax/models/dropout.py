"""Dropout whose random bits XLA:CPU computes in one fused pass, four masks per hash.

jax lowers its threefry hash on CPU as a 5-iteration loop (smaller programs), and XLA:CPU runs
each iteration as a separate pass that writes two uint32 arrays the size of the activations to
memory and reads them back; a dropout mask then costs ~10 passes over memory. Here the same
hash is written out as plain element-wise operations, which XLA fuses with the comparison and
the select into one pass (`random_bits`, `bernoulli`: bit for bit jax's, tests/test_dropout.py).

`Dropout` goes one step further: jax spends one 64-bit threefry output on every element (and
keeps 32 bits of it), while a keep/drop decision at a rate like 0.1 needs far fewer. `keep_mask`
cuts each output into four 16-bit uniforms, so one hash serves four elements: a quarter of the
integer work, which was most of what dropout still cost (MiniLM train step 1.04x, BERT-base
1.02x in one-process A/Bs, about all the bound of no dropout at all; docs/PERFORMANCE.md).
The rate is then a multiple of 2**-16 (0.1 becomes 0.100006) and the kept values are scaled by
the realised keep probability, so the expected output is still exactly the input. The masks
are no longer those of `flax.linen.Dropout` on the same key. Keys of another implementation
(`rbg`, `unsafe_rbg`) go through `jax.random.bernoulli` unchanged.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
# SC 2011): rotation distances of the even and odd groups of four rounds, and the key-schedule
# parity constant.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x, distance: int):
  return (lax.shift_left(x, np.uint32(distance))
          | lax.shift_right_logical(x, np.uint32(32 - distance)))


def threefry2x32(key1, key2, count_hi, count_lo):
  """The Threefry-2x32 hash of the counter pairs (`count_hi`, `count_lo`) under the key
  (`key1`, `key2`); all uint32, the counters of any one shape. Equal to jax's
  `threefry2x32_p`, as element-wise operations only."""
  schedule = (key1, key2, key1 ^ key2 ^ _KEY_PARITY)
  x1, x2 = count_hi + schedule[0], count_lo + schedule[1]
  for group in range(5):
    for distance in _ROTATIONS[group % 2]:
      x1 = x1 + x2
      x2 = x1 ^ _rotate_left(x2, distance)
    x1 = x1 + schedule[(group + 1) % 3]
    x2 = x2 + schedule[(group + 2) % 3] + np.uint32(group + 1)
  return x1, x2


def _is_threefry(key) -> bool:
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return str(jax.random.key_impl(key)) == "threefry2x32"
  return jax.config.jax_default_prng_impl == "threefry2x32"  # a raw uint32[2] key


def _hash_flat_index(key, shape: tuple[int, ...]):
  """The two threefry words of each element's flat (row-major) index under `key`, the index a
  64-bit counter whose high half is 0. It is built from one iota per axis, as jax builds it, so
  the SPMD partitioner can shard it like the activations."""
  key1, key2 = jax.random.key_data(key)  # typed keys and raw uint32[2] keys alike
  strides = [math.prod(shape[axis + 1:]) for axis in range(len(shape))]
  index = jnp.zeros(shape, jnp.uint32)
  for axis, stride in enumerate(strides):
    index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
  return threefry2x32(key1, key2, jnp.zeros(shape, jnp.uint32), index)


def random_bits(key, shape: tuple[int, ...]) -> jax.Array:
  """`jax.random.bits(key, shape, jnp.uint32)` for a threefry key, computed element-wise.

  jax hashes each element's flat index (`_hash_flat_index`) and returns the xor of the two
  output words."""
  if math.prod(shape) >= 2**32:  # the high counter word would not be 0
    raise ValueError(f"random_bits: {shape} has 2**32 elements or more")
  high, low = _hash_flat_index(key, shape)
  return high ^ low


def bernoulli(key, p, shape: tuple[int, ...]) -> jax.Array:
  """`jax.random.bernoulli(key, p, shape)`, bit for bit, for float32 `p` (a scalar or an
  array that broadcasts to `shape`)."""
  if not _is_threefry(key):
    return jax.random.bernoulli(key, p, shape)
  # jax's uniform in [0, 1): 23 random mantissa bits under the exponent of 1.0, minus 1.
  mantissa = lax.shift_right_logical(random_bits(key, shape), np.uint32(32 - 23))
  uniform = lax.bitcast_convert_type(mantissa | np.float32(1.0).view(np.uint32), jnp.float32) - 1.0
  return uniform < jnp.asarray(p, jnp.float32)


# One threefry output (two uint32 words) cut into four 16-bit uniforms: one hash per 4 elements.
_PIECES_PER_HASH = 4
_PIECE_LEVELS = 2**16


def keep_mask(key, keep_prob: float, shape: tuple[int, ...]) -> tuple[jax.Array, float]:
  """A dropout keep-mask of `shape` whose elements are kept with probability `keep_prob`
  rounded to a multiple of 2**-16, and that probability (what to divide the kept values by).

  For a threefry key, with each last-axis row cut into four quarters of q = ceil(shape[-1] / 4)
  elements (the last one short when 4 does not divide the row), element j of a row is kept
  when the 16-bit piece j // q of the hash of its row's counter j % q is below
  round(keep_prob·2**16); the counters are the flat indices of [*shape[:-1], q]
  (`_hash_flat_index`). The hash array is a quarter of the activations', which is why the
  saving survives fusion: XLA computes it once per four elements. Each piece fills a quarter of
  the row, so XLA writes the mask as four contiguous runs rather than four-way interleaved
  (MiniLM's train step 1.03-1.04x on a Xeon with AMX, docs/PERFORMANCE.md). The pieces are, in
  order, the low and high halves of the first output word, then of the second. Other keys:
  `jax.random.bernoulli` and `keep_prob` itself."""
  if not _is_threefry(key):
    return jax.random.bernoulli(key, keep_prob, shape), keep_prob
  pieces, realised = kept_pieces(key, keep_prob, shape)
  keep = jnp.concatenate(pieces, axis=-1)[..., :(shape[-1] if shape else 1)]
  return keep.reshape(shape), realised


def kept_pieces(key, keep_prob: float, shape: tuple[int, ...]) -> tuple[list[jax.Array], float]:
  """`keep_mask`'s four decisions per hash, in piece order, each [*shape[:-1], ceil(shape[-1] /
  4)] (a scalar `shape` counts as (1,)), and the realised keep probability; for a threefry key."""
  threshold = min(max(round(keep_prob * _PIECE_LEVELS), 0), _PIECE_LEVELS)
  *lead, length = shape if shape else (1,)
  hashed_shape = (*lead, -(-length // _PIECES_PER_HASH))
  if math.prod(hashed_shape) >= 2**32:  # the high counter word would not be 0
    raise ValueError(f"keep_mask: {shape} needs 2**32 hashes or more")
  words = _hash_flat_index(key, hashed_shape)
  low_half = np.uint32(_PIECE_LEVELS - 1)
  pieces = [part for word in words
            for part in (word & low_half, lax.shift_right_logical(word, np.uint32(16)))]
  return [piece < np.uint32(threshold) for piece in pieces], threshold / _PIECE_LEVELS


class Dropout(nn.Module):
  """`flax.linen.Dropout`'s interface (rate, rng collection, `deterministic`) with its mask from
  `keep_mask` above. `mask` (key, keep_prob, shape) -> (mask, realised keep probability) is a
  class attribute so that another mask (scripts/ablations.py) can be measured in the same
  module."""
  rate: float
  rng_collection: str = "dropout"
  mask = staticmethod(keep_mask)

  @nn.compact
  def __call__(self, inputs, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return inputs
    keep, keep_prob = self.mask(self.make_rng(self.rng_collection), 1.0 - self.rate,
                                inputs.shape)
    if keep_prob == 0.0:  # a rate within 2**-17 of 1
      return jnp.zeros_like(inputs)
    return lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))
