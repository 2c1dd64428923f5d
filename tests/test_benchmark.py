"""scripts/benchmark.py at a tiny size (--smoke): every measurement's record is consistent with
what was timed, and the report shows it. Speed itself is judged by the real run, not here."""
import json
import os

import numpy as np
import pytest


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, shared_data, minilm_dir):
  from scripts import benchmark
  out = tmp_path_factory.mktemp("benchmark")
  report = out / "PERFORMANCE.md"
  report.write_text("# Performance\n\nhand-written text\n\n"
                    f"{benchmark.BEGIN}\nold table\n{benchmark.END}\n\nmore text\n")
  benchmark.main(["--smoke", "--out", str(out / "results.json"), "--report", str(report),
                  "--glue_dir", str(shared_data / "glue")])
  return json.loads((out / "results.json").read_text()), report


def test_every_measurement_is_a_median_ratio(smoke_run):
  results, _ = smoke_run
  for key in ("train_base", "train_minilm", "eval_base", "eval_minilm", "e2e_mrpc"):
    r = results[key]
    for side in ("ours", "peer"):
      assert 0 < r[side]["min"] <= r[side]["median"] <= r[side]["max"], (key, side)
    assert r["ratio"] == pytest.approx(r["ours"]["median"] / r["peer"]["median"])
  for key, target in (("train_base", 1.3), ("train_minilm", 1.3), ("eval_base", 1.5),
                      ("eval_minilm", 1.5)):
    mfu = results[key]["mfu"]
    assert 0 < mfu["ours"] < 1 and 0 < mfu["peer"] < 1
    # Both sides are judged by one FLOP count, so their MFUs stand as their speeds do.
    assert mfu["ours"] / mfu["peer"] == pytest.approx(results[key]["ratio"])
    assert mfu["target_needs"] == pytest.approx(target * mfu["peer"])  # the ratio
  for key in ("train_base", "train_minilm"):
    assert results[key]["compilations"] == 1  # one shape, one compile


def test_matmul_bound_is_the_necessary_products_over_the_peer(smoke_run):
  from mtdnn_jax import throughput
  from scripts.benchmark import SEQ_LEN, SETTINGS, encoder_shape
  results, _ = smoke_run
  for key in ("train_base", "train_minilm", "eval_base", "eval_minilm"):
    kind, shape = key.split("_")
    bound, batch = results[key]["matmul_bound"], results[key]["batch_size"]
    config = encoder_shape(shape).replace(**SETTINGS["smoke"]["encoder"])
    matmuls = throughput.necessary_matmuls(config, batch, SEQ_LEN, train=kind == "train")
    assert bound["matmul_gflop"] * 1e9 == pytest.approx(sum(m.flops for m in matmuls))
    assert bound["ratio_to_peer"] == pytest.approx(
        bound["sequences_per_s"] / results[key]["peer"]["median"])
    assert bound["matmul_gflops_per_s"] == pytest.approx(
        bound["matmul_gflop"] * bound["sequences_per_s"] / batch)


