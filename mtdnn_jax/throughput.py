"""Model FLOP utilisation (MFU): the model's training FLOPs per second over the hardware's peak.

FLOPs of one training step on a batch of B sequences of length L (forward + backward = 3 x the
forward's 2 FLOPs per multiply-add; PaLM, Chowdhery et al. 2022, appendix B):
    6 · N · B · L  +  12 · n_layers · H · L² · B
N = the encoder's non-embedding parameters (embedding lookups are not matrix products), H = the
hidden size; the second term is attention's scores and weighted sums. Task heads are negligible.
Padding tokens count: MFU measures how busy the hardware is, not how useful the tokens were.

Bounds: `necessary_matmuls` lists the matrix products one step of an encoder with a classifier
on [CLS] cannot do without, and `matmul_seconds` times them, each alone; no implementation
whose matrix products run at the rates they reach alone can take a step in less time.

Peaks: dense bfloat16 from the vendors' data sheets, per device; on a CPU, a matrix multiply
measured at start on the whole machine (so MFU there is against what XLA can reach), in the
run's precision and, like the bound's products, in the form the encoder's products take
(`mixed_precision.product`: float32 sums of bfloat16 operands on a CPU).
"""
from __future__ import annotations

import collections
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from mtdnn_jax.models import mixed_precision
from mtdnn_jax.models.config import EncoderConfig

PEAK_FLOPS_PER_DEVICE = {  # device_kind substring → dense bf16 FLOP/s
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6": 918e12,
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10G": 70e12,
}


def measured_matmul_peak(size: int = 1024, seconds: float = 0.5, dtype: str = "float32") -> float:
  """FLOP/s of a [size x size] matrix multiply in `dtype`, best of repeated timed rounds."""
  a = jnp.ones((size, size), dtype)
  matmul = jax.jit(lambda x: mixed_precision.product(x, x, (((1,), (0,)), ((), ()))))
  return 2 * size ** 3 / fastest_call_seconds(lambda: matmul(a).block_until_ready(), seconds)


def machine_peak_flops(dtype: str = "float32") -> tuple[float, str]:
  """(peak FLOP/s of all devices together, where the number comes from); on a CPU measured in
  the run's compute `dtype` (a CPU's bfloat16 units can be several times its float32 rate)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return measured_matmul_peak(dtype=dtype), f"measured {dtype} matmul"
  for kind, flops in PEAK_FLOPS_PER_DEVICE.items():
    if kind in device.device_kind:
      return flops * jax.device_count(), f"{device.device_kind} data sheet, bf16"
  return float("nan"), f"unknown peak for {device.device_kind}"


def non_embedding_parameters(encoder_params) -> int:
  return int(sum(np.prod(x.shape) for path, x in jax.tree_util.tree_leaves_with_path(encoder_params)
                 if "embeddings" not in jax.tree_util.keystr(path)))


def forward_flops(config: EncoderConfig, non_embedding: int, input_shape: tuple[int, ...]) -> float:
  """Forward-pass FLOPs for one batch of token ids shaped [B, L] (or [B, K, L] for ranking): 2 per
  weight per token, and attention's two L×L matmuls (2 × 2 × hidden × L² a layer)."""
  sequences, length = int(np.prod(input_shape[:-1])), input_shape[-1]
  return (2.0 * non_embedding * sequences * length
          + 4.0 * config.num_hidden_layers * config.hidden_size * length ** 2 * sequences)


def train_step_flops(config: EncoderConfig, non_embedding: int, input_shape: tuple[int, ...]) -> float:
  """Training FLOPs for the same batch: the forward pass and a backward pass of twice its cost
  (6 × non-embedding parameters × tokens + attention)."""
  return 3.0 * forward_flops(config, non_embedding, input_shape)


