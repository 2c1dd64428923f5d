"""Model FLOP utilisation (MFU): the model's training FLOPs per second over the hardware's peak.

FLOPs of one training step on a batch of B sequences of length L (forward + backward = 3 x the
forward's 2 FLOPs per multiply-add; PaLM, Chowdhery et al. 2022, appendix B):
    6 · N · B · L  +  12 · n_layers · H · L² · B
N = the encoder's non-embedding parameters (embedding lookups are not matrix products), H = the
hidden size; the second term is attention's scores and weighted sums. Task heads are negligible.
Padding tokens count: MFU measures how busy the hardware is, not how useful the tokens were.

Peaks: dense bfloat16 from the vendors' data sheets, per device; on a CPU, a float32 matrix
multiply measured at start on the whole machine (so MFU there is against what XLA can reach).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

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
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best, deadline = 0.0, time.perf_counter() + seconds
  while time.perf_counter() < deadline:
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = max(best, 2 * size ** 3 / (time.perf_counter() - start))
  return best


def machine_peak_flops() -> tuple[float, str]:
  """(peak FLOP/s of all devices together, where the number comes from)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return measured_matmul_peak(), "measured float32 matmul"
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
