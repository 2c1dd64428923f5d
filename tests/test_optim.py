"""The optimizer chain against independent references: numpy, torch.optim, hand-computed values."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from mtdnn_jax.errors import InputError
from mtdnn_jax.optim import (build_optimizer, decay_mask, default_optim_config, learning_rate_at,
                             learning_rate_schedule, update_ema)

NUM_LAYERS, HIDDEN, HEADS, HEAD_DIM, INTERMEDIATE, TASKS = 3, 4, 2, 2, 6, 2

# Every leaf of tiny_params() that is a bias or a normalisation parameter, written out by hand.
NOT_DECAYED = {
    "encoder/embeddings/LayerNorm/scale", "encoder/embeddings/LayerNorm/bias",
    "encoder/layers/attention/query/bias", "encoder/layers/attention/key/bias",
    "encoder/layers/attention/value/bias", "encoder/layers/attention/out/bias",
    "encoder/layers/attention_norm/scale", "encoder/layers/attention_norm/bias",
    "encoder/layers/intermediate/bias", "encoder/layers/output/bias",
    "encoder/layers/output_norm/scale", "encoder/layers/output_norm/bias",
    "encoder/pooler/bias", "heads/classification/bias", "heads/san/gru/ir/bias",
    "heads/san/norm/scale", "heads/san/norm/bias",
}


def tiny_params(seed=0):
  """A small tree shaped like the MT-DNN parameters: stacked encoder layers, stacked heads."""
  shapes = {
      "encoder": {
          "embeddings": {"word_embeddings": {"embedding": (10, HIDDEN)},
                         "position_embeddings": {"embedding": (8, HIDDEN)},
                         "token_type_embeddings": {"embedding": (2, HIDDEN)},
                         "LayerNorm": {"scale": (HIDDEN,), "bias": (HIDDEN,)}},
          "layers": {
              "attention": {
                  **{name: {"kernel": (NUM_LAYERS, HIDDEN, HEADS, HEAD_DIM),
                            "bias": (NUM_LAYERS, HEADS, HEAD_DIM)}
                     for name in ("query", "key", "value")},
                  "out": {"kernel": (NUM_LAYERS, HEADS, HEAD_DIM, HIDDEN),
                          "bias": (NUM_LAYERS, HIDDEN)}},
              "attention_norm": {"scale": (NUM_LAYERS, HIDDEN), "bias": (NUM_LAYERS, HIDDEN)},
              "intermediate": {"kernel": (NUM_LAYERS, HIDDEN, INTERMEDIATE),
                               "bias": (NUM_LAYERS, INTERMEDIATE)},
              "output": {"kernel": (NUM_LAYERS, INTERMEDIATE, HIDDEN),
                         "bias": (NUM_LAYERS, HIDDEN)},
              "output_norm": {"scale": (NUM_LAYERS, HIDDEN), "bias": (NUM_LAYERS, HIDDEN)}},
          "pooler": {"kernel": (HIDDEN, HIDDEN), "bias": (HIDDEN,)}},
      "heads": {
          "classification": {"kernel": (TASKS, HIDDEN, 3), "bias": (TASKS, 3)},
          "san": {"gru": {"ir": {"kernel": (TASKS, HIDDEN, HIDDEN), "bias": (TASKS, HIDDEN)}},
                  "norm": {"scale": (TASKS, HIDDEN), "bias": (TASKS, HIDDEN)}}},
  }
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda shape: rng.normal(size=shape).astype(np.float32), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


def path_names(tree):
  return {"/".join(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def optim_config(**overrides):
  config = default_optim_config()
  config.update(overrides)
  return config


# Plain reference settings: one fixed learning rate, no clipping.
PLAIN = dict(schedule="constant", warmup=0.0, clip_norm=0.0, lr=1e-2, weight_decay=0.1)


def run_steps(optimizer, params, grads_sequence):
  """Applies `optimizer` to each gradient in turn; returns the params after every step."""
  @jax.jit
  def step(params, state, grads):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = optimizer.init(params)
  history = []
  for grads in grads_sequence:
    params, state = step(params, state, grads)
    history.append(params)
  return history


def first_updates(optimizer, params, grads):
  """The updates `optimizer` proposes for its first step."""
  return jax.jit(lambda: optimizer.update(grads, optimizer.init(params), params)[0])()


def assert_trees_close(actual, expected, **tolerance):
  actual, expected = path_names(actual), path_names(expected)
  assert actual.keys() == expected.keys()
  for name in actual:
    np.testing.assert_allclose(np.asarray(actual[name]), np.asarray(expected[name]),
                               err_msg=name, **tolerance)


def random_grads(count, seed=1):
  return [tiny_params(seed + i) for i in range(count)]


def test_decay_mask_excludes_exactly_biases_and_norms():
  mask = path_names(decay_mask(tiny_params()))
  assert {name for name, decayed in mask.items() if not decayed} == NOT_DECAYED
  assert mask["encoder/embeddings/word_embeddings/embedding"]
  assert mask["heads/san/gru/ir/kernel"]


def test_adamax_matches_numpy_adamax_with_decoupled_decay_and_optax_adamaxw():
  lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.1
  params, grads_sequence = tiny_params(), random_grads(4)
  history = run_steps(build_optimizer(optim_config(**PLAIN), total_steps=4), params,
                      grads_sequence)

  expected = {name: value.astype(np.float64) for name, value in path_names(params).items()}
  first_moment = {name: np.zeros_like(value) for name, value in expected.items()}
  infinity_norm = {name: np.zeros_like(value) for name, value in expected.items()}
  for t, grads in enumerate(grads_sequence, start=1):
    for name, grad in path_names(grads).items():
      first_moment[name] = b1 * first_moment[name] + (1 - b1) * grad
      infinity_norm[name] = np.maximum(b2 * infinity_norm[name], np.abs(grad) + eps)
      direction = first_moment[name] / (1 - b1 ** t) / infinity_norm[name]
      decay = 0.0 if name in NOT_DECAYED else wd * expected[name]
      expected[name] = expected[name] - lr * (direction + decay)
  actual = path_names(history[-1])
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)

  hand_mask = jax.tree_util.tree_map_with_path(
      lambda path, _: "/".join(k.key for k in path) not in NOT_DECAYED, params)
  reference = optax.adamaxw(lr, b1, b2, eps, weight_decay=wd, mask=hand_mask)
  assert_trees_close(history[-1], run_steps(reference, params, grads_sequence)[-1],
                     rtol=1e-6, atol=1e-7)


def test_weight_decay_moves_kernels_but_not_biases_or_norms():
  lr, wd = PLAIN["lr"], PLAIN["weight_decay"]
  params = tiny_params()
  zero_grads = jax.tree.map(np.zeros_like, params)
  after = path_names(run_steps(build_optimizer(optim_config(**PLAIN), 1), params,
                               [zero_grads])[0])
  for name, before in path_names(params).items():
    if name in NOT_DECAYED:
      np.testing.assert_array_equal(after[name], before, err_msg=name)
    else:
      np.testing.assert_allclose(after[name], before * (1 - lr * wd), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("name, torch_optimizer, torch_options", [
    ("adamw", torch.optim.AdamW, {}),
    ("adam", torch.optim.Adam, {}),  # L2 decay added to the gradient
    ("radam", torch.optim.RAdam, {"decoupled_weight_decay": True}),
])
def test_adam_family_matches_torch_optim(name, torch_optimizer, torch_options):
  # 8 steps take RAdam past its un-rectified start (SMA length >= 5 from step 6 on).
  params, grads_sequence = tiny_params(), random_grads(8)
  config = optim_config(**PLAIN, name=name)
  actual = path_names(run_steps(build_optimizer(config, 8), params, grads_sequence)[-1])

  tensors = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True)
             for name, value in path_names(params).items()}
  groups = [
      {"params": [t for n, t in tensors.items() if n not in NOT_DECAYED],
       "weight_decay": config.weight_decay},
      {"params": [t for n, t in tensors.items() if n in NOT_DECAYED], "weight_decay": 0.0},
  ]
  reference = torch_optimizer(groups, lr=config.lr, betas=(config.b1, config.b2), eps=config.eps,
                              **torch_options)
  for grads in grads_sequence:
    for leaf_name, grad in path_names(grads).items():
      tensors[leaf_name].grad = torch.tensor(grad, dtype=torch.float64)
    reference.step()
  # atol covers float32 RAdam: its rectification term takes the difference of two numbers near
  # 2/(1-b2) ~ 2000 (torch computes it in Python floats); a misplaced decay is off by ~1e-3.
  for leaf_name, tensor in tensors.items():
    np.testing.assert_allclose(actual[leaf_name], tensor.detach().numpy(), rtol=1e-5, atol=1e-5,
                               err_msg=leaf_name)


def test_bert_schedule_warms_up_then_decays_linearly_to_zero():
  # 100 updates, 10 of them warm-up.
  schedule = learning_rate_schedule(optim_config(lr=1e-3, warmup=0.1, schedule="bert"), 100)
  for step, expected in [(0, 0.0), (5, 5e-4), (10, 1e-3), (55, 5e-4), (99, 1e-3 / 90),
                         (100, 0.0)]:
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-9), step


def test_cosine_schedule_warms_up_then_follows_half_a_cosine():
  schedule = learning_rate_schedule(optim_config(lr=1e-3, warmup=0.1, schedule="cosine"), 100)
  # step 25 is 15 of the 90 decay steps in: 0.5 * (1 + cos(pi / 6)).
  for step, expected in [(0, 0.0), (5, 5e-4), (10, 1e-3), (25, 0.5e-3 * (1 + math.sqrt(3) / 2)),
                         (55, 5e-4), (100, 0.0)]:
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-9), step


def test_constant_schedule_with_and_without_warmup():
  warm = learning_rate_schedule(optim_config(lr=1e-3, warmup=0.1, schedule="constant"), 100)
  assert [float(warm(s)) for s in (0, 5, 10, 99)] == pytest.approx([0.0, 5e-4, 1e-3, 1e-3])
  cold = learning_rate_schedule(optim_config(lr=1e-3, warmup=0.0, schedule="constant"), 100)
  assert float(cold(0)) == pytest.approx(1e-3)


def test_schedule_counts_optimizer_updates_under_accumulation():
  # 400 micro-batches with k=4 are 100 updates: the same curve as test_bert_schedule.
  config = optim_config(lr=1e-3, warmup=0.1, schedule="bert", grad_accumulation_steps=4)
  assert float(learning_rate_schedule(config, 400)(55)) == pytest.approx(5e-4)
  assert learning_rate_at(config, 400, step=4 * 55 + 3) == pytest.approx(5e-4)
  assert learning_rate_at(config, 400, step=4 * 10) == pytest.approx(1e-3)


def test_clipping_scales_a_gradient_of_norm_10_to_norm_1():
  params = tiny_params()
  grads = jax.tree.map(np.zeros_like, params)
  grads["heads"]["classification"]["bias"][0, 0] = 6.0
  grads["encoder"]["pooler"]["bias"][1] = 8.0
  plain_sgd = dict(PLAIN, name="sgd", lr=1.0, weight_decay=0.0)

  for clip_norm, expected_scale in [(1.0, 0.1), (0.0, 1.0)]:  # 0 disables clipping
    optimizer = build_optimizer(optim_config(**dict(plain_sgd, clip_norm=clip_norm)), 1)
    updates = first_updates(optimizer, params, grads)
    assert float(optax.tree.norm(updates)) == pytest.approx(10.0 * expected_scale, rel=1e-6)
    assert_trees_close(updates, jax.tree.map(lambda g: -expected_scale * g, grads), rtol=1e-6)


def test_accumulating_4_micro_batches_equals_one_step_on_their_mean():
  params, micro_grads = tiny_params(), random_grads(8)
  common = dict(lr=1e-2, warmup=0.1, schedule="bert", clip_norm=1.0)
  accumulated = run_steps(build_optimizer(optim_config(**common, grad_accumulation_steps=4), 8),
                          params, micro_grads)
  mean_grads = [jax.tree.map(lambda *g: np.mean(g, axis=0), *micro_grads[i:i + 4])
                for i in (0, 4)]
  # 8 micro-batches with k=4 are the 2 updates of this run, learning rates 1e-2 then 5e-3.
  direct = run_steps(build_optimizer(optim_config(**common), 2), params, mean_grads)

  for micro_step in range(3):  # nothing moves until the 4th micro-batch
    assert_trees_close(accumulated[micro_step], params, rtol=0, atol=0)
  assert_trees_close(accumulated[3], direct[0], rtol=1e-5, atol=1e-7)
  assert_trees_close(accumulated[7], direct[1], rtol=1e-5, atol=1e-7)


def test_freeze_encoder_trains_only_the_heads():
  params = tiny_params()
  optimizer = build_optimizer(optim_config(**PLAIN, freeze_encoder=True), 1)
  after = run_steps(optimizer, params, random_grads(1))[0]
  assert_trees_close(after["encoder"], params["encoder"], rtol=0, atol=0)
  for name, value in path_names(after["heads"]).items():
    assert not np.allclose(value, path_names(params["heads"])[name]), name
  # The frozen encoder carries no optimizer moments: only the heads' two Adamax moments and
  # a few step counters.
  head_size = sum(x.size for x in jax.tree.leaves(params["heads"]))
  state_size = sum(np.size(x) for x in jax.tree.leaves(optimizer.init(params)))
  assert 2 * head_size <= state_size < 2 * head_size + 10


def test_layer_decay_scales_each_stacked_layer_and_the_embeddings():
  params, grads = tiny_params(), tiny_params(seed=7)
  plain_sgd = dict(PLAIN, name="sgd", weight_decay=0.0)

  def updates_with(layer_decay):
    optimizer = build_optimizer(optim_config(**plain_sgd, layer_decay=layer_decay), 1)
    return path_names(first_updates(optimizer, params, grads))

  decayed, undecayed = updates_with(0.5), updates_with(1.0)
  # 3 layers at decay 0.5: bottom layer 0.5**3, middle 0.5**2, top 0.5; embeddings 0.5**4.
  per_layer = [0.125, 0.25, 0.5]
  for name in decayed:
    if name.startswith("encoder/layers/"):
      for layer, scale in enumerate(per_layer):
        np.testing.assert_allclose(decayed[name][layer], scale * undecayed[name][layer],
                                   rtol=1e-6, err_msg=f"{name}[{layer}]")
    else:
      scale = 0.0625 if name.startswith("encoder/embeddings/") else 1.0  # pooler, heads: 1
      np.testing.assert_allclose(decayed[name], scale * undecayed[name], rtol=1e-6, err_msg=name)


def test_update_ema():
  ema = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(-1.0)}
  params = {"w": jnp.array([3.0, 4.0]), "b": jnp.array(1.0)}
  averaged = update_ema(ema, params, decay=0.9)
  np.testing.assert_allclose(averaged["w"], [1.2, 2.2], rtol=1e-6)
  np.testing.assert_allclose(averaged["b"], -0.8, rtol=1e-6)
  assert averaged["w"].dtype == jnp.float32
  np.testing.assert_array_equal(update_ema(ema, params, decay=0.0)["w"], params["w"])


@pytest.mark.parametrize("overrides, total_steps, field, words", [
    ({"name": "adamq"}, 10, "optim.name", ["unknown optimizer 'adamq'", "adamax", "radam"]),
    ({"name": "adamx"}, 10, "optim.name", ["did you mean 'adamax'"]),
    ({"schedule": "linear"}, 10, "optim.schedule", ["unknown schedule 'linear'", "bert"]),
    ({"lr": 0.0}, 10, "optim.lr", ["> 0"]),
    ({"warmup": 1.0}, 10, "optim.warmup", ["[0, 1)"]),
    ({"warmup": -0.1}, 10, "optim.warmup", ["[0, 1)"]),
    ({"layer_decay": 0.0}, 10, "optim.layer_decay", ["(0, 1]"]),
    ({"layer_decay": 1.5}, 10, "optim.layer_decay", ["(0, 1]"]),
    ({"grad_accumulation_steps": 0}, 10, "optim.grad_accumulation_steps", [">= 1"]),
    ({"grad_accumulation_steps": 4}, 3, "optim.grad_accumulation_steps", ["no optimizer update"]),
    ({"clip_norm": -1.0}, 10, "optim.clip_norm", [">= 0"]),
    ({"ema_decay": 1.0}, 10, "optim.ema_decay", ["[0, 1)"]),
])
def test_bad_configs_are_refused_naming_the_field(overrides, total_steps, field, words):
  with pytest.raises(InputError) as error:
    build_optimizer(optim_config(**overrides), total_steps)
  assert error.value.field == field and field in str(error.value)
  for word in words:
    assert word in str(error.value)