@dataclasses.dataclass(frozen=True)
class Matmul:
  """A product of `lhs` and `rhs` (shapes as stored, row-major) over one axis of each
  (`contract`), with `batch` leading axes shared by both (attention's sequences × heads)."""
  lhs: tuple[int, ...]
  rhs: tuple[int, ...]
  contract: tuple[int, int]
  batch: int = 0

  @property
  def dimension_numbers(self):
    return (self.contract[:1], self.contract[1:]), (tuple(range(self.batch)),) * 2

  def apply(self, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    return mixed_precision.product(lhs, rhs, self.dimension_numbers)

  @property
  def flops(self) -> int:
    # 2 × batch size × lhs's free size × rhs's free size × contracted size
    batch, contracted = int(np.prod(self.lhs[:self.batch])), self.lhs[self.contract[0]]
    return 2 * int(np.prod(self.lhs)) * int(np.prod(self.rhs)) // (batch * contracted)

  def gradients(self) -> list[Matmul]:
    """The backward pass's two products, in the layouts the tensors have: for y = x @ w
    (x [m, k], w [k, n]) dx = dy @ wᵀ and dw = xᵀ @ dy; for y = x @ wᵀ (w [n, k], attention's
    q @ kᵀ) dx = dy @ w and dw = dyᵀ @ x. Only these two forms occur (`necessary_matmuls`)."""
    nb = self.batch
    *batch, m, _ = self.lhs
    if self.contract == (nb + 1, nb):  # x @ w
      dy = (*batch, m, self.rhs[-1])
      return [Matmul(dy, self.rhs, (nb + 1, nb + 1), nb), Matmul(self.lhs, dy, (nb, nb), nb)]
    if self.contract == (nb + 1, nb + 1):  # x @ wᵀ
      dy = (*batch, m, self.rhs[-2])
      return [Matmul(dy, self.rhs, (nb + 1, nb), nb), Matmul(dy, self.lhs, (nb, nb), nb)]
    raise ValueError(f"no gradient rule for {self}")


def necessary_matmuls(config: EncoderConfig, sequences: int, length: int, train: bool,
                      classes: int = 2) -> list[Matmul]:
  """The matrix products of one forward pass (and, when `train`, its backward pass) of the
  encoder, its pooler and a `classes`-way classifier on [CLS], over `sequences` sequences of
  `length` tokens. Of the last layer only the keys and values are needed at every position;
  its query, attention output and feed-forward block, and all after it, at [CLS] alone (what
  BertEncoder's `cls_only` computes: XLA does not drop that work by itself). Attention is
  heads-major ([sequences × heads, length, head_dim]), the layout its batched products want;
  every operand takes part in the gradient (the embeddings are trained, so even the first
  layer's input does)."""
  hidden, inner, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
  tokens, pairs = sequences * length, sequences * heads

  def dense(rows, d_in, d_out):
    return Matmul((rows, d_in), (d_in, d_out), (1, 0))

  def layer(queries):  # queries: the positions per sequence whose output is needed
    rows = sequences * queries
    return [dense(rows, hidden, hidden), dense(tokens, hidden, hidden),  # query, key
            dense(tokens, hidden, hidden),  # value
            Matmul((pairs, queries, config.head_dim), (pairs, length, config.head_dim), (2, 2),
                   batch=1),  # scores q @ kᵀ
            Matmul((pairs, queries, length), (pairs, length, config.head_dim), (2, 1),
                   batch=1),  # probabilities @ values
            dense(rows, hidden, hidden), dense(rows, hidden, inner), dense(rows, inner, hidden)]

  forward = [m for _ in range(config.num_hidden_layers - 1) for m in layer(length)]
  forward += layer(1) + [dense(sequences, hidden, hidden), dense(sequences, hidden, classes)]
  if not train:
    return forward
  return forward + [g for m in forward for g in m.gradients()]


def fastest_call_seconds(call, seconds: float) -> float:
  """The fastest of repeated `call()`s over `seconds`, after one untimed; `call` returns only
  when its work is done (a jax result waited for, a CUDA stream synchronised)."""
  call()
  best, deadline = float("inf"), time.perf_counter() + seconds
  while time.perf_counter() < deadline:
    start = time.perf_counter()
    call()
    best = min(best, time.perf_counter() - start)
  return best


def matmul_seconds(matmuls: list[Matmul], dtype: str = "float32", seconds_each: float = 0.2,
                   passes: int = 3) -> float:
  """The time `matmuls` take when each one runs alone: the fastest call of each distinct
  product, times how often it occurs. Each product is timed for `seconds_each` in all, split
  over `passes` rounds through the whole set, so that a moment when the host is busy must
  overlap every one of a product's windows to slow it."""
  counts = collections.Counter(matmuls)
  calls = {}
  for m in counts:
    product = jax.jit(m.apply)
    a, b = jnp.ones(m.lhs, dtype), jnp.ones(m.rhs, dtype)
    calls[m] = lambda product=product, a=a, b=b: product(a, b).block_until_ready()
  best = {m: float("inf") for m in counts}
  for _ in range(passes):
    for m, call in calls.items():
      best[m] = min(best[m], fastest_call_seconds(call, seconds_each / passes))
  return sum(counts[m] * best[m] for m in counts)