def test_necessary_matmuls_by_hand_and_against_xla_and_autodiff():
  import jax
  import jax.numpy as jnp

  from mtdnn_jax import throughput
  from mtdnn_jax.models.config import EncoderConfig
  hidden, inner, layers, heads, B, L = 16, 48, 3, 4, 2, 8
  config = EncoderConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=inner)
  forward = throughput.necessary_matmuls(config, B, L, train=False, classes=3)
  # Full layers: Q, K, V, output projections and the feed-forward block at every token, and
  # attention's two L × L products; the last layer: K and V at every token, the rest at [CLS];
  # then the pooler and the 3-way classifier.
  full_layer = 2 * B * L * (4 * hidden ** 2 + 2 * hidden * inner) + 4 * B * L ** 2 * hidden
  last_layer = (2 * 2 * B * L * hidden ** 2 + 2 * B * hidden ** 2 + 4 * B * L * hidden
                + 2 * B * hidden ** 2 + 2 * 2 * B * hidden * inner)
  heads_flops = 2 * B * hidden ** 2 + 2 * B * hidden * 3
  assert sum(m.flops for m in forward) == (layers - 1) * full_layer + last_layer + heads_flops
  train = throughput.necessary_matmuls(config, B, L, train=True, classes=3)
  assert sum(m.flops for m in train) == 3 * sum(m.flops for m in forward)

  rng = np.random.default_rng(0)
  checked = set()
  for m in set(forward):
    a = jnp.asarray(rng.normal(size=m.lhs), jnp.float32)
    b = jnp.asarray(rng.normal(size=m.rhs), jnp.float32)
    # XLA's own count of the product's FLOPs.
    assert jax.jit(m.apply).lower(a, b).compile().cost_analysis()["flops"] == m.flops, m
    y, vjp = jax.vjp(m.apply, a, b)
    dy = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    expected = vjp(dy)
    # Each gradient product, on the operands its shapes name, is autodiff's gradient.
    for gradient, want in zip(m.gradients(), expected):
      operands = {a.shape: a, b.shape: b, dy.shape: dy}
      if len(operands) < 3:
        continue  # two operands of one shape: which is which is ambiguous here
      got = gradient.apply(operands[gradient.lhs], operands[gradient.rhs])
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
      assert gradient.flops == m.flops
      checked.add((m.batch, m.contract))
  assert checked == {(0, (1, 0)), (1, (2, 2)), (1, (2, 1))}  # x @ w, q @ kᵀ, probs @ v


def test_flop_counts_by_hand():
  import jax
  import jax.numpy as jnp

  from mtdnn_jax import throughput
  from mtdnn_jax.models import bert
  from scripts.benchmark import encoder_shape
  base = encoder_shape("base")
  # BERT-base: 85.65 M weights outside the embeddings (12 layers of 7.088 M, the pooler 0.59 M);
  # one 128-token sequence: 2 × 85.65 M × 128 + 4 × 12 × 768 × 128² = 22.53 GFLOP forward.
  ids = jnp.zeros((1, 128), jnp.int32)
  shapes = jax.eval_shape(lambda: bert.BertEncoder(base).init(jax.random.key(0), ids, ids, ids))
  assert throughput.non_embedding_parameters(shapes["params"]) == 85_645_056
  forward = throughput.forward_flops(base, 85_645_056, (1, 128))
  assert forward / 1e9 == pytest.approx(22.53, abs=0.005)
  # A train step is the forward pass and a backward pass of twice its cost; a ranking batch
  # [B, K, L] is B × K sequences.
  train = throughput.train_step_flops(base, 85_645_056, (4, 2, 128))
  assert train == pytest.approx(3 * 8 * forward)


def test_e2e_uses_mrpc_and_compiles_once_per_bucket(smoke_run):
  e2e = smoke_run[0]["e2e_mrpc"]
  assert e2e["examples"] == 3668  # MRPC's official train size
  assert e2e["compilations"] == e2e["buckets_used"] <= len(e2e["buckets"])
  assert 0 < e2e["padding_fraction"]["ours"] < 1 and 0 < e2e["padding_fraction"]["peer"] < 1


def test_report_replaces_only_its_section(smoke_run):
  results, report = smoke_run
  text = report.read_text()
  assert text.startswith("# Performance\n\nhand-written text\n")
  assert text.rstrip().endswith("more text") and "old table" not in text
  assert f"**{results['train_base']['ratio']:.2f}**" in text
  assert report.with_suffix(".png").stat().st_size > 10_000


def test_peer_batches_pad_to_their_longest_sequence():
  from mtdnn_jax.data.features import Features
  from scripts.benchmark import dynamic_padding_batch
  ids = np.arange(1, 10, dtype=np.int32)  # sequences of 2, 3 and 4 tokens
  features = Features(ids, np.zeros(9, np.int8), np.array([0, 2, 5, 9]), np.arange(4),
                      np.array([0, 1, 0]), np.array(["a", "b", "c"]))
  batch = dynamic_padding_batch(features, np.array([0, 1]), pad_id=0)
  assert batch["input_ids"].tolist() == [[1, 2, 0], [3, 4, 5]]
  assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
  assert batch["labels"].tolist() == [0, 1]


