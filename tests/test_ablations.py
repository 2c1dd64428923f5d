"""scripts/ablations.py: its variants compute what they claim, so its ratios compare like with
like. Speed itself is judged by the real run (docs/results/ablations.json), not here."""
import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdnn_jax import runtime
from mtdnn_jax.models import bert
from mtdnn_jax.models.config import EncoderConfig
from mtdnn_jax.models.dropout import Dropout

TINY = EncoderConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16)


def inputs(batch=2, length=8):
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 100, (batch, length)), jnp.int32)
  mask = jnp.ones((batch, length), jnp.int32).at[0, 5:].set(0)
  return ids, jnp.zeros_like(ids), mask


def test_per_layer_arrays_compute_the_stacked_model():
  from scripts.ablations import PerLayerClassifier, StackedClassifier
  stacked = nn.unbox(StackedClassifier(TINY).init(jax.random.key(0), *inputs(), True)["params"])
  layers = stacked["encoder"]["layers"]
  per_layer = {"embeddings": stacked["encoder"]["embeddings"], "Dense_0": stacked["Dense_0"]}
  per_layer.update({f"layer_{i}": jax.tree.map(lambda w, i=i: w[i], layers)
                    for i in range(TINY.num_hidden_layers)})
  expected = StackedClassifier(TINY).apply({"params": stacked}, *inputs(), True)
  got = PerLayerClassifier(TINY).apply({"params": per_layer}, *inputs(), True)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bits", [np.uint16, np.uint8])
def test_narrow_bits_dropout_keeps_one_minus_rate_and_rescales(bits):
  from scripts.ablations import narrow_bits_dropout
  x = jnp.ones((400, 500))
  out = narrow_bits_dropout(bits)(0.1).apply({}, x, False, rngs={"dropout": jax.random.key(3)})
  kept = np.asarray(out) != 0
  # 200k Bernoulli draws: the kept share is within 5 standard deviations of 0.9 (± one level).
  assert abs(kept.mean() - 0.9) < 5 * np.sqrt(0.09 / kept.size) + 1 / (np.iinfo(bits).max + 1)
  np.testing.assert_allclose(np.asarray(out)[kept], 1 / 0.9, rtol=1e-6)


def test_a_dropout_variant_is_traced_with_its_own_dropout():
  from scripts.ablations import (PerElementHashDropout, StackedClassifier,
                                 narrow_bits_dropout, patched_encoder)
  model = StackedClassifier(dataclasses.replace(TINY, hidden_dropout_prob=0.5,
                                                attention_probs_dropout_prob=0.5))
  params = nn.unbox(model.init(jax.random.key(0), *inputs(), True)["params"])

  def train_logits():
    return model.apply({"params": params}, *inputs(), False, rngs={"dropout": jax.random.key(1)})

  ours = train_logits()
  with patched_encoder(Dropout=narrow_bits_dropout(np.uint8)):
    narrow = train_logits()
  assert bert.Dropout is Dropout  # restored after the variant
  assert not np.allclose(narrow, ours)  # other masks: the swap took effect
  np.testing.assert_array_equal(train_logits(), ours)
  with patched_encoder(Dropout=nn.Dropout):
    flax_dropout = train_logits()
  with patched_encoder(Dropout=PerElementHashDropout):
    jax_masks = train_logits()
  # Both draw jax's masks (flax through jax.random, the other through dropout.bernoulli,
  # tests/test_dropout.py): two ways of computing one function, equal but for the rounding of
  # differently fused ops. What we ship cuts each hash in four: other masks.
  np.testing.assert_allclose(flax_dropout, jax_masks, rtol=1e-6, atol=1e-6)
  assert not np.allclose(jax_masks, ours)


def test_study_record(tmp_path):
  from scripts import ablations
  out = tmp_path / "ablations.json"
  out.write_text(json.dumps({"dropout_base": {"kept": True}}))
  ablations.main(["layers", "--shape", "tiny", "--rounds", "1", "--batch", "2", "--out", str(out)])
  results = json.loads(out.read_text())
  assert results["dropout_base"] == {"kept": True}  # another study's record survives
  record = results["layers_tiny"]
  assert (record["shape"], record["batch_size"], record["rounds"]) == ("tiny", 2, 1)
  assert record["host"]["cores"] >= 1 and record["host"]["xla_matmul_gflops"] > 0
  assert set(record["variants"]) == {"stacked", "per_layer_arrays"}
  assert record["variants"]["stacked"]["ratio"] == 1.0
  for r in record["variants"].values():
    assert 0 < r["min"] <= r["median"] <= r["max"]
  ablations.main(["layers", "--shape", "tiny", "--rounds", "1", "--batch", "2", "--tag", "avx2",
                  "--out", str(out)])
  results = json.loads(out.read_text())
  assert results["layers_tiny"] == record  # a tagged run (another host) keeps the untagged one
  assert set(results["layers_tiny_avx2"]["variants"]) == {"stacked", "per_layer_arrays"}
  with pytest.raises(SystemExit):
    ablations.main(["nonsense", "--out", str(out)])


@pytest.mark.skipif(not runtime.onednn_flags_supported(),
                    reason="the oneDNN variants are for x86-64")
