"""The encoder's matrix products when it computes in bfloat16 (or float16) on a CPU.

XLA:CPU (jaxlib 0.10) runs a bfloat16 product whose result is bfloat16 as a float32 one (it
converts both operands first), at float32 speed. The same product with a float32 result goes to
YNNPACK, which uses the CPU's bfloat16 units (AMX, AVX512-BF16) — but only in some forms: a
row-major product that contracts the first operand's last axis with the second's first or last
(x @ w, x @ wᵀ), and attention's batched products as `attention_scores` and `attention_context`
write them. A product contracting both operands' first axis (a weight gradient, xᵀ @ dy) is
folded back to float32, and some forms XLA:CPU cannot run at all with a float32 result
("Unsupported element type for DotThunk"). On a Xeon with AMX: 2048² at 305 GFLOP/s the first
way, 1,510-1,800 the second; xᵀ @ dy at 4096×768×3072 at 265-290 as autodiff writes it, 1,114 as
`_transposed_times` lays it out (docs/PERFORMANCE.md, "bfloat16 on a CPU with AMX").

So on a CPU every low-precision product of the encoder is one of those forms, forward and
backward (custom VJPs; autodiff's own transposes would give weight gradients in the slow form
and multiply float32 cotangents by bfloat16 operands, which XLA runs in float32 again):
bfloat16 operands, float32 sums; the dense layers keep their results in float32 (see
`dot_general`), attention's scores are float32 for the softmax and its context is rounded to
the compute dtype; the operands' gradients are in the compute dtype, as `torch.autocast` gives
them.

Float32 products, and every product on GPUs and TPUs (whose bfloat16 products sum in float32
already), are the plain jax ones; on a CPU a float32 dense layer's result passes through
`_kept_out_of_library_fusions` (see there), an identity that keeps the product in oneDNN.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

_F32 = jnp.float32


def _compiling_for_cpu() -> bool:
  return jax.default_backend() == "cpu"


def on_cpu_in_low_precision(*operands) -> bool:
  """Whether the products of this module take their CPU path for these operands: all of one
  floating dtype narrower than 32 bits, and jax compiling for a CPU."""
  dtypes = {a.dtype for a in operands}
  if len(dtypes) != 1:
    return False
  dtype = dtypes.pop()
  return jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32 and _compiling_for_cpu()


def _product(spec: str, a, b, out_dtype):
  return jnp.einsum(spec, a, b, preferred_element_type=_F32).astype(out_dtype)


def _transposed_times(x, y, out_dtype):
  """xᵀ @ y for x [n, k], y [n, f] (a weight gradient), with xᵀ laid out row-major in memory
  first: XLA folds a plain transpose into the product that reads it (giving the slow form of
  the module's docstring); through a flat barrier it cannot."""
  rows, cols = x.shape
  x_t = jax.lax.optimization_barrier(x.T.reshape(-1)).reshape(cols, rows)
  return _product("kn,nf->kf", x_t, y, out_dtype)


@jax.custom_vjp
def _kept_out_of_library_fusions(y):
  """`y` unchanged, bit for bit (a reduce-precision to float32's own 8 exponent and 23 mantissa
  bits), which XLA:CPU (jaxlib 0.10) neither removes nor fuses through. At evaluation YNNPACK's
  fusions would otherwise take a layer's out-projection, both feed-forward products and the
  element-wise work up to each LayerNorm into one fusion whose products run at ~220 GFLOP/s,
  where oneDNN runs them alone at ~320; with the dense products kept out, oneDNN runs them and
  YNNPACK the element-wise work between: float32 evaluation 1.13× (MiniLM, batch 128, and
  BERT-base, batch 64; one-process A/Bs on a Xeon with AMX, docs/PERFORMANCE.md). jax's
  `optimization_barrier` does not do this: XLA:CPU drops it before fusion. Its gradient is the
  identity, not a reduce-precision of the cotangent, so that a train step's backward pass is as
  without it (the forward pass's fusions in training are oneDNN's already: 1.00× either way).
  Not for bfloat16 on a CPU, whose products YNNPACK runs (0.94–0.97× fenced)."""
  return jax.lax.reduce_precision(y, exponent_bits=8, mantissa_bits=23)


_kept_out_of_library_fusions.defvjp(lambda y: (_kept_out_of_library_fusions(y), None),
                                    lambda _, g: (g,))  # no residuals; the cotangent as it is


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 4))
def _fast_product(spec: str, gradients, a, b, out_dtype):
  """`_product(spec, a, b, out_dtype)` whose VJP is `gradients(a, b, g)`: the two operands'
  gradients, each written in one of the fast forms, from a cotangent `g` in a's dtype."""
  return _product(spec, a, b, out_dtype)