def test_bfloat16_mode_computes_in_bfloat16_on_both_sides():
  """--precision bfloat16 (the default on a GPU): our model computes in bfloat16 with float32
  weights, the peer under autocast with float32 weights; both sides' train steps run."""
  import jax
  import jax.numpy as jnp
  import torch
  from mtdnn_jax.models.config import EncoderConfig
  from scripts.benchmark import Ours, Peer, full_length_batch
  config = EncoderConfig(vocab_size=2000, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
  batch = full_length_batch(np.random.default_rng(0), 4, 16, config.vocab_size)
  ours = Ours(config, 4, (16,), precision="bfloat16")
  assert ours.program.model.dtype == jnp.bfloat16
  assert ours.train(batch) == 4
  assert {x.dtype for x in jax.tree.leaves(ours.state["params"])} == {jnp.dtype("float32")}
  peer = Peer(config, "bfloat16")
  with torch.no_grad(), peer.autocast():
    logits = peer.model(**peer.tensors(batch)).logits
  assert logits.dtype == torch.bfloat16
  assert peer.train([batch]) == 4
  assert next(peer.model.parameters()).dtype == torch.float32
  with torch.no_grad(), Peer(config).autocast():  # float32 mode: autocast off
    assert Peer(config).model(**peer.tensors(batch)).logits.dtype == torch.float32


def test_minilm_shape_is_the_packaged_models(minilm_dir):
  """The benchmark writes all-MiniLM-L6-v2's dimensions out (a GPU machine gets the benchmark
  without the package's weights); they must be the real model's."""
  from mtdnn_jax.model_dir import load_model_dir
  from scripts.benchmark import encoder_shape
  packaged = load_model_dir(minilm_dir).config
  assert encoder_shape("minilm") == packaged


def test_gpu_runs_fill_the_device_and_cpu_runs_are_unchanged():
  from scripts.benchmark import GPU_SETTINGS, SETTINGS, run_settings
  for mode in ("quick", "full"):
    cpu, gpu = run_settings(mode, gpu=False), run_settings(mode, gpu=True)
    assert cpu == SETTINGS[mode] and cpu["steps_per_round"] == 1
    assert gpu["steps_per_round"] > 1 and gpu["rounds"] == cpu["rounds"]
    for kind in ("train_batch", "eval_batch"):
      for shape in ("base", "minilm"):
        assert gpu[kind][shape] >= 4 * cpu[kind][shape]
    assert set(GPU_SETTINGS[mode]) <= set(SETTINGS[mode])  # overrides, no new names
  assert run_settings("smoke", gpu=True) == SETTINGS["smoke"]


def test_a_round_of_several_steps_trains_on_each(smoke_run):
  """--smoke runs two steps (and two evaluation batches) a round: the sequences counted are
  both steps', on both sides, and the state moved on by both."""
  import jax
  from mtdnn_jax.models.config import EncoderConfig
  from scripts.benchmark import Ours, Peer, full_length_batch
  results, _ = smoke_run
  assert results["train_base"]["steps_per_round"] == 2
  assert results["eval_base"]["batches_per_round"] == 2
  config = EncoderConfig(vocab_size=2000, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
  batch = full_length_batch(np.random.default_rng(0), 4, 16, config.vocab_size)
  ours = Ours(config, 4, (16,))
  assert ours.train(batch, steps=3) == 12
  assert int(jax.device_get(ours.state["step"])) == 3
  peer = Peer(config)
  assert peer.train([batch] * 3) == 12
  assert peer.optimizer.state[next(peer.model.parameters())]["step"] == 3


def test_a_gpu_run_reports_in_its_own_section(smoke_run, tmp_path):
  """A GPU run's table goes between the GPU markers, with the GPU named, its MFU target (45%)
  and its batches, and its own plot; the CPU section stays as it was. (The smoke record,
  relabelled as a GPU machine's: this checks the report, not a GPU.)"""
  import copy
  from scripts import benchmark
  results = copy.deepcopy(smoke_run[0])
  results["machine"]["accelerator"] = "NVIDIA H200"
  results["device_memory_mib"] = {"ours": 1234.0, "peer": 2345.0}
  report = tmp_path / "PERFORMANCE.md"
  report.write_text(f"{benchmark.BEGIN}\ncpu table\n{benchmark.END}\n\n## GPU\n\n"
                    f"{benchmark.GPU_BEGIN}\nnot run yet\n{benchmark.GPU_END}\n")
  benchmark.write_report(results, report)
  text = report.read_text()
  cpu, gpu = text.split("## GPU")
  assert "cpu table" in cpu and "not run yet" not in gpu
  assert "on NVIDIA H200 (" in gpu and "train MFU target is 45%" in gpu
  assert "ours 1234, peer 2345" in gpu and "2 steps (or batches) a round" in gpu
  assert "PERFORMANCE_gpu.png" in gpu and (tmp_path / "PERFORMANCE_gpu.png").is_file()
  assert "train MFU target is 60%" in smoke_run[1].read_text()


def test_fma_ceiling_is_above_every_matmul_and_within_the_silicon():
  """The probe's float32 FMA rate bounds every float32 matrix product on these cores from
  above (a product is one FMA per multiply-add), XLA's and PyTorch's measured here included;
  and it stays below what any x86 core can issue (two 16-lane FMA ports at 6 GHz), which a
  probe whose loop the compiler had emptied or merged would not."""
  import torch
  from mtdnn_jax import throughput
  from scripts import benchmark
  fma = benchmark.fma_ceiling(1.0, "float32")
  if "skipped" in fma:
    pytest.skip(fma["skipped"])
  ceiling = fma["gflops"] * 1e9
  assert fma["threads"] == len(os.sched_getaffinity(0))
  assert max(fma["gflops_by_vector_bytes"].values()) == fma["gflops"]
  assert ceiling <= fma["threads"] * 2 * 16 * 2 * 6e9
  assert throughput.measured_matmul_peak(1024, 1.0) < ceiling
  assert benchmark.torch_matmul_peak(1024, 1.0, "float32") < ceiling
  assert torch.get_num_threads() <= fma["threads"]  # PyTorch's product used no more cores


def test_fma_ceiling_shares_by_hand_and_in_the_report(smoke_run, tmp_path):
  """A record with a 400 GFLOP/s ceiling: a peer at 10 sequences/s, 10 GFLOP of necessary
  products a sequence (40 in a batch of 4) timed at 200 GFLOP/s: at eval's 1.5× the products
  take 1.5 × 10 × 10 / 400 = 37.5% of the ceiling, and reach 50% alone. Without a ceiling the
  report says why."""
  import copy
  from scripts import benchmark
  results = copy.deepcopy(smoke_run[0])
  results["fma_ceiling"] = {"gflops": 400.0, "threads": 2, "vector_bytes": 64}
  results["matmul_peak"] = {"unit": "GFLOP/s", "ours": 300.0, "peer": 320.0}
  record = results["eval_base"]
  record["batch_size"], record["peer"]["median"] = 4, 10.0
  record["matmul_bound"].update(matmul_gflop=40.0, matmul_gflops_per_s=200.0)
  benchmark.against_fma_ceiling(results)
  assert record["fma_ceiling"] == pytest.approx({"target_needs": 0.375, "products_alone": 0.5})
  table = benchmark.results_table(results)
  row = next(line for line in table.splitlines() if line.startswith("| eval_base |"))
  assert row.rstrip().endswith("| 38% / 50% |")
  assert "400 GFLOP/s; the 2048² matmul reaches 75% of it in XLA, 80% in PyTorch" in table
  results["fma_ceiling"] = {"skipped": "no C compiler (cc, gcc or $CC) to build it"}
  for key in benchmark.TARGETS:
    results[key].pop("fma_ceiling", None)
  assert "- FMA ceiling: none (no C compiler" in benchmark.results_table(results)


def test_smoke_run_measures_the_fma_ceiling_where_it_can(smoke_run):
  results, report = smoke_run
  fma = results["fma_ceiling"]
  assert "FMA ceiling" in report.read_text()
  if "skipped" in fma:
    pytest.skip(fma["skipped"])
  for key in ("train_base", "train_minilm", "eval_base", "eval_minilm"):
    shares = results[key]["fma_ceiling"]
    assert 0 < shares["products_alone"] < 1  # no product runs above the ceiling
    assert shares["target_needs"] > 0
