"""The Flax BERT encoder against Hugging Face's PyTorch BertModel on the same real weights."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from mtdnn_jax.errors import InputError
from mtdnn_jax.models import BertEncoder, EncoderConfig
from mtdnn_jax.tokenization import pad_encodings
from tests.helpers import SENTENCES


@pytest.fixture(scope="session")
def batch(minilm):
  encodings = minilm.tokenizer().encode_batch([a for a, _ in SENTENCES[:2]])
  encodings += [minilm.tokenizer().encode(a, b) for a, b in SENTENCES[2:]]
  lengths = sorted(len(e) for e in encodings)
  assert lengths[0] < lengths[-1], "the batch must mix lengths so that padding is exercised"
  return pad_encodings(encodings, lengths[-1])


@pytest.fixture(scope="session")
def hf_outputs(minilm_hf_dir, batch):
  from transformers import BertModel
  model = BertModel.from_pretrained(minilm_hf_dir, attn_implementation="eager").eval()
  with torch.no_grad():
    return model(input_ids=torch.tensor(batch["input_ids"]).long(),
                 token_type_ids=torch.tensor(batch["segment_ids"]).long(),
                 attention_mask=torch.tensor(batch["attention_mask"]).long(),
                 output_hidden_states=True)


def run_encoder(model, batch, **kwargs):
  module_kwargs = {k: kwargs.pop(k) for k in ("dtype", "remat", "attention_impl", "unroll_layers",
                                               "cls_only") if k in kwargs}
  return BertEncoder(model.config, **module_kwargs).apply(
      {"params": model.params}, batch["input_ids"], batch["segment_ids"],
      batch["attention_mask"], **kwargs)


def test_matches_pytorch_bert_on_real_weights(minilm, batch, hf_outputs):
  ours = run_encoder(minilm, batch, output_hidden_states=True)
  np.testing.assert_allclose(ours.last_hidden_state, hf_outputs.last_hidden_state.numpy(),
                             atol=1e-4, rtol=0)
  np.testing.assert_allclose(ours.pooled_output, hf_outputs.pooler_output.numpy(),
                             atol=1e-4, rtol=0)
  assert ours.hidden_states.shape[0] == len(hf_outputs.hidden_states) == 7
  # The middle layers' activations reach |10|, where float32's rounding in another order of
  # the same sums (heads-major attention, the scale on the queries) gives ~1e-5 relative.
  for layer, theirs in enumerate(hf_outputs.hidden_states):
    np.testing.assert_allclose(ours.hidden_states[layer], theirs.numpy(), atol=1e-4, rtol=2e-5,
                               err_msg=f"hidden states of layer {layer}")


def test_bfloat16_compute_stays_close_to_float32(minilm, batch):
  """Stated tolerance: bf16 keeps ~3 significant digits; over 6 layers we allow 2% relative
  (Frobenius) error on real tokens, per-token cosine >= 0.999, pooled max |diff| <= 1e-2."""
  full = run_encoder(minilm, batch)
  half = run_encoder(minilm, batch, dtype=jnp.bfloat16)
  assert half.last_hidden_state.dtype == jnp.bfloat16
  mask = batch["attention_mask"].astype(bool)
  a = np.asarray(full.last_hidden_state)[mask]
  b = np.asarray(half.last_hidden_state.astype(jnp.float32))[mask]
  assert np.linalg.norm(a - b) / np.linalg.norm(a) < 2e-2
  cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  assert cosine.min() > 0.999
  assert np.abs(np.asarray(full.pooled_output) -
                np.asarray(half.pooled_output.astype(jnp.float32))).max() < 1e-2
  # Parameters stay float32 whatever the compute dtype.
  variables = BertEncoder(minilm.config, dtype=jnp.bfloat16).init(
      jax.random.PRNGKey(0), batch["input_ids"], batch["segment_ids"], batch["attention_mask"])
  assert {x.dtype for x in jax.tree_util.tree_leaves(nn.unbox(variables))} == {np.dtype("float32")}


@pytest.mark.parametrize("queries", [6, 1], ids=["every_position", "cls_only"])
def test_attention_equals_jax_dot_product_attention(queries):
  """bert.attend (written out, so that training can drop probabilities) computes what
  jax.nn.dot_product_attention does, padded keys left out, from every position or [CLS] alone."""
  from mtdnn_jax.models.bert import attend
  rng = np.random.default_rng(0)
  query, key, value = (jnp.asarray(rng.normal(size=(2, n, 3, 8)), jnp.float32)
                       for n in (queries, 6, 6))
  mask = jnp.asarray([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
  reference = jax.nn.dot_product_attention(query, key, value, mask=mask[:, None, None, :],
                                           implementation="xla")
  np.testing.assert_allclose(attend(query, key, value, mask), reference, rtol=1e-5, atol=1e-6)
  # A padded key changes nothing.
  changed = key.at[0, 4:].set(100.0), value.at[0, 4:].set(-100.0)
  np.testing.assert_allclose(attend(query, *changed, mask), reference, rtol=1e-5, atol=1e-6)


def _attention_by_hand(query, key, value, mask, keep=None):
  """Softmax attention in float64 numpy: scores, padded keys dropped, softmax, then `keep`
  (dropout's mask times its scale) on the probabilities."""
  q, k, v = (np.asarray(t, np.float64) for t in (query, key, value))
  scores = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
  scores = np.where(np.asarray(mask)[:, None, None, :], scores, -np.inf)
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  if keep is not None:
    probs = probs * keep
  return np.einsum("bnts,bsnh->btnh", probs, v)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_attention_dropout_acts_on_the_probabilities(dtype):
  """With dropout, attend's result is the dropped-out probabilities times the values (the float32
  path divides by the softmax's sum after the product: dropout must commute with that), and its
  gradients are those of the same function written the plain way; in bfloat16 on a CPU (the
  products of mixed_precision) both with and without dropout, to bfloat16's precision."""
  from mtdnn_jax.models.bert import attend
  rng = np.random.default_rng(1)
  query, key, value = (jnp.asarray(rng.normal(size=(2, 5, 3, 8)), dtype) for _ in range(3))
  mask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  keep = jnp.asarray(rng.random((2, 3, 5, 5)) > 0.3, jnp.float32) / 0.7
  tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=0.0, atol=3e-2)
  f32 = [np.asarray(t, np.float32) for t in (query, key, value)]
  for dropout in (None, lambda probs: probs * keep.astype(probs.dtype)):
    expected = _attention_by_hand(*f32, mask, None if dropout is None else keep)
    got = attend(query, key, value, mask, dropout)
    assert got.dtype == query.dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), expected, **tolerance)
  if dtype != "float32":
    return

  def plain(q, k, v):  # softmax, dropout, product, as jax.nn would write it
    logits = jnp.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(8.0)
    probs = jax.nn.softmax(jnp.where(mask[:, None, None, :], logits, -1e30), axis=-1) * keep
    return jnp.einsum("bnts,bsnh->btnh", probs, v)

  cotangent = jnp.asarray(rng.normal(size=(2, 5, 3, 8)), jnp.float32)
  ours = jax.grad(lambda *t: jnp.sum(attend(*t, mask, lambda p: p * keep) * cotangent),
                  argnums=(0, 1, 2))(query, key, value)
  theirs = jax.grad(lambda *t: jnp.sum(plain(*t) * cotangent), argnums=(0, 1, 2))(query, key, value)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_attention_with_every_key_padded_is_uniform():
  """A sequence whose keys are all padding attends to them all equally (the bias saturates at
  float32's most negative value instead of giving NaN), as HF's additive mask does."""
  from mtdnn_jax.models.bert import attend
  rng = np.random.default_rng(2)
  query, key, value = (jnp.asarray(rng.normal(size=(1, 4, 2, 8)), jnp.float32) for _ in range(3))
  got = attend(query, key, value, jnp.zeros((1, 4), bool))
  np.testing.assert_allclose(got, np.broadcast_to(value.mean(1, keepdims=True), got.shape),
                             rtol=1e-5, atol=1e-6)


