"""Dropout whose random bits XLA:CPU computes in one fused pass.

jax lowers its threefry hash on CPU as a 5-iteration loop (smaller programs), and XLA:CPU runs
each iteration as a separate pass that writes two uint32 arrays the size of the activations to
memory and reads them back; a dropout mask then costs ~10 passes over memory. Here the same
hash is written out as plain element-wise operations, which XLA fuses with the comparison and
the select into one pass: a MiniLM train step 1.05x as fast on a 2-core CPU, BERT-base's
within the noise (docs/PERFORMANCE.md). The masks are bit for bit those of
`jax.random.bernoulli` (and so of `flax.linen.Dropout`; tests/test_dropout.py): a run differs
from one with flax's dropout only by the float rounding of differently fused arithmetic. On
GPU and TPU, where jax already unrolls the hash, the program is the same as before. Keys of
another implementation (`rbg`, `unsafe_rbg`) go through `jax.random.bernoulli` unchanged.
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


def random_bits(key, shape: tuple[int, ...]) -> jax.Array:
  """`jax.random.bits(key, shape, jnp.uint32)` for a threefry key, computed element-wise.

  jax hashes each element's flat (row-major) index as a 64-bit counter split into two uint32
  halves, and returns the xor of the two output words; the index is built from one iota per
  axis, as jax builds it, so the SPMD partitioner can shard it like the activations."""
  if math.prod(shape) >= 2**32:  # the high counter word would not be 0
    raise ValueError(f"random_bits: {shape} has 2**32 elements or more")
  key1, key2 = jax.random.key_data(key)  # typed keys and raw uint32[2] keys alike
  strides = [math.prod(shape[axis + 1:]) for axis in range(len(shape))]
  index = jnp.zeros(shape, jnp.uint32)
  for axis, stride in enumerate(strides):
    index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
  high, low = threefry2x32(key1, key2, jnp.zeros(shape, jnp.uint32), index)
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


class Dropout(nn.Module):
  """`flax.linen.Dropout` (same rate, rng collection and masks) drawing its mask with
  `bernoulli` above."""
  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, inputs, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    keep = bernoulli(self.make_rng(self.rng_collection), keep_prob, inputs.shape)
    return lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))
