"""Task heads, SAN and losses against independent numpy implementations of SPEC.md §1."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtdnn_jax import losses
from mtdnn_jax.errors import InputError
from mtdnn_jax.models.heads import TaskHeads, head_layout
from mtdnn_jax.tasks import load_task_defs
from mtdnn_jax.train import make_train_step, per_example_loss
from tests.tiny_setup import REPO

GLUE = load_task_defs(REPO / "configs" / "task_defs" / "glue.yml")


def softmax(x, axis=-1):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_san(p, states, premise, hypothesis, n_class, turns=5):
  """SPEC.md §1.1 written out with numpy, evaluation mode (all turns averaged), one example."""
  a = softmax(np.where(hypothesis, states @ p["hypothesis_attention"]["kernel"][:, 0]
                       + p["hypothesis_attention"]["bias"][0], -np.inf))
  s = a @ states
  g = p["gru"]
  probs = []
  for _ in range(turns):
    beta = softmax(np.where(premise, states @ (s @ p["premise_attention"]["kernel"]
                                               + p["premise_attention"]["bias"]), -np.inf))
    x = beta @ states
    # GRU (flax.linen.GRUCell's equations)
    r = sigmoid(x @ g["ir"]["kernel"] + g["ir"]["bias"] + s @ g["hr"]["kernel"])
    z = sigmoid(x @ g["iz"]["kernel"] + g["iz"]["bias"] + s @ g["hz"]["kernel"])
    n = np.tanh(x @ g["in"]["kernel"] + g["in"]["bias"] + r * (s @ g["hn"]["kernel"] + g["hn"]["bias"]))
    s = (1 - z) * n + z * s  # the state is updated before this turn is scored (the paper)
    logits = np.concatenate([x, s, np.abs(x - s), x * s]) @ p["classifier"]["kernel"] + p["classifier"]["bias"]
    probs.append(softmax(logits[:n_class]))
  return np.log(np.mean(probs, axis=0))


@pytest.fixture(scope="module")
def heads_setup():
  rte_san = dataclasses.replace(GLUE["rte"], enable_san=True)
  mnli_san = dataclasses.replace(GLUE["mnli"], enable_san=True)
  layout = head_layout([rte_san, GLUE["stsb"], GLUE["cola"], mnli_san, GLUE["sst"]])
  hidden, batch, length = 8, 6, 7
  rng = np.random.default_rng(0)
  states = rng.normal(size=(batch, length, hidden)).astype(np.float32)
  pooled = np.tanh(rng.normal(size=(batch, hidden))).astype(np.float32)
  attention = np.ones((batch, length), np.int32)
  attention[1, 5:] = 0
  segments = np.zeros((batch, length), np.int32)
  segments[:, 3:] = 1
  task_id = np.array([0, 1, 2, 3, 4, 3], np.int32)
  module = TaskHeads(layout, hidden)
  params = nn.unbox(module.init(jax.random.PRNGKey(1), states, pooled, attention, segments,
                                task_id)["params"])
  # Random biases too, so that a mixed-up bias would show.
  params = jax.tree.map(lambda x: x + 0.1 * rng.normal(size=x.shape).astype(np.float32), params)
  outputs = module.apply({"params": params}, states, pooled, attention, segments, task_id)
  return layout, params, (states, pooled, attention, segments, task_id), outputs


def test_san_matches_numpy_reference(heads_setup):
  layout, params, (states, _, attention, segments, task_id), outputs = heads_setup
  san_rows = {0: 0, 3: 1}  # rte is SAN head 0, mnli SAN head 1
  for example, task in enumerate(task_id):
    if task not in san_rows:
      continue
    p = jax.tree.map(lambda x: np.asarray(x[san_rows[task]]), params["san"])
    real = attention[example].astype(bool)
    expected = numpy_san(p, states[example], real & (segments[example] == 0),
                         real & (segments[example] == 1), layout.heads[task].n_class)
    got = np.asarray(outputs.logits[example])
    np.testing.assert_allclose(got[:len(expected)], expected, atol=1e-5)
    assert np.all(got[len(expected):] == losses.MASKED)


def test_linear_and_scorer_heads_match_numpy(heads_setup):
  layout, params, (_, pooled, _, _, task_id), outputs = heads_setup
  # cola is classifier row 0, sst row 1; stsb is scorer row 0.
  for example, task, row in ((2, 2, 0), (4, 4, 1)):
    kernel, bias = np.asarray(params["classifier"]["kernel"][row]), np.asarray(params["classifier"]["bias"][row])
    expected = pooled[example] @ kernel + bias
    np.testing.assert_allclose(outputs.logits[example, :2], expected[:2], atol=1e-5)
    assert np.all(np.asarray(outputs.logits[example, 2:]) == losses.MASKED)  # 2-class task
  expected = pooled[1] @ np.asarray(params["scorer"]["kernel"][0])[:, 0] + float(params["scorer"]["bias"][0, 0])
  assert float(outputs.scores[1]) == pytest.approx(float(expected), abs=1e-5)


def test_heads_are_stacked_on_a_tasks_axis(heads_setup):
  _, params, _, _ = heads_setup
  assert params["classifier"]["kernel"].shape == (2, 8, 3)  # cola, sst; padded to 3 classes
  assert params["san"]["classifier"]["kernel"].shape == (2, 32, 3)  # rte, mnli
  assert params["scorer"]["kernel"].shape == (1, 8, 1)  # stsb


def test_san_on_a_one_output_task_is_refused():
  with pytest.raises(InputError, match="SAN needs several classes"):
    head_layout([dataclasses.replace(GLUE["stsb"], enable_san=True)])


def test_per_example_loss_selects_each_tasks_loss(heads_setup):
  layout, _, (_, _, _, _, task_id), outputs = heads_setup
  labels = np.array([1, 3.2, 0, 2, 1, 0], np.float32)
  got = np.asarray(per_example_loss(outputs, {"labels": labels, "task_id": task_id}, layout))
  logits, scores = np.asarray(outputs.logits), np.asarray(outputs.scores)
  for i, task in enumerate(task_id):
    if task == 1:  # stsb: squared error of the score
      assert got[i] == pytest.approx((scores[i] - 3.2) ** 2, rel=1e-5)
    else:
      log_probs = logits[i] - np.log(np.exp(logits[i] - logits[i].max()).sum()) - logits[i].max()
      assert got[i] == pytest.approx(-log_probs[int(labels[i])], rel=1e-5)


def test_losses_against_numpy():
  rng = np.random.default_rng(3)
  p, q = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
  pp, qq = softmax(p), softmax(q)
  kl = np.sum(pp * np.log(pp / qq), -1)
  np.testing.assert_allclose(losses.kl_divergence(p, q), kl, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(losses.symmetric_kl(p, q), kl + np.sum(qq * np.log(qq / pp), -1), rtol=1e-5)
  np.testing.assert_allclose(losses.symmetric_kl(p, q), losses.symmetric_kl(q, p), rtol=1e-6)
  np.testing.assert_allclose(losses.symmetric_kl(p, p), 0, atol=1e-6)
  labels = np.array([0, 3, 1, 2, 2])
  np.testing.assert_allclose(losses.cross_entropy(p, labels), -np.log(pp[np.arange(5), labels]), atol=1e-6,
                             rtol=1e-5)
  np.testing.assert_allclose(losses.mean_squared_error(np.array([1.0, 2.0]), np.array([0.5, 4.0])),
                             [0.25, 4.0])
  mask = np.array([[1, 1, 0, 0]] * 5)
  expected = -np.log(softmax(np.where(mask, p, -np.inf))[np.arange(5), [0, 1, 1, 0, 1]])
  np.testing.assert_allclose(losses.ranking_cross_entropy(p, mask, np.array([0, 1, 1, 0, 1])),
                             expected, rtol=1e-5)


def test_js_and_hellinger_hand_computed():
  # p = (1/2, 1/2), q = (9/10, 1/10); m = (7/10, 3/10)
  p, q = np.log([[0.5, 0.5]]), np.log([[0.9, 0.1]])
  js = 0.5 * (0.5 * np.log(0.5 / 0.7) + 0.5 * np.log(0.5 / 0.3)) + \
       0.5 * (0.9 * np.log(0.9 / 0.7) + 0.1 * np.log(0.1 / 0.3))
  assert float(losses.js_divergence(p, q)[0]) == pytest.approx(js, rel=1e-5)
  hellinger = 0.5 * ((np.sqrt(0.5) - np.sqrt(0.9)) ** 2 + (np.sqrt(0.5) - np.sqrt(0.1)) ** 2)
  assert float(losses.hellinger_distance(p, q)[0]) == pytest.approx(hellinger, rel=1e-5)
  assert float(losses.js_divergence(p, p)[0]) == pytest.approx(0, abs=1e-7)


def test_heads_of_tasks_absent_from_a_batch_do_not_move():
  """Adam's momentum must not move (or decay the moments of) a head whose task had no example
  in the batch, as in the reference where such a head gets no gradient and is skipped."""
  from mtdnn_jax.models import EncoderConfig
  from mtdnn_jax.models.mtdnn import MTDNN
  layout = head_layout([GLUE["cola"], GLUE["sst"]])
  config = EncoderConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
  model = MTDNN(config, layout)
  ids = jnp.ones((4, 6), jnp.int32)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), ids, ids, ids, jnp.zeros(4, jnp.int32))["params"])
  tx = optax.adam(1e-2)
  state = {"step": jnp.array(0), "params": params, "opt_state": tx.init(params),
           "rng": jax.random.PRNGKey(1)}
  step = jax.jit(make_train_step(model, layout, tx, 0.0, hold_absent_heads=True))
  batch = lambda task: {"input_ids": ids, "segment_ids": ids * 0, "attention_mask": ids,
                        "task_id": jnp.full(4, task, jnp.int32), "labels": jnp.array([0, 1, 0, 1]),
                        "weights": jnp.ones(4)}
  state, _ = step(state, batch(0))  # both heads exist; only cola (row 0) has examples
  state, _ = step(state, batch(1))  # now only sst (row 1)
  after_sst = jax.tree.map(np.asarray, state)
  state, _ = step(state, batch(1))  # sst again: cola's row must not move, though its Adam
  kernel = np.asarray(state["params"]["heads"]["classifier"]["kernel"])  # momentum is non-zero
  np.testing.assert_array_equal(kernel[0], after_sst["params"]["heads"]["classifier"]["kernel"][0])
  assert np.abs(kernel[1] - after_sst["params"]["heads"]["classifier"]["kernel"][1]).max() > 0
  mu = np.asarray(state["opt_state"][0].mu["heads"]["classifier"]["kernel"])
  np.testing.assert_array_equal(mu[0], after_sst["opt_state"][0].mu["heads"]["classifier"]["kernel"][0])
  assert np.abs(mu[0]).max() > 0


def test_ranking_scores_each_candidate_pair_and_softmaxes_over_them():
  from mtdnn_jax.models import BertEncoder, EncoderConfig
  from mtdnn_jax.models.mtdnn import MTDNN
  layout = head_layout([GLUE["qnlir"], GLUE["stsb"]])
  config = EncoderConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
  rng = np.random.default_rng(5)
  ids = jnp.asarray(rng.integers(5, 40, size=(2, 3, 6)), jnp.int32)  # 2 questions, 3 candidates
  segments = jnp.asarray(np.tile([0, 0, 0, 1, 1, 1], (2, 3, 1)), jnp.int32)
  mask = jnp.ones((2, 3, 6), jnp.int32)
  task_id = jnp.zeros(2, jnp.int32)
  model = MTDNN(config, layout)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), ids, segments, mask, task_id)["params"])
  outputs = model.apply({"params": params}, ids, segments, mask, task_id)
  assert outputs.logits is None and outputs.scores.shape == (2, 3)
  pooled = BertEncoder(config).apply({"params": params["encoder"]}, ids.reshape(6, 6),
                                     segments.reshape(6, 6), mask.reshape(6, 6)).pooled_output
  w, b = np.asarray(params["heads"]["scorer"]["kernel"][0]), np.asarray(params["heads"]["scorer"]["bias"][0])
  np.testing.assert_allclose(outputs.scores, (np.asarray(pooled) @ w + b).reshape(2, 3), atol=1e-5)
  candidate_mask = jnp.array([[1, 1, 1], [1, 1, 0]])
  labels = jnp.array([2, 1])
  loss = per_example_loss(outputs, {"labels": labels, "candidate_mask": candidate_mask,
                                    "task_id": task_id}, layout)
  scores = np.asarray(outputs.scores)
  expected = [-np.log(softmax(scores[0])[2]), -np.log(softmax(scores[1, :2])[1])]
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_an_encoder_under_heads_that_read_only_cls_computes_its_last_layer_there_alone():
  """Classifier and scorer heads read the pooled [CLS] alone, so MTDNN runs the encoder's last
  layer at [CLS] only (fewer FLOPs, the same logits); SAN, tagging and span heads read every
  token."""
  from mtdnn_jax.models import BertEncoder, EncoderConfig
  from mtdnn_jax.models.mtdnn import MTDNN
  assert not head_layout([GLUE["mrpc"], GLUE["stsb"]]).reads_every_token
  assert head_layout([GLUE["mrpc"], dataclasses.replace(GLUE["mnli"], enable_san=True)]
                     ).reads_every_token
  config = EncoderConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
  rng = np.random.default_rng(2)
  ids = jnp.asarray(rng.integers(5, 40, size=(4, 12)), jnp.int32)
  mask = jnp.asarray(np.arange(12)[None] < np.array([[12], [7], [9], [3]]), jnp.int32)
  task_id = jnp.zeros(4, jnp.int32)
  model = MTDNN(config, head_layout([GLUE["mrpc"]]))
  params = nn.unbox(model.init(jax.random.PRNGKey(0), ids, ids * 0, mask, task_id)["params"])
  logits = jax.jit(lambda p: model.apply({"params": p}, ids, ids * 0, mask, task_id).logits)
  pooled = jax.jit(lambda p: BertEncoder(config).apply({"params": p}, ids, ids * 0,
                                                        mask).pooled_output)
  w = np.asarray(params["heads"]["classifier"]["kernel"][0])
  b = np.asarray(params["heads"]["classifier"]["bias"][0])
  np.testing.assert_allclose(logits(params)[:, :2], np.asarray(pooled(params["encoder"])) @ w + b,
                             atol=1e-5)
  # The whole model, head included, does less than the encoder alone at every position.
  flops = lambda f, p: f.lower(p).compile().cost_analysis()["flops"]
  assert flops(logits, params) < flops(pooled, params["encoder"])