def test_kernel_variants_engage_their_libraries_and_compute_the_same_probabilities():
  from scripts.ablations import KERNELS, StackedClassifier, Variant, compiled_step, library_fusions
  ids, segments, mask = inputs(batch=4, length=16)
  batch = {"input_ids": ids, "segment_ids": segments, "attention_mask": mask}
  probabilities, fusions = {}, {}
  # Not the grouped type: where oneDNN cannot compile a group it kills the process, and this
  # one runs the suite (tests/test_runtime.py probes that risk in a subprocess).
  for name, options in {k: v for k, v in KERNELS.items() if k != "onednn_dot_groups"}.items():
    params, step = compiled_step(Variant(StackedClassifier(TINY), compiler_options=options,
                                         evaluate=True), batch)
    probabilities[name] = np.asarray(step(params, jax.random.key(0)))
    fusions[name] = library_fusions(step.as_text())
  assert fusions["onednn_dots"]["onednn"] > 0  # YNNPACK may take none of a tiny model's rest
  assert fusions["xla_default_ynnpack"]["onednn"] == 0 < fusions["xla_default_ynnpack"]["ynn"]
  assert fusions["onednn_dots_no_ynnpack"]["ynn"] == 0 < fusions["onednn_dots_no_ynnpack"]["onednn"]
  assert fusions["xla_own_dots"] == {"onednn": 0, "ynn": 0, "xnn": 0}
  # One seed, one initialisation: the same model. The kernels sum in different orders, and two
  # LayerNorms per layer rescale the rounding: 2e-5 apart on an AVX2 host; a wrong kernel is 1e-2.
  for name, p in probabilities.items():
    np.testing.assert_allclose(p, probabilities["onednn_dots"], rtol=0, atol=1e-4, err_msg=name)


def _dots_contracting_batch_and_sequence(model, params, batch, length) -> int:
  """dot_generals in the train gradient's jaxpr that contract a [batch, seq] pair of axes."""
  def loss(p):
    return model.apply({"params": p}, *inputs(batch, length), False,
                       rngs={"dropout": jax.random.key(1)}).sum()

  count = 0
  def visit(jaxpr):
    nonlocal count
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        sizes = sorted(eqn.invars[0].aval.shape[d] for d in lhs_contract)
        count += sizes == sorted((batch, length))
      for value in eqn.params.values():  # the jaxprs of scan, closed_call, remat, ...
        for inner in (value if isinstance(value, (list, tuple)) else [value]):
          if hasattr(inner, "jaxpr") and hasattr(inner.jaxpr, "eqns"):
            visit(inner.jaxpr)
          elif hasattr(inner, "eqns"):
            visit(inner)
  visit(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  return count


def test_dense_layers_meet_the_tokens_as_rows_of_one_matrix():
  """The encoder's dense layers see [batch·seq, features], so no weight gradient contracts
  batch and sequence as two axes (which XLA:CPU runs behind a transposing copy); the study's
  other variant does, and both compute the same function."""
  from scripts.ablations import StackedClassifier, dense_on_batch_and_sequence, patched_encoder
  batch, length = 3, 5  # sizes no feature axis of TINY has
  model = StackedClassifier(TINY, cls_only=False)
  params = nn.unbox(model.init(jax.random.key(0), *inputs(batch, length), True)["params"])
  assert _dots_contracting_batch_and_sequence(model, params, batch, length) == 0
  shipped = model.apply({"params": params}, *inputs(batch, length), True)
  with patched_encoder(_per_token=dense_on_batch_and_sequence):
    assert _dots_contracting_batch_and_sequence(model, params, batch, length) >= 6
    other = model.apply({"params": params}, *inputs(batch, length), True)
  np.testing.assert_allclose(other, shipped, rtol=1e-5, atol=1e-6)


def test_gelu_and_attention_variants_swap_what_they_name_and_compute_the_same_function(
    monkeypatch):
  from scripts.ablations import (StackedClassifier, erfc_gelu_activation, fused_call_attention,
                                 patched_encoder)
  model = StackedClassifier(TINY)
  params = nn.unbox(model.init(jax.random.key(0), *inputs(), True)["params"])
  forward = lambda: model.apply({"params": params}, *inputs(), True)
  # A new function per trace: jax would reuse the trace of one it has seen.
  traced = lambda: str(jax.make_jaxpr(lambda: forward())())
  shipped = forward()
  assert " erf " in traced() and "erfc" not in traced()
  with patched_encoder(activation=erfc_gelu_activation):
    assert "erfc" in traced()
    np.testing.assert_allclose(forward(), shipped, rtol=1e-5, atol=1e-6)
  calls = []
  fused = jax.nn.dot_product_attention
  monkeypatch.setattr(jax.nn, "dot_product_attention",
                      lambda *a, **k: calls.append(k["implementation"]) or fused(*a, **k))
  forward()
  assert calls == []
  with patched_encoder(attend=fused_call_attention):
    np.testing.assert_allclose(forward(), shipped, rtol=1e-5, atol=1e-6)
    assert calls == ["xla"] * TINY.num_hidden_layers
    with pytest.raises(ValueError, match="no dropout"):
      model.apply({"params": params}, *inputs(), False, rngs={"dropout": jax.random.key(1)})


def test_adjacent_pieces_dropout_places_the_shipped_decisions_on_adjacent_elements():
  """The study's old layout: hash k's four pieces on row elements 4k..4k+3, where keep_mask
  puts piece p on element p·q + k (q a quarter of the row)."""
  from scripts.ablations import AdjacentPiecesDropout
  x, rngs = jnp.ones((3, 40)), {"dropout": jax.random.key(5)}
  shipped = np.asarray(Dropout(0.5).apply({}, x, deterministic=False, rngs=rngs))
  adjacent = np.asarray(AdjacentPiecesDropout(0.5).apply({}, x, deterministic=False, rngs=rngs))
  assert 0 < (shipped == 0).mean() < 1
  np.testing.assert_array_equal(shipped.reshape(3, 4, 10),
                                adjacent.reshape(3, 10, 4).transpose(0, 2, 1))
