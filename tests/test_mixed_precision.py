"""The encoder's bfloat16 products on a CPU (mtdnn_jax/models/mixed_precision.py): the same
values and gradients as float32 products of the same bfloat16 numbers, to bfloat16 rounding;
in the forms XLA:CPU runs on its bfloat16 units; float32 programs untouched."""
import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtdnn_jax import runtime
from mtdnn_jax.data.squad import SPAN_END, SPAN_START
from mtdnn_jax.models import BertEncoder, EncoderConfig, mixed_precision
from mtdnn_jax.models.heads import head_layout
from mtdnn_jax.models.mtdnn import MTDNN
from mtdnn_jax.tasks import load_task_defs
from mtdnn_jax.train import per_example_loss
from tests.tiny_setup import REPO

DENSE = (((1,), (0,)), ((), ()))
PRODUCTS = {  # name: (ours, float32 reference, operand shapes)
    "dense": (lambda x, w: mixed_precision.dot_general(x, w, DENSE), lambda x, w: x @ w,
              [(6, 5), (5, 3)]),
    "dense_to_heads": (lambda x, w: mixed_precision.dot_general(x, w, DENSE),
                       lambda x, w: jnp.einsum("ab,bcd->acd", x, w), [(6, 5), (5, 2, 3)]),
    "dense_from_heads": (lambda x, w: mixed_precision.dot_general(x, w, (((1, 2), (0, 1)), ((), ()))),
                         lambda x, w: jnp.einsum("abc,bcd->ad", x, w), [(6, 2, 3), (2, 3, 4)]),
    "attention_scores": (mixed_precision.attention_scores,
                         lambda q, k: jnp.einsum("btnh,bsnh->bnts", q, k),
                         [(2, 4, 3, 5), (2, 6, 3, 5)]),
    "attention_scores_cls": (mixed_precision.attention_scores,
                             lambda q, k: jnp.einsum("btnh,bsnh->bnts", q, k),
                             [(2, 1, 3, 5), (2, 6, 3, 5)]),
    "attention_context": (mixed_precision.attention_context,
                          lambda p, v: jnp.einsum("bnts,bsnh->btnh", p, v),
                          [(2, 3, 4, 6), (2, 6, 3, 5)]),
    # throughput.py times the weight gradient's product in the form the encoder's backward takes
    "weight_gradient_product": (
        lambda x, g: mixed_precision.product(x, g, (((0,), (0,)), ((), ()))),
        lambda x, g: x.T @ g, [(6, 5), (6, 3)]),
}


@pytest.mark.parametrize("name", PRODUCTS)
def test_products_and_their_gradients_match_float32_to_bfloat16_rounding(name):
  ours, reference, shapes = PRODUCTS[name]
  rng = np.random.default_rng(0)
  operands = [jnp.asarray(rng.normal(size=s), jnp.bfloat16) for s in shapes]
  exact = [x.astype(jnp.float32) for x in operands]  # the same numbers, in float32
  weights = jnp.asarray(rng.normal(size=reference(*exact).shape), jnp.float32)

  def loss(product):
    return lambda *xs: jnp.sum(weights * product(*xs).astype(jnp.float32))

  out = ours(*operands)
  expected = reference(*exact)
  # One rounding of each float32 sum to bfloat16 (8 significant bits).
  np.testing.assert_allclose(out.astype(jnp.float32), expected, rtol=2 ** -8, atol=1e-6)
  grads = jax.grad(loss(ours), argnums=tuple(range(len(shapes))))(*operands)
  expected_grads = jax.grad(loss(reference), argnums=tuple(range(len(shapes))))(*exact)
  for got, want, shape in zip(grads, expected_grads, shapes):
    assert got.dtype == jnp.bfloat16 and got.shape == shape
    # The cotangent (bfloat16 weights · 1) and the result are each rounded once.
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=0, atol=scale * 2 ** -7)


