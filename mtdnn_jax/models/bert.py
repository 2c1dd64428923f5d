"""The BERT encoder in Flax Linen: embeddings, post-LayerNorm Transformer layers, pooler.

Numerically this is BERT as Google and Hugging Face compute it (exact erf GELU, LayerNorm
after each residual, pooler = tanh(dense([CLS]))), so converted checkpoints reproduce their
outputs. The layers run under `nn.scan` (the parameters of all layers are stacked on a leading
`layers` axis), unrolled by default, and may be rematerialised.
Every parameter carries logical axis names for sharding: vocab, embed, heads, kv, mlp, layers.
Parameters are float32; activations are computed in `dtype`.
"""
from __future__ import annotations

import functools
from typing import Literal

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from mtdnn_jax.models import mixed_precision
from mtdnn_jax.models.config import EncoderConfig
from mtdnn_jax.models.dropout import Dropout

AttentionImpl = Literal["xla", "cudnn"]
# A padded key's attention score: float32's most negative value, so that exp() of it minus a
# real score is 0, and a row of nothing but padding stays finite (uniform).
_MASKED_SCORE = float(jnp.finfo(jnp.float32).min)


class EncoderOutput(flax.struct.PyTreeNode):
  last_hidden_state: jax.Array  # [batch, seq, hidden]
  pooled_output: jax.Array  # [batch, hidden]: tanh(dense(hidden state of [CLS]))
  # [num_layers + 1, batch, seq, hidden] when asked for: the embedding output, then each layer.
  hidden_states: jax.Array | None = None


def gelu_erf(x):
  """BERT's exact GELU, x·Φ(x), written as PyTorch and Hugging Face write it: 0.5·x·(1 +
  erf(x/√2)). jax.nn.gelu(approximate=False) writes it with erfc, which XLA:CPU evaluates as
  two approximations and selects between them. On a Xeon with AMX the erf form made MiniLM's
  evaluation 1.03× and BERT-base's 1.02× faster, train steps 1.00-1.01× (docs/PERFORMANCE.md)."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.5 ** 0.5, x.dtype)))


def activation(name: str):
  return {
      "gelu": gelu_erf,
      "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
      "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
      "gelu_fast": functools.partial(jax.nn.gelu, approximate=True),
      "relu": jax.nn.relu,
      "silu": jax.nn.silu,
      "swish": jax.nn.silu,
  }[name]


def _weight_init(config: EncoderConfig, axes: tuple[str | None, ...]):
  return nn.with_logical_partitioning(nn.initializers.normal(config.initializer_range), axes)


def _zeros(axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _layer_norm(config: EncoderConfig, dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
                      bias_init=_zeros(("embed",)))


def _dense(config: EncoderConfig, features: int, axes: tuple[str, str], dtype, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, name=name, kernel_init=_weight_init(config, axes),
                  bias_init=_zeros(axes[1:]), dot_general=mixed_precision.dot_general)


def _per_token(layer: nn.Module, x, feature_dims: int = 1):
  """`layer` applied to `x`'s tokens as the rows of one matrix ([batch·seq, features...]).
  Autodiff then forms the weight gradient as one product over a single token axis of two
  row-major operands, which XLA:CPU runs as it is; over [batch, seq] (two contracted axes) it
  first copies an operand transposed: MiniLM's train step 1.04× (docs/PERFORMANCE.md)."""
  lead, features = x.shape[:-feature_dims], x.shape[-feature_dims:]
  y = layer(x.reshape((-1,) + features))
  return y.reshape(lead + y.shape[1:])


class Embeddings(nn.Module):
  """Word + position + segment embeddings, LayerNorm, dropout (BERT's lexicon encoder)."""
  config: EncoderConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids, segment_ids, *, deterministic: bool):
    cfg = self.config
    seq_len = input_ids.shape[-1]
    if seq_len > cfg.max_position_embeddings:
      raise ValueError(f"sequence length {seq_len} exceeds max_position_embeddings="
                       f"{cfg.max_position_embeddings}")

    def embed(num, axes, name):
      return nn.Embed(num, cfg.hidden_size, dtype=self.dtype, name=name,
                      embedding_init=_weight_init(cfg, axes))

    x = embed(cfg.vocab_size, ("vocab", "embed"), "word_embeddings")(input_ids)
    x = x + embed(cfg.max_position_embeddings, (None, "embed"),
                  "position_embeddings")(jnp.arange(seq_len))[None]
    x = x + embed(cfg.type_vocab_size, (None, "embed"), "token_type_embeddings")(segment_ids)
    x = _layer_norm(cfg, self.dtype, "LayerNorm")(x)
    return Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


