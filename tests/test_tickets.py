"""Super tickets (SPEC.md §5): unit masks, importance scores, ticket files, training under them."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdnn_jax import tickets
from mtdnn_jax.errors import InputError
from mtdnn_jax.models import BertEncoder, EncoderConfig
from mtdnn_jax.train import train_and_evaluate
from tests.helpers import run_cli
from tests.tiny_setup import tiny_config

CONFIG = EncoderConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=64)
IDS = jax.random.randint(jax.random.PRNGKey(1), (3, 10), 0, 50)
SEGMENTS = jnp.zeros_like(IDS).at[:, 5:].set(1)
MASK = jnp.ones_like(IDS).at[2, 7:].set(0)


def encoder_params():
  params = BertEncoder(CONFIG).init(jax.random.PRNGKey(0), IDS, SEGMENTS, MASK)["params"]
  # Random biases, so that a head or neuron silenced the other way has nothing left to add.
  leaves, tree = jax.tree.flatten(nn.unbox(params))
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.02 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


@jax.jit
def encode(params):
  return BertEncoder(CONFIG).apply({"params": params}, IDS, SEGMENTS, MASK).last_hidden_state


def silenced_at_the_source(params, heads, neurons):
  """The same units silenced another way: a head's value projection zeroed (its context is a
  mix of zero vectors), a neuron's input projection zeroed (GELU(0) = 0)."""
  params = jax.tree.map(lambda x: x, params)
  layers = params["layers"]
  value, intermediate = layers["attention"]["value"], layers["intermediate"]
  for layer, head in heads:
    value["kernel"] = value["kernel"].at[layer, :, head].set(0.0)
    value["bias"] = value["bias"].at[layer, head].set(0.0)
  for layer, neuron in neurons:
    intermediate["kernel"] = intermediate["kernel"].at[layer, :, neuron].set(0.0)
    intermediate["bias"] = intermediate["bias"].at[layer, neuron].set(0.0)
  return params


def test_masking_output_rows_silences_the_heads_and_neurons():
  params = encoder_params()
  heads, neurons = [(0, 1), (1, 3)], [(0, 5), (1, 0), (1, 63)]
  head_mask, ffn_mask = np.ones((2, 4)), np.ones((2, 64))
  for unit in heads:
    head_mask[unit] = 0
  for unit in neurons:
    ffn_mask[unit] = 0
  masked = encode(tickets.mask_encoder(params, jnp.asarray(head_mask), jnp.asarray(ffn_mask)))
  expected = encode(silenced_at_the_source(params, heads, neurons))
  np.testing.assert_allclose(masked, expected, atol=2e-6)
  assert np.abs(masked - encode(params)).max() > 1e-2  # the units did matter


def test_importance_is_the_derivative_in_the_units_scale():
  """unit_sensitivity (<∇W, W> over the output rows) against central differences of the loss
  when the head's value projection, or the neuron's output row, is scaled by 1 ± ε."""
  params = encoder_params()
  weights = jax.random.normal(jax.random.PRNGKey(3), (3, 10, 32))
  loss = lambda p: jnp.sum(encode(p) * weights)
  heads, ffn = tickets.unit_sensitivity(jax.grad(loss)(params), params)
  assert heads.shape == (2, 4) and ffn.shape == (2, 64)

  def scaled(layer, unit, by, head):
    p = jax.tree.map(lambda x: x, params)
    if head:
      value = p["layers"]["attention"]["value"]
      value["kernel"] = value["kernel"].at[layer, :, unit].multiply(by)
      value["bias"] = value["bias"].at[layer, unit].multiply(by)
    else:
      out = p["layers"]["output"]
      out["kernel"] = out["kernel"].at[layer, unit].multiply(by)
    return p

  eps = 0.1  # float32 sums of ~1000 terms: smaller steps drown in rounding
  for layer, unit, head, analytic in [(0, 2, True, heads[0, 2]), (1, 0, True, heads[1, 0]),
                                      (0, 7, False, ffn[0, 7]), (1, 40, False, ffn[1, 40])]:
    numeric = (loss(scaled(layer, unit, 1 + eps, head)) -
               loss(scaled(layer, unit, 1 - eps, head))) / (2 * eps)
    assert float(analytic) == pytest.approx(float(numeric), rel=2e-2, abs=1e-3)