def test_float32_products_are_jax_own():
  """A float32 model's products are the plain dot_general, none of this module's fast forms; on
  a CPU a dense layer's result passes through the identity fence (the one custom VJP) once in
  the forward pass and never in the backward pass."""
  x, w = jnp.ones((4, 3)), jnp.ones((3, 2))
  jaxpr = str(jax.make_jaxpr(jax.grad(
      lambda x, w: mixed_precision.dot_general(x, w, DENSE).sum(), (0, 1)))(x, w))
  plain = str(jax.make_jaxpr(jax.grad(lambda x, w: (x @ w).sum(), (0, 1)))(x, w))
  assert jaxpr.count("dot_general") == plain.count("dot_general")
  assert jaxpr.count("custom_vjp_call") == 1 and "_fast_product" not in jaxpr
  assert jaxpr.count("reduce_precision[exponent_bits=8 mantissa_bits=23]") == 1
  q = jnp.ones((1, 4, 2, 3))
  assert "custom_vjp" not in str(jax.make_jaxpr(mixed_precision.attention_scores)(q, q))


def test_the_fence_is_the_identity_and_so_is_its_gradient():
  fence = jax.jit(mixed_precision._kept_out_of_library_fusions)
  tiny = np.finfo(np.float32).smallest_subnormal
  x = np.array([0.0, -0.0, 1.0, -2.5e-38, tiny, -3 * tiny, 1e-40, np.finfo(np.float32).max,
                np.finfo(np.float32).min, np.inf, -np.inf, np.nan, 1 / 3], np.float32)
  x = np.concatenate([x, np.random.default_rng(0).normal(size=1000).astype(np.float32) * 1e6])
  np.testing.assert_array_equal(np.asarray(fence(x)).view(np.uint32), x.view(np.uint32))
  weights = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  finite = np.where(np.isfinite(x), x, 0)
  grad = jax.grad(lambda v: jnp.sum(weights * mixed_precision._kept_out_of_library_fusions(v)))(finite)
  np.testing.assert_array_equal(np.asarray(grad), weights)


def _dense_dots_in_ynnpack_fusions(compiled_text: str) -> int:
  """Products without batch axes (dense layers; attention's have batch axes) inside the
  computations that YNNPACK fusions call, in optimized HLO text."""
  computations = dict(re.findall(r"\n(%[\w.-]+) [^\n]*\{\n(.*?)\n\}", compiled_text, re.S))
  called = re.findall(r'calls=(%[\w.-]+), [^\n]*"__ynn_fusion"', compiled_text)
  return sum(1 for name in called for line in computations.get(name, "").splitlines()
             if " dot(" in line and "lhs_batch_dims" not in line)


@pytest.mark.skipif(not runtime.onednn_flags_supported(), reason="oneDNN's flags need x86-64 "
                    "and a checked jaxlib")
def test_float32_dense_products_stay_out_of_ynnpack_fusions(monkeypatch):
  """What the fence is for: compiled as the scripts compile (oneDNN's dots), a float32 forward
  pass of 4,096 tokens leaves its dense products to oneDNN; without the fence YNNPACK's fusions
  take them with the element-wise work around them (at 2,048 tokens and fewer XLA:CPU does not,
  fence or not)."""
  config = EncoderConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=256, max_position_embeddings=32)
  model = BertEncoder(config, cls_only=True)
  ids = jnp.ones((256, 16), jnp.int32)
  params = nn.unbox(model.init(jax.random.key(0), ids, ids * 0, ids)["params"])

  def dense_dots_in_ynnpack():
    forward = jax.jit(lambda p: model.apply({"params": p}, ids, ids * 0, ids).pooled_output)
    return _dense_dots_in_ynnpack_fusions(
        forward.lower(params).compile(dict(runtime.ONEDNN_OPTIONS)).as_text())

  fenced = dense_dots_in_ynnpack()
  monkeypatch.setattr(mixed_precision, "_kept_out_of_library_fusions", lambda y: y)
  unfenced = dense_dots_in_ynnpack()
  if unfenced == 0:
    pytest.skip("this XLA:CPU fuses no dense product into YNNPACK's fusions: nothing to fence")
  assert fenced == 0 < unfenced