def test_gelu_is_x_times_the_normal_cdf():
  """BERT's exact GELU and its gradient against x·Φ(x) and Φ(x) + x·φ(x) in float64 (math.erfc,
  exact where 1 + erf cancels), over the range BERT's activations take and beyond."""
  from mtdnn_jax.models.bert import activation, gelu_erf
  assert activation("gelu") is gelu_erf
  x = np.linspace(-12, 12, 2401, dtype=np.float32)
  cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
  pdf = np.exp(-x.astype(np.float64) ** 2 / 2) / math.sqrt(2 * math.pi)
  np.testing.assert_allclose(gelu_erf(jnp.asarray(x)), x * cdf, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.vmap(jax.grad(gelu_erf))(jnp.asarray(x)), cdf + x * pdf,
                             rtol=1e-6, atol=1e-6)
  assert gelu_erf(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16


def test_dropout_is_random_in_training_and_reproducible_from_the_rng(minilm, batch):
  train = lambda seed: run_encoder(minilm, batch, deterministic=False,
                                   rngs={"dropout": jax.random.PRNGKey(seed)}).last_hidden_state
  np.testing.assert_array_equal(train(1), train(1))
  assert np.abs(np.asarray(train(1)) - np.asarray(train(2))).max() > 1e-2


@pytest.mark.parametrize("variant", [dict(remat=True), dict(unroll_layers=False)],
                         ids=["remat", "scan_loop"])
def test_remat_and_the_layer_loop_change_nothing_but_speed_and_memory(minilm, batch, variant):
  """Rematerialised layers, and the scan as a loop instead of unrolled (the default), give the
  same loss and gradients with the same (stacked) parameters, dropout included."""
  def loss(params, changes):
    out = BertEncoder(minilm.config, **changes).apply(
        {"params": params}, batch["input_ids"], batch["segment_ids"], batch["attention_mask"],
        deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)})
    return jnp.mean(out.pooled_output ** 2)

  plain = jax.value_and_grad(loss)(minilm.params, {})
  other = jax.value_and_grad(loss)(minilm.params, variant)
  np.testing.assert_allclose(plain[0], other[0], rtol=1e-6)
  assert jax.tree.structure(plain[1]) == jax.tree.structure(other[1])
  for a, b in zip(jax.tree_util.tree_leaves(plain[1]), jax.tree_util.tree_leaves(other[1])):
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("variant", [{}, dict(remat=True), dict(unroll_layers=False)],
                         ids=["unrolled", "remat", "scan_loop"])