def _fast_product_forward(spec, gradients, a, b, out_dtype):
  return _product(spec, a, b, out_dtype), (a, b)


def _fast_product_backward(spec, gradients, out_dtype, residuals, g):
  a, b = residuals
  return gradients(a, b, g.astype(a.dtype))


_fast_product.defvjp(_fast_product_forward, _fast_product_backward)


def _matmul_gradients(x, w, g):  # of x [n, k] @ w [k, f]
  return _product("nf,kf->nk", g, w, x.dtype), _transposed_times(x, g, w.dtype)


def _scores_gradients(query, key, g):  # of "btnh,bsnh->bnts"
  return (_product("bnts,bsnh->btnh", g, key, query.dtype),
          _product("bnts,btnh->bsnh", g, query, key.dtype))


def _context_gradients(probs, value, g):  # of "bnts,bsnh->btnh"
  return (_product("btnh,bsnh->bnts", g, value, probs.dtype),
          _product("bnts,btnh->bsnh", probs, g, value.dtype))


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`lax.dot_general` for flax's Dense and DenseGeneral (their `dot_general` field). On the
  CPU path, a product contracting `lhs`'s trailing axes with `rhs`'s leading ones (what those
  layers compute; `precision` does not apply) runs as one [rows, k] @ [k, features] product
  and its result stays float32, the sums unrounded: the layer adds its bias in float32 and the
  element-wise work up to the next product (dropout, residual, LayerNorm, GELU) reads float32,
  which the next product rounds to the compute dtype. Rounding here instead made a bfloat16
  train step slower (BERT-base 1.19×, MiniLM 1.24× without it, on a Xeon with AMX): XLA:CPU
  converts the bfloat16 activations back to float32 for that work and reduces the bias
  gradients' bfloat16 cotangents through reduce-windows. Anything else is lax.dot_general's,
  a float32 result on a CPU through `_kept_out_of_library_fusions`."""
  (lhs_contract, rhs_contract), batch = dimension_numbers
  n = len(lhs_contract)
  standard = (batch == ((), ()) and tuple(lhs_contract) == tuple(range(lhs.ndim - n, lhs.ndim))
              and tuple(rhs_contract) == tuple(range(n)))
  if not (standard and on_cpu_in_low_precision(lhs, rhs)):
    y = jax.lax.dot_general(lhs, rhs, dimension_numbers, precision,
                            preferred_element_type=preferred_element_type)
    if lhs.dtype == rhs.dtype == y.dtype == _F32 and _compiling_for_cpu():
      return _kept_out_of_library_fusions(y)
    return y
  rows, contracted = lhs.shape[:lhs.ndim - n], lhs.shape[lhs.ndim - n:]
  features = rhs.shape[n:]
  y = _fast_product("nk,kf->nf", _matmul_gradients, lhs.reshape(-1, math.prod(contracted)),
                    rhs.reshape(math.prod(contracted), -1), preferred_element_type or _F32)
  return y.reshape(rows + features)


def product(lhs, rhs, dimension_numbers):
  """lax.dot_general as the encoder's products run (for timing them alone, throughput.py): on
  the CPU path float32 sums rounded to the operands' dtype, a 2-D xᵀ @ y (both first axes
  contracted) through `_transposed_times`; otherwise lax.dot_general itself."""
  if not on_cpu_in_low_precision(lhs, rhs):
    return jax.lax.dot_general(lhs, rhs, dimension_numbers)
  if dimension_numbers == (((0,), (0,)), ((), ())) and lhs.ndim == rhs.ndim == 2:
    return _transposed_times(lhs, rhs, lhs.dtype)
  return jax.lax.dot_general(lhs, rhs, dimension_numbers,
                             preferred_element_type=_F32).astype(lhs.dtype)


def attention_scores(query, key, out_dtype=_F32):
  """query [batch, t, heads, dim] · key [batch, s, heads, dim] → [batch, heads, t, s], as
  `out_dtype`."""
  if not on_cpu_in_low_precision(query, key):
    return jnp.einsum("btnh,bsnh->bnts", query, key).astype(out_dtype)
  return _fast_product("btnh,bsnh->bnts", _scores_gradients, query, key, out_dtype)


def attention_context(probs, value):
  """probs [batch, heads, t, s] · value [batch, s, heads, dim] → [batch, t, heads, dim], in
  value's dtype (probs are cast to it)."""
  probs = probs.astype(value.dtype)
  if not on_cpu_in_low_precision(probs, value):
    return jnp.einsum("bnts,bsnh->btnh", probs, value)
  return _fast_product("bnts,bsnh->btnh", _context_gradients, probs, value, value.dtype)