def attend(query, key, value, attention_mask, probs_dropout=None):
  """Softmax attention from `query` [batch, queries, heads, head_dim] over `key` and `value`
  [batch, keys, heads, head_dim], padded keys (`attention_mask` [batch, keys] False) left out;
  `probs_dropout` (BERT's dropout on the attention probabilities, in training) applied to the
  probabilities. Softmax in float32; the result is [batch, queries, heads, head_dim] in
  value's dtype. Written out rather than through `jax.nn.dot_product_attention`, which has no
  dropout and whose "xla" implementation XLA:CPU ran slower on a Xeon with AMX: MiniLM's
  evaluation 1.05×, BERT-base's 1.005× (docs/PERFORMANCE.md).

  Padded keys get the most negative float32 added to their scores (`attention_mask_bias`, HF's
  form; a row with every key padded comes out uniform, as with a select): XLA:CPU runs the
  attention faster that way than with a select on the scores (MiniLM's shape, batch 128, forward
  alone: 1.33× in float32, 2.0× in bfloat16; docs/PERFORMANCE.md)."""
  scale = query.shape[-1] ** -0.5
  if mixed_precision.on_cpu_in_low_precision(query, key, value):
    # The products in the forms XLA:CPU runs on bfloat16 units (mixed_precision); there the
    # heads-major layout and the normalisation below ran slower.
    logits = mixed_precision.attention_scores(query, key, jnp.float32) * scale
    if probs_dropout is None:
      probs = jax.nn.softmax(logits + attention_mask_bias(attention_mask), axis=-1)
    else:  # in training the select's gradient ran faster than the addition's
      probs = probs_dropout(jax.nn.softmax(
          jnp.where(attention_mask[:, None, None, :], logits, _MASKED_SCORE), axis=-1))
    return mixed_precision.attention_context(probs, value)
  # Heads ahead of the sequence axes: XLA:CPU's batched products run faster in that layout. The
  # softmax's division is left to the context ([.., head_dim] per query instead of [.., keys]),
  # one pass fewer over the scores; dropout (an element-wise mask and scale) commutes with
  # dividing each query's row by its sum. The scale goes on the queries: XLA:CPU otherwise feeds
  # its fused attention a broadcast of the scalar as large as the scores.
  query = query * jnp.asarray(scale, query.dtype)
  query, key, value = (t.transpose(0, 2, 1, 3) for t in (query, key, value))
  logits = (jnp.einsum("bnth,bnsh->bnts", query, key).astype(jnp.float32)
            + attention_mask_bias(attention_mask))
  weights = jnp.exp(logits - jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True)))
  total = weights.sum(axis=-1, keepdims=True)
  if probs_dropout is not None:
    weights = probs_dropout(weights)
  context = jnp.einsum("bnts,bnsh->bnth", weights.astype(value.dtype), value) / total
  return context.astype(value.dtype).transpose(0, 2, 1, 3)


def attention_mask_bias(attention_mask):
  """[batch, keys] mask → [batch, 1, 1, keys] float32 bias: 0 where a key is kept, the most
  negative float32 where it is padding."""
  return jnp.where(attention_mask, 0.0, _MASKED_SCORE)[:, None, None, :]