def test_last_layer_at_cls_alone_gives_bert_at_cls_and_the_same_gradients(
    minilm, batch, hf_outputs, variant):
  """`cls_only` computes the last layer at [CLS] alone: its [CLS] state and pooled output are
  PyTorch BERT's, and the gradient of anything computed from them is the full encoder's."""
  ours = run_encoder(minilm, batch, cls_only=True, **variant)
  assert ours.last_hidden_state.shape == (len(batch["input_ids"]), 1, minilm.config.hidden_size)
  np.testing.assert_allclose(ours.last_hidden_state[:, 0],
                             hf_outputs.last_hidden_state[:, 0].numpy(), atol=1e-4, rtol=0)
  np.testing.assert_allclose(ours.pooled_output, hf_outputs.pooler_output.numpy(),
                             atol=1e-4, rtol=0)

  def loss(params, cls_only):
    out = BertEncoder(minilm.config, cls_only=cls_only, **variant).apply(
        {"params": params}, batch["input_ids"], batch["segment_ids"], batch["attention_mask"])
    return jnp.mean(out.pooled_output ** 2) + jnp.mean(out.last_hidden_state[:, 0] ** 3)

  full = jax.value_and_grad(loss)(minilm.params, False)
  at_cls = jax.value_and_grad(loss)(minilm.params, True)
  np.testing.assert_allclose(at_cls[0], full[0], rtol=1e-6)
  assert jax.tree.structure(at_cls[1]) == jax.tree.structure(full[1])
  # Within float32 rounding of each leaf's scale; the keys' bias gradient is zero in exact
  # arithmetic (it shifts all of a query's logits alike), rounding noise in both, hence the floor.
  overall = max(float(np.abs(a).max()) for a in jax.tree.leaves(full[1]))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(full[1]), jax.tree.leaves(at_cls[1])):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * float(np.abs(a).max()) + 1e-7 * overall,
                               err_msg=jax.tree_util.keystr(path))