def _train_step(config: EncoderConfig, dtype, cls_only: bool, batch: int = 3, length: int = 16):
  model = BertEncoder(config, dtype=dtype, cls_only=cls_only)
  ids = jnp.asarray(np.random.default_rng(0).integers(0, config.vocab_size, (batch, length)),
                    jnp.int32)
  mask = jnp.ones((batch, length), jnp.int32).at[0, length - 2:].set(0)
  params = nn.unbox(model.init(jax.random.key(0), ids, jnp.zeros_like(ids), mask)["params"])

  def loss(params):
    out = model.apply({"params": params}, ids, jnp.zeros_like(ids), mask, deterministic=False,
                      rngs={"dropout": jax.random.key(1)})
    return jnp.sum(out.pooled_output.astype(jnp.float32) ** 2)

  tx = optax.adamw(1e-3)

  def step(params, opt_state):
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, grads

  return jax.jit(step), params, tx.init(params)


@pytest.mark.parametrize("cls_only", [False, True], ids=["every_position", "cls_only"])
def test_a_bfloat16_train_step_runs_its_products_with_float32_sums(cls_only):
  """Every product of a bfloat16 encoder's train step (forward and backward) multiplies
  bfloat16 operands into a float32 result (a bfloat16 result is what XLA:CPU upcasts to float32
  products), the weight gradients read a transposed copy (`_transposed_times`), and the compiled step
  runs; its gradients agree with the float32 step's."""
  config = EncoderConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
  step, params, opt_state = _train_step(config, jnp.bfloat16, cls_only)
  lowered = step.lower(params, opt_state).as_text()
  dots = re.findall(r"stablehlo\.dot_general[^\n]*?: \((tensor<[^>]*>), (tensor<[^>]*>)\) -> "
                    r"(tensor<[^>]*>)", lowered)
  element = lambda tensor: tensor.rsplit("x", 1)[-1].rstrip(">")
  kinds = {tuple(element(t) for t in dot) for dot in dots}
  # bfloat16 × bfloat16 → float32 (the encoder); float32 × float32 → float32 (none here but
  # what the encoder does not own); nothing mixed, no bfloat16 result.
  assert ("bf16", "bf16", "f32") in kinds and kinds <= {("bf16", "bf16", "f32"), ("f32", "f32", "f32")}
  assert "stablehlo.optimization_barrier" in lowered
  _, _, grads = jax.block_until_ready(step(params, opt_state))
  _, _, full = _train_step(config, jnp.float32, cls_only)[0](params, opt_state)
  full = dict(jax.tree_util.tree_leaves_with_path(full))
  for path, got in jax.tree_util.tree_leaves_with_path(grads):
    if jax.tree_util.keystr(path).endswith("['key']['bias']"):
      continue  # zero but for rounding: the softmax ignores the constant q·b it adds per query
    want = np.asarray(full[path]).ravel()
    got = np.asarray(got).ravel()
    cosine = got @ want / (np.linalg.norm(got) * np.linalg.norm(want) + 1e-30)
    assert cosine > 0.98, (jax.tree_util.keystr(path), cosine)


@pytest.mark.skipif(not runtime.onednn_flags_supported(), reason="oneDNN's flags need x86-64 "
                    "and a checked jaxlib")
@pytest.mark.parametrize("cls_only", [False, True], ids=["every_position", "cls_only"])
def test_the_bfloat16_step_runs_with_the_kernels_the_scripts_ask_for(cls_only):
  """The scripts compile with oneDNN's dots (mtdnn_jax/runtime.py), the tests with XLA's own
  kernels: the bfloat16 step's products must run under both (some bfloat16 × bfloat16 →
  float32 forms XLA:CPU cannot run at all); odd sizes, a single sequence."""
  config = EncoderConfig(vocab_size=300, hidden_size=48, num_hidden_layers=2,
                         num_attention_heads=3, intermediate_size=80, max_position_embeddings=32)
  step, params, opt_state = _train_step(config, jnp.bfloat16, cls_only, batch=1, length=5)
  compiled = step.lower(params, opt_state).compile(dict(runtime.ONEDNN_OPTIONS))
  _, _, grads = jax.block_until_ready(compiled(params, opt_state))
  assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in jax.tree.leaves(grads))