def test_prune_mask_hand_computed():
  importance = np.array([[3.0, 4.0], [1.0, 0.0]])  # per layer normalised: [.6, .8], [1, 0]
  np.testing.assert_array_equal(tickets.prune_mask(importance, 0.0), np.ones((2, 2)))
  np.testing.assert_array_equal(tickets.prune_mask(importance, 0.25), [[1, 1], [1, 0]])
  np.testing.assert_array_equal(tickets.prune_mask(importance, 0.5), [[0, 1], [1, 0]])
  # 0.6 of 4 units rounds to 2; the normalised scores, not the raw ones, decide: layer 1's
  # raw 1.0 is smaller than layer 0's 3.0, yet it is that layer's most important unit.
  np.testing.assert_array_equal(tickets.prune_mask(importance, 0.6), [[0, 1], [1, 0]])
  with pytest.raises(ValueError):
    tickets.prune_mask(importance, 1.0)


def write(path, document):
  path.write_text(json.dumps(document))
  return path


@pytest.mark.parametrize("document, field, message", [
    ({"tasks": {}}, "format", "not a super ticket"),
    ({"format": tickets.FORMAT, "tasks": {"mnli": {}}}, "tasks", "mnli are not tasks of this run"),
    ({"format": tickets.FORMAT, "tasks": {"sts": {"heads": [[1] * 4] * 2}}}, "tasks.sts.ffn",
     "missing"),
    ({"format": tickets.FORMAT, "tasks": {"sts": {"heads": [[1] * 3] * 2, "ffn": [[1] * 64] * 2}}},
     "tasks.sts.heads", r"shape \(2, 3\), but the encoder has \(2, 4\)"),
    ({"format": tickets.FORMAT, "tasks": {"sts": {"heads": [[1] * 4] * 2, "ffn": [[0.5] * 64] * 2}}},
     "tasks.sts.ffn", "0 \\(pruned\\) or 1"),
])
def test_bad_ticket_files_name_the_field(tmp_path, document, field, message):
  path = write(tmp_path / "ticket.json", document)
  with pytest.raises(InputError, match=f"ticket.json: {field}: .*{message}"):
    tickets.read_ticket(path, ["sts", "paraphrase"], 2, 4, 64)


def test_a_task_the_ticket_does_not_name_keeps_every_unit(tmp_path):
  heads = [[1, 0, 1, 1], [1, 1, 1, 0]]
  path = write(tmp_path / "t.json", {"format": tickets.FORMAT,
                                     "tasks": {"sts": {"heads": heads, "ffn": [[1] * 64] * 2}}})
  masks = tickets.read_ticket(path, ["sts", "paraphrase"], 2, 4, 64)
  np.testing.assert_array_equal(masks["sts"][0], heads)
  np.testing.assert_array_equal(masks["paraphrase"][0], np.ones((2, 4)))


def test_a_ticket_needs_batches_of_one_task(tmp_path, tiny):
  with pytest.raises(InputError, match="config.tickets.file: .*config.sampler.mixed=False"):
    train_and_evaluate(tiny_config(*tiny, **{"tickets.file": "t.json", "sampler.mixed": True}),
                       str(tmp_path / "run"))


def trained_output_rows(workdir):
  """The heads' and neurons' output rows in a run's latest checkpoint."""
  from mtdnn_jax.checkpoint import Checkpoints
  checkpoints = Checkpoints(workdir, asynchronous=False)
  _, params = checkpoints.restore_params("latest")
  checkpoints.close()
  return [np.asarray(x) for x in tickets.output_rows(params["encoder"])]