def test_last_layer_at_cls_alone_with_dropout(minilm, batch):
  """In training the [CLS]-only layer runs the explicit attention with dropout: with vanishing
  rates it equals the deterministic result; with BERT's it is random and reproducible."""
  from mtdnn_jax.model_dir import ModelDir
  config = minilm.config.replace(attention_probs_dropout_prob=1e-12, hidden_dropout_prob=1e-12)
  model = ModelDir(minilm.path, config, minilm.params, minilm.tokenizer_settings, {})
  plain = run_encoder(model, batch, cls_only=True)
  vanishing = run_encoder(model, batch, cls_only=True, deterministic=False,
                          rngs={"dropout": jax.random.PRNGKey(0)})
  np.testing.assert_allclose(vanishing.pooled_output, plain.pooled_output, atol=5e-5)
  train = lambda seed: run_encoder(minilm, batch, cls_only=True, deterministic=False,
                                   rngs={"dropout": jax.random.PRNGKey(seed)}).pooled_output
  np.testing.assert_array_equal(train(1), train(1))
  assert np.abs(np.asarray(train(1)) - np.asarray(train(2))).max() > 1e-3
  with pytest.raises(ValueError, match="output_hidden_states"):
    run_encoder(minilm, batch, cls_only=True, output_hidden_states=True)


def test_every_parameter_has_logical_axis_names():
  config = EncoderConfig(vocab_size=30, hidden_size=8, num_hidden_layers=3,
                         num_attention_heads=2, intermediate_size=16,
                         max_position_embeddings=16)
  ids = jnp.zeros((1, 4), jnp.int32)
  boxed = BertEncoder(config).init(jax.random.PRNGKey(0), ids, ids, ids + 1)["params"]
  leaves = jax.tree_util.tree_leaves_with_path(
      boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  allowed = {"vocab", "embed", "heads", "kv", "mlp", "layers", None}
  for path, leaf in leaves:
    name = jax.tree_util.keystr(path)
    assert isinstance(leaf, nn.LogicallyPartitioned), f"{name} has no logical axis names"
    assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= allowed, name
    scanned = name.startswith("['layers']")
    assert (leaf.names[0] == "layers") == scanned, name
    if scanned:
      assert leaf.value.shape[0] == config.num_hidden_layers
  names = {jax.tree_util.keystr(p): leaf.names for p, leaf in leaves}
  assert names["['embeddings']['word_embeddings']['embedding']"] == ("vocab", "embed")
  assert names["['layers']['attention']['query']['kernel']"] == ("layers", "embed", "heads", "kv")
  assert names["['layers']['intermediate']['kernel']"] == ("layers", "embed", "mlp")


def test_sequence_longer_than_position_table_is_refused():
  config = EncoderConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=16, max_position_embeddings=4)
  ids = jnp.zeros((1, 5), jnp.int32)
  with pytest.raises(ValueError, match="exceeds max_position_embeddings=4"):
    BertEncoder(config).init(jax.random.PRNGKey(0), ids, ids, ids + 1)


def test_config_reads_google_and_hf_files(shared_data, minilm_hf_dir):
  google = EncoderConfig.from_json_file(shared_data / "tf_bert_toy" / "bert_config.json")
  assert (google.vocab_size, google.hidden_size, google.num_hidden_layers) == (15, 4, 2)
  hf = EncoderConfig.from_json_file(minilm_hf_dir / "config.json")
  assert (hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads,
          hf.intermediate_size) == (384, 6, 12, 1536)


def test_config_errors_name_the_file_and_key(tmp_path):
  path = tmp_path / "bert_config.json"
  path.write_text('{"vocab_size": 10, "hiden_size": 8}')
  with pytest.raises(InputError, match=r"bert_config.json: unknown config key 'hiden_size' "
                     r"\(did you mean 'hidden_size'\?\)"):
    EncoderConfig.from_json_file(path)
  path.write_text('{"vocab_size": 10, "hidden_size": 10, "num_attention_heads": 3}')
  with pytest.raises(InputError, match="hidden_size: 10 is not divisible"):
    EncoderConfig.from_json_file(path)
  path.write_text('{"vocab_size": 10,\n "hidden_act": "gelu",,}')
  with pytest.raises(InputError, match=r"bert_config.json:2: not valid JSON"):
    EncoderConfig.from_json_file(path)