_KINDS_OF_HEAD = {  # name: (task definitions, batch shape)
    "classification_san_regression": (lambda t: [dataclasses.replace(t["glue"]["rte"], enable_san=True),
                                                 t["glue"]["stsb"], t["glue"]["cola"]], "sentence"),
    "ranking": (lambda t: [t["glue"]["qnlir"]], "ranking"),
    "span": (lambda t: [t["squad"]["squadv2"]], "span"),
    "tagger": (lambda t: [t["ner"]["conll"]], "tags"),
}


def _head_batch(shape: str, layout, rng, batch: int = 4, length: int = 12, vocab: int = 300):
  ids_shape = (batch, 3, length) if shape == "ranking" else (batch, length)
  mask = np.ones(ids_shape, np.int32)
  mask[..., length - 3:] = 0
  mask[0] = 1
  data = {"input_ids": rng.integers(5, vocab, ids_shape).astype(np.int32),
          "segment_ids": (np.arange(length) >= length // 2).astype(np.int32) * np.ones(ids_shape, np.int32),
          "attention_mask": mask,
          "task_id": (np.arange(batch) % len(layout.kind_code())).astype(np.int32)}
  if shape == "sentence":
    data["labels"] = np.array([1, 2.5, 0, 1], np.float32)[:batch]
  elif shape == "ranking":
    data["labels"] = np.array([0, 2, 1, 0], np.int32)[:batch]
    data["candidate_mask"] = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0]], np.int32)[:batch]
  elif shape == "span":  # per-token marks of each answer's start and end
    data["labels"] = np.zeros((batch, length), np.int32)
    data["labels"][:, 3] |= SPAN_START
    data["labels"][:, 5] |= SPAN_END
  else:  # per-token tags, -1 where nothing is scored
    data["labels"] = rng.integers(0, 3, (batch, length)).astype(np.int32)
    data["labels"][:, 0] = -1
  return {k: jnp.asarray(v) for k, v in data.items()}


@pytest.mark.parametrize("kind", list(_KINDS_OF_HEAD))
def test_every_kind_of_head_trains_in_bfloat16(kind):
  """The whole model's loss (encoder and a task head of each kind: SAN, regression and
  classification; ranking over candidates; spans; tags) differentiates in bfloat16 on a CPU,
  with the kernels the scripts ask for as with XLA's own (a bfloat16 product in a form XLA:CPU
  cannot run fails only when it runs), and its encoder gradients point where float32's do."""
  tasks = {name: load_task_defs(REPO / "configs" / "task_defs" / f"{name}.yml")
           for name in ("glue", "squad", "ner")}
  definitions, shape = _KINDS_OF_HEAD[kind]
  layout = head_layout(definitions(tasks))
  config = EncoderConfig(vocab_size=300, hidden_size=48, num_hidden_layers=2,
                         num_attention_heads=3, intermediate_size=80, max_position_embeddings=32)
  batch = _head_batch(shape, layout, np.random.default_rng(0))
  inputs = (batch["input_ids"], batch["segment_ids"], batch["attention_mask"], batch["task_id"])
  params = nn.unbox(MTDNN(config, layout).init(jax.random.key(0), *inputs)["params"])

  def gradients(dtype, compiler_options=None):
    model = MTDNN(config, layout, dtype=dtype)

    def loss(params):
      outputs = model.apply({"params": params}, *inputs, deterministic=False,
                            rngs={"dropout": jax.random.key(1)})
      return jnp.mean(per_example_loss(outputs, batch, layout))

    compiled = jax.jit(jax.grad(loss)).lower(params).compile(compiler_options)
    return jax.block_until_ready(compiled(params))

  want = np.concatenate([np.ravel(g) for g in jax.tree.leaves(gradients(jnp.float32)["encoder"])])
  options = [None] + ([dict(runtime.ONEDNN_OPTIONS)] if runtime.onednn_flags_supported() else [])
  for compiler_options in options:
    got = gradients(jnp.bfloat16, compiler_options)
    got = np.concatenate([np.ravel(np.asarray(g, np.float32)) for g in jax.tree.leaves(got["encoder"])])
    assert np.isfinite(got).all()
    assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.98