class SelfAttention(nn.Module):
  """Multi-head self-attention: `attend`, or cuDNN's fused kernel (`attention_impl="cudnn"`) where
  no dropout acts on the probabilities (it has none) and more than [CLS] asks."""
  config: EncoderConfig
  dtype: jnp.dtype = jnp.float32
  attention_impl: AttentionImpl = "xla"
  cls_only: bool = False  # attend from the [CLS] position alone (keys and values: every token)

  @nn.compact
  def __call__(self, x, attention_mask, *, deterministic: bool):
    cfg = self.config
    project = functools.partial(
        nn.DenseGeneral, features=(cfg.num_attention_heads, cfg.head_dim), dtype=self.dtype,
        dot_general=mixed_precision.dot_general,
        kernel_init=_weight_init(cfg, ("embed", "heads", "kv")), bias_init=_zeros(("heads", "kv")))
    # [batch, seq (1 if cls_only), heads, head_dim]
    query = _per_token(project(name="query"), x[:, :1] if self.cls_only else x)
    key = _per_token(project(name="key"), x)
    value = _per_token(project(name="value"), x)

    # The projections' results are float32 on a CPU (mixed_precision.dot_general); attention's
    # products take their operands in the compute dtype.
    query, key, value = (t.astype(self.dtype) for t in (query, key, value))
    dropout_rate = cfg.attention_probs_dropout_prob
    probs_dropout = None
    if not deterministic and dropout_rate > 0.0:
      probs_dropout = functools.partial(Dropout(dropout_rate), deterministic=False)
    if self.attention_impl == "cudnn" and probs_dropout is None and not self.cls_only:
      # cuDNN's fused kernel takes padding as sequence lengths (our padding is on the right).
      context = jax.nn.dot_product_attention(
          query, key, value, implementation="cudnn",
          key_value_seq_lengths=attention_mask.sum(-1).astype(jnp.int32))
    else:
      context = attend(query, key, value, attention_mask, probs_dropout)

    out = nn.DenseGeneral(cfg.hidden_size, axis=(-2, -1), dtype=self.dtype, name="out",
                          dot_general=mixed_precision.dot_general,
                          kernel_init=_weight_init(cfg, ("heads", "kv", "embed")),
                          bias_init=_zeros(("embed",)))
    return _per_token(out, context, feature_dims=2)


class TransformerLayer(nn.Module):
  """One post-LayerNorm BERT layer, shaped as a scan body: (carry, mask) -> (carry, output).
  With `cls_only` it computes its output at the [CLS] position alone ([batch, 1, hidden]),
  attending to every token: all a classifier on the last layer's [CLS] needs."""
  config: EncoderConfig
  dtype: jnp.dtype = jnp.float32
  attention_impl: AttentionImpl = "xla"
  deterministic: bool = True
  output_hidden_states: bool = False
  cls_only: bool = False

  @nn.compact
  def __call__(self, x, attention_mask):
    cfg = self.config
    dropout = Dropout(cfg.hidden_dropout_prob)
    attention = SelfAttention(cfg, self.dtype, self.attention_impl, self.cls_only, name="attention")
    attended = attention(x, attention_mask, deterministic=self.deterministic)
    residual = x[:, :1] if self.cls_only else x
    x = _layer_norm(cfg, self.dtype, "attention_norm")(
        residual + dropout(attended, deterministic=self.deterministic))
    intermediate = _dense(cfg, cfg.intermediate_size, ("embed", "mlp"), self.dtype, "intermediate")
    h = _per_token(intermediate, x)
    h = _per_token(_dense(cfg, cfg.hidden_size, ("mlp", "embed"), self.dtype, "output"),
                   activation(cfg.hidden_act)(h))
    x = _layer_norm(cfg, self.dtype, "output_norm")(
        x + dropout(h, deterministic=self.deterministic))
    return x, (x if self.output_hidden_states else None)


def _scanned_layers(layer: type[nn.Module], length: int, unroll: bool):
  """`layer` under `nn.scan`: its parameters stacked on a leading `layers` axis."""
  return nn.scan(layer, length=length, in_axes=nn.broadcast, variable_axes={"params": 0},
                 split_rngs={"params": True, "dropout": True},
                 metadata_params={nn.PARTITION_NAME: "layers"}, unroll=length if unroll else 1)


def _first_layers_and_last(variables: dict) -> dict:
  """The stacked layer parameters as `_LayersThenCLS` reads them."""
  stacked = nn.unbox(variables["params"])
  return {"params": {"first": jax.tree.map(lambda p: p[:-1], stacked),
                     "last": jax.tree.map(lambda p: p[-1], stacked)}}