def test_training_under_a_shared_ticket(tmp_path, tiny):
  """Two tasks with their own tickets: a unit pruned in both is never trained, one kept by
  either task is (the union); the step compiles once; evaluation and predict.py apply each
  task's masks; the run keeps its copy of the ticket."""
  from mtdnn_jax.data.canonical import read_canonical
  from mtdnn_jax.data.features import tokenize_rows
  from mtdnn_jax.evaluate import TrainedRun
  from mtdnn_jax.model_dir import load_model_dir
  from mtdnn_jax.tasks import load_task_defs
  from tests.tiny_setup import REPO

  model_dir, data_dir = tiny
  full = tmp_path / "full"
  train_and_evaluate(tiny_config(*tiny, num_epochs=1), str(full))
  result = run_cli("scripts/super_tickets.py", "--workdir", str(full), "--output_dir",
                   str(tmp_path / "tickets"), "--sparsities", "0.25,0.5", "--data_dir",
                   str(data_dir), "--max_batches", "3")
  assert result.returncode == 0, result.stderr[-2000:]
  for sparsity, heads_kept, neurons_kept in (("0.25", 6, 96), ("0.5", 4, 64)):
    ticket = json.loads((tmp_path / "tickets" / f"ticket_{sparsity}.json").read_text())
    for name in ("sts", "paraphrase"):
      assert np.sum(ticket["tasks"][name]["heads"]) == heads_kept
      assert np.sum(ticket["tasks"][name]["ffn"]) == neurons_kept
  importance = np.load(tmp_path / "tickets" / "importance.npz", allow_pickle=False)
  np.testing.assert_allclose(np.linalg.norm(importance["sts_heads"], axis=-1), 1.0, rtol=1e-6)

  # A hand-made ticket, so that both "pruned in both" and "pruned in one" units exist.
  heads = {"sts": [[0, 1, 1, 0], [1, 1, 0, 1]], "paraphrase": [[0, 1, 0, 1], [1, 1, 1, 1]]}
  ffn = {name: np.ones((2, 64), int) for name in heads}
  ffn["sts"][0, :8] = 0
  ffn["paraphrase"][0, 4:12] = 0
  path = tmp_path / "hand_ticket.json"
  tickets.write_ticket(path, {n: (np.array(heads[n]), ffn[n]) for n in heads},
                       {"heads": 0.25, "ffn": 0.0625}, "test")
  run_dir = tmp_path / "ticket_run"
  results = train_and_evaluate(tiny_config(*tiny, num_epochs=1, **{
      "tickets.file": str(path), "optim.weight_decay": 0.0}), str(run_dir))
  assert results["train_step_compilations"] == 1
  assert json.loads((run_dir / tickets.WORKDIR_TICKET).read_text()) == json.loads(path.read_text())

  start_heads, start_ffn = tickets.output_rows(load_model_dir(model_dir).params)
  end_heads, end_ffn = trained_output_rows(run_dir)
  head_changed = np.abs(end_heads - np.asarray(start_heads)).max(axis=(-2, -1)) > 0
  ffn_changed = np.abs(end_ffn - np.asarray(start_ffn)).max(axis=-1) > 0
  union_heads = np.maximum(*[np.array(h) for h in heads.values()]).astype(bool)
  union_ffn = np.maximum(*ffn.values()).astype(bool)
  np.testing.assert_array_equal(head_changed, union_heads)  # (0, 0): pruned in both, untouched
  np.testing.assert_array_equal(ffn_changed, union_ffn)

  # Predictions come from each task's masked model: the same as masking the rows by hand.
  run = TrainedRun(run_dir, "latest")
  demo = load_task_defs(REPO / "configs" / "task_defs" / "demo.yml")
  rows = read_canonical(data_dir / "sts_dev.tsv", demo["sts"])
  features = tokenize_rows(rows, demo["sts"], run.tokenizer, 64)
  under_ticket = run.predict("sts", features).scores
  run.ticket = None
  unmasked = run.predict("sts", features).scores
  run.params = dict(run.params, encoder=tickets.mask_encoder(
      run.params["encoder"], jnp.asarray(heads["sts"], jnp.float32),
      jnp.asarray(ffn["sts"], jnp.float32)))
  np.testing.assert_allclose(run.predict("sts", features).scores, under_ticket, atol=1e-6)
  assert np.abs(unmasked - under_ticket).max() > 1e-4

  # Exported as one task's pruned encoder: that task's pruned rows are zero, the rest as trained.
  refused = run_cli("scripts/strip_model.py", "--workdir", str(run_dir), "--which", "latest",
                    "--output", str(tmp_path / "nope"))
  assert refused.returncode == 2 and "--task: " in refused.stderr
  exported = run_cli("scripts/strip_model.py", "--workdir", str(run_dir), "--which", "latest",
                     "--task", "sts", "--output", str(tmp_path / "sts_encoder"))
  assert exported.returncode == 0, exported.stderr[-2000:]
  out_heads, out_ffn = tickets.output_rows(load_model_dir(tmp_path / "sts_encoder").params)
  sts_heads = np.array(heads["sts"], bool)
  np.testing.assert_array_equal(np.asarray(out_heads)[~sts_heads], 0.0)
  np.testing.assert_array_equal(np.asarray(out_heads)[sts_heads], end_heads[sts_heads])
  np.testing.assert_array_equal(np.asarray(out_ffn)[~ffn["sts"].astype(bool)], 0.0)
