"""MT-DNN: the shared BERT encoder and one head per task (SPEC.md §1)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mtdnn_jax.models.bert import AttentionImpl, BertEncoder
from mtdnn_jax.models.config import EncoderConfig
from mtdnn_jax.models.heads import HeadLayout, HeadOutputs, TaskHeads


class MTDNN(nn.Module):
  encoder_config: EncoderConfig
  layout: HeadLayout
  dtype: jnp.dtype = jnp.float32
  attention_impl: AttentionImpl = "xla"
  remat: bool = False
  unroll_layers: bool = True  # see BertEncoder

  @nn.compact
  def __call__(self, input_ids, segment_ids, attention_mask, task_id, *,
               deterministic: bool = True, embedding_perturbation=None) -> HeadOutputs:
    """Token arrays are [B, L], or [B, K, L] for a batch of a ranking task (K candidates).
    `embedding_perturbation` is [B, L, H] ([B·K, L, H] for ranking): see BertEncoder."""
    candidates = input_ids.shape[1] if input_ids.ndim == 3 else None
    if candidates:  # every candidate is its own (question, candidate) pair through the encoder
      input_ids, segment_ids, attention_mask = (
          x.reshape(-1, x.shape[-1]) for x in (input_ids, segment_ids, attention_mask))
    encoder = BertEncoder(self.encoder_config, self.dtype, self.attention_impl, self.remat,
                          self.unroll_layers, cls_only=not self.layout.reads_every_token,
                          name="encoder")
    encoded = encoder(input_ids, segment_ids, attention_mask, deterministic=deterministic,
                      embedding_perturbation=embedding_perturbation)
    return TaskHeads(self.layout, self.encoder_config.hidden_size,
                     self.encoder_config.initializer_range, deterministic, name="heads")(
        encoded.last_hidden_state, encoded.pooled_output, attention_mask, segment_ids, task_id,
        candidates)