class _LayersThenCLS(nn.Module):
  """The layer stack with its last layer at [CLS] alone: every layer but the last under one
  scan, then the last with `cls_only`. It reads the parameters `_scanned_layers` made over all
  the layers (through `nn.map_variables`), so checkpoints do not change."""
  layer: type[nn.Module]
  config: EncoderConfig
  dtype: jnp.dtype
  attention_impl: AttentionImpl
  deterministic: bool
  unroll: bool

  @nn.compact
  def __call__(self, x, attention_mask):
    n = self.config.num_hidden_layers
    common = (self.config, self.dtype, self.attention_impl, self.deterministic)
    if n > 1:
      x, _ = _scanned_layers(self.layer, n - 1, self.unroll)(*common, name="first")(
          x, attention_mask)
    x, _ = self.layer(*common, cls_only=True, name="last")(x, attention_mask)
    return x


class BertEncoder(nn.Module):
  """BERT: token ids, segment ids and a padding mask → hidden states and pooled [CLS].

  `cls_only` is for callers that read only the [CLS] position of the last layer (the pooled
  output, a classifier on [CLS]): the last layer's queries, attention output and feed-forward
  block are computed there alone (its keys and values still from every token), which saves
  about 1/num_layers of the work with the same result, and `last_hidden_state` is [batch, 1,
  hidden]. XLA does not drop that work by itself: without `cls_only` the compiled step runs
  the last layer's products at every token (docs/PERFORMANCE.md).
  """
  config: EncoderConfig
  dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32
  attention_impl: AttentionImpl = "xla"
  remat: bool = False  # recompute each layer's activations in the backward pass
  # Unrolling the scan lets XLA slice each layer's weights statically instead of through
  # dynamic slices and updates inside a loop: a BERT-base train step ~8% faster on CPU
  # (docs/PERFORMANCE.md), for about twice the compile time. The parameters stay stacked.
  unroll_layers: bool = True
  cls_only: bool = False

  @nn.compact
  def __call__(self, input_ids, segment_ids, attention_mask, *, deterministic: bool = True,
               output_hidden_states: bool = False,
               embedding_perturbation: jax.Array | None = None) -> EncoderOutput:
    """`embedding_perturbation` [batch, seq, hidden] is added to the embedding layer's output,
    what the first Transformer layer reads (SMART's adversarial noise, SPEC.md §3)."""
    cfg = self.config
    if self.attention_impl not in ("xla", "cudnn"):
      raise ValueError(f"attention_impl must be 'xla' or 'cudnn', got {self.attention_impl!r}")
    if self.cls_only and output_hidden_states:
      raise ValueError("output_hidden_states needs every position of every layer; "
                       "cls_only computes the last layer at [CLS] alone")
    attention_mask = attention_mask.astype(bool)
    x = Embeddings(cfg, self.dtype, name="embeddings")(input_ids, segment_ids,
                                                        deterministic=deterministic)
    if embedding_perturbation is not None:
      x = x + embedding_perturbation.astype(x.dtype)
    layer = nn.remat(TransformerLayer, prevent_cse=False) if self.remat else TransformerLayer
    embedded = x
    if self.cls_only and not self.is_initializing():
      layers = nn.map_variables(_LayersThenCLS, "params", trans_in_fn=_first_layers_and_last)
      x = layers(layer, cfg, self.dtype, self.attention_impl, deterministic, self.unroll_layers,
                 name="layers")(x, attention_mask)
    else:  # initialisation creates every layer's parameters the same way in both cases
      x, per_layer = _scanned_layers(layer, cfg.num_hidden_layers, self.unroll_layers)(
          cfg, self.dtype, self.attention_impl, deterministic, output_hidden_states,
          name="layers")(x, attention_mask)
      if self.cls_only:
        x = x[:, :1]
    pooled = nn.tanh(_dense(cfg, cfg.hidden_size, ("embed", "mlp"), self.dtype, "pooler")(x[:, 0]))
    hidden_states = None
    if output_hidden_states:
      hidden_states = jnp.concatenate([embedded[None], per_layer], axis=0)
    return EncoderOutput(x, pooled, hidden_states)
