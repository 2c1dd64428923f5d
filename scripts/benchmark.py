"""Speed and memory of mtdnn-jax against the PyTorch peer, the two interleaved in one process.

  python scripts/benchmark.py [--quick] [--precision float32|bfloat16] [--out results.json] \
      [--report docs/PERFORMANCE.md]

Each measurement is a top-level key of the JSON, with `ours`, `peer` (each median, min, max over
rounds) and `ratio` = median(ours) / median(peer):
  train_base, train_minilm  our real train step (configs/default.py's sharded multi-task step,
                            two task heads, AdamW, dropout on) against transformers' PyTorch
                            BertForSequenceClassification + torch.optim.AdamW with the same
                            dimensions and batch of full-length sequences;
  eval_base, eval_minilm    our jitted batch evaluation (Evaluator: probabilities to the host)
                            against PyTorch under no_grad, and against torch.compile (full run);
                            each train and eval record has `mfu`: ours, peer, and
                            `target_needs`, the MFU the issue's ratio would take of us;
                            and `matmul_bound`: sequences/s of the matrix products the
                            step (or forward pass) cannot do without, each timed alone at
                            its fastest, and that over the peer's median (`ratio_to_peer`):
                            no implementation whose products run no faster passes it;
  e2e_mrpc                  training examples/s on MRPC's real train set (MiniLM shape): our
                            sampler with 3 buckets fitted to its lengths (config.fit_buckets)
                            and our step, against PyTorch batches padded to their longest
                            member (the reference MT-DNN toolkit's collation);
  matmul_peak               a 2048² matrix multiply, XLA and PyTorch, measured in this run;
  fma_ceiling               the cores' float32 fused-multiply-add rate (scripts/fma_ceiling.c,
                            built by the system's C compiler; `skipped` without one, on a GPU
                            and in bfloat16), and in each train and eval record the share of it
                            the necessary products would take at the target ratio;
  compile, memory           compile seconds and counts; peak resident memory after each stage
                            (and accelerator memory high-water marks on a GPU).
Rounds alternate ours, peer, ours, peer, ...; the warm-up round (and compilation) is excluded.
Precision: float32 on a CPU by default; on a GPU (where the peer runs on CUDA) bfloat16 compute
for both (ours: config.model.dtype, cuDNN attention where dropout is off; the peer:
torch.autocast), weights float32 on both sides.
MFU = (6 x non-embedding parameters x tokens + 12 x layers x hidden x length² x sequences) /
time / peak for a train step, a third of those FLOPs for a forward pass, the peak being XLA's
measured matmul on a CPU and the data sheet's dense bfloat16 figure on a GPU
(mtdnn_jax/throughput.py). `--quick` takes under 5 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
# The peer shares this process and, on a GPU, the device: JAX's default of taking 75% of a GPU's
# memory when it starts would leave PyTorch a quarter (and count the 75% as JAX's peak).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from configs import default  # noqa: E402
from mtdnn_jax import runtime, throughput  # noqa: E402
from mtdnn_jax.data import raw  # noqa: E402
from mtdnn_jax.data.batching import Buckets, fit_bucket_lengths, padded_tokens  # noqa: E402
from mtdnn_jax.data.features import Features, load_or_build_features  # noqa: E402
from mtdnn_jax.data.sampler import MultiTaskSampler  # noqa: E402
from mtdnn_jax.evaluate import Evaluator  # noqa: E402
from mtdnn_jax.fileio import write_json  # noqa: E402
from mtdnn_jax.models.config import EncoderConfig  # noqa: E402
from mtdnn_jax.models.heads import head_layout  # noqa: E402
from mtdnn_jax.pretrained import packaged_source_dir  # noqa: E402
from mtdnn_jax.sharding import make_mesh, put_batch  # noqa: E402
from mtdnn_jax.tasks import load_task_defs  # noqa: E402
from mtdnn_jax.tokenization import Tokenizer  # noqa: E402
from mtdnn_jax.train import build_train_program  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)
MINILM = dict(BERT_BASE, hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
SETTINGS = {  # per mode: batch sizes and rounds; sequence length 128 everywhere but e2e
    "quick": dict(rounds=5, train_batch={"base": 8, "minilm": 16},
                  eval_batch={"base": 8, "minilm": 32}, e2e_batches_per_round=2,
                  torch_compile=False, matmul_seconds=1.0, bound_seconds_each=0.1,
                  steps_per_round=1),
    "full": dict(rounds=7, train_batch={"base": 16, "minilm": 32},
                 eval_batch={"base": 64, "minilm": 128}, e2e_batches_per_round=None,
                 torch_compile=True, matmul_seconds=3.0, bound_seconds_each=0.3,
                 steps_per_round=1),
    # For tests: every code path at a tiny size (2 layers, hidden 32); not a measurement.
    "smoke": dict(rounds=2, train_batch={"base": 4, "minilm": 4},
                  eval_batch={"base": 4, "minilm": 4}, e2e_batches_per_round=2,
                  torch_compile=False, matmul_seconds=0.1, bound_seconds_each=0.01,
                  steps_per_round=2,
                  encoder=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64)),
}
# On a GPU, the CPU's batches leave the device mostly idle (a BERT-base step of 16 sequences is
# about a millisecond of an H100's bfloat16 work, less than its launches and AdamW's pass over
# the parameters take), so there the benchmark measures the batches users fill a GPU with, and
# runs several steps (or evaluation batches) a round with one wait for the device at the round's
# end, as a training loop does; on a CPU a step takes seconds and one a round is as good.
GPU_SETTINGS = {
    "quick": dict(train_batch={"base": 64, "minilm": 128}, eval_batch={"base": 256, "minilm": 512},
                  steps_per_round=5),
    "full": dict(train_batch={"base": 256, "minilm": 512},
                 eval_batch={"base": 1024, "minilm": 2048}, steps_per_round=10),
}
SEQ_LEN = 128
E2E_BATCH = 32
E2E_BUCKET_COUNT = 3  # fitted to MRPC's lengths (config.fit_buckets); as many as the default


def encoder_shape(name: str) -> EncoderConfig:
  """The encoders measured: BERT-base's dimensions, or the packaged all-MiniLM-L6-v2's (written
  out, so that a machine without that package's 88 MB of weights, a GPU lent for minutes, runs
  the benchmark too; tests/test_benchmark.py checks them against the package's config)."""
  return EncoderConfig(**(BERT_BASE if name == "base" else MINILM))


def run_settings(mode: str, gpu: bool) -> dict:
  """SETTINGS[mode], with a GPU's batch sizes and steps a round where the run has one."""
  settings = dict(SETTINGS[mode])
  if gpu and mode in GPU_SETTINGS:
    settings.update(GPU_SETTINGS[mode])
  return settings

# ------------------------------------------------------------------------------ timing

def summary(values: list[float]) -> dict[str, float]:
  return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def interleaved(contenders: dict[str, Callable[[int], float]], rounds: int,
                label: str) -> dict[str, list[float]]:
  """Rounds A B A B ...: `contenders[name](round)` does one round's work and returns how many
  units (sequences or examples) it processed; the result is units/s per round. Round 0 of each
  is a warm-up and is not returned."""
  rates: dict[str, list[float]] = {name: [] for name in contenders}
  for r in tqdm(range(rounds + 1), desc=label, unit="round", leave=False):
    for name, work in contenders.items():
      start = time.perf_counter()
      units = work(r)
      if r:
        rates[name].append(units / (time.perf_counter() - start))
  return rates


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def comparison(ours: list[float], peer: list[float], unit: str, **extra) -> dict:
  result = {"unit": unit, "ours": summary(ours), "peer": summary(peer),
            "ratio": statistics.median(ours) / statistics.median(peer)}
  result.update(extra)
  return result


# ------------------------------------------------------------------------------ the contenders

def on_gpu() -> bool:
  return jax.devices()[0].platform == "gpu"


def our_config(batch_size: int, buckets: tuple[int, ...], precision: str = "float32"):
  """configs/default.py with the optimizer the peer uses and the run's compute precision (cuDNN
  attention in bfloat16 on a GPU, where dropout is off: evaluation); else as users run it."""
  config = default.get_config()
  config.optim.optimizer = "adamw"
  config.model.dtype = precision
  config.model.attention_impl = "cudnn" if on_gpu() and precision == "bfloat16" else "xla"
  config.batch_size = config.eval_batch_size = batch_size
  config.buckets = buckets
  config.max_seq_len = buckets[-1]
  return config


class Ours:
  """Our train step and evaluator for one encoder shape, on two GLUE-style classification tasks."""

  def __init__(self, encoder_config: EncoderConfig, batch_size: int, buckets: tuple[int, ...],
               eval_batch_size: int | None = None, precision: str = "float32"):
    self.config = our_config(batch_size, buckets, precision)
    self.mesh = make_mesh(dict(self.config.mesh))
    task_defs = load_task_defs(REPO / "configs/task_defs/glue.yml")
    self.tasks = [task_defs["mrpc"], task_defs["rte"]]
    self.layout = head_layout(self.tasks)
    self.encoder_config = encoder_config
    self.program = build_train_program(self.config, encoder_config, self.tasks, self.layout,
                                       self.mesh, total_steps=10 ** 6)
    # A randomly initialised encoder of this shape: speed does not depend on the weights.
    dummy = jnp.ones((1, buckets[0]), jnp.int32)
    encoder = nn.unbox(jax.jit(self.program.model.init)(
        jax.random.PRNGKey(0), dummy, dummy, dummy, jnp.zeros((1,), jnp.int32))["params"]["encoder"])
    self.non_embedding = throughput.non_embedding_parameters(encoder)
    self.state = self.program.initial_state(0, encoder)
    self.evaluator = Evaluator(self.program.model, self.layout, self.mesh,
                               Buckets.make(buckets, eval_batch_size or batch_size),
                               special_ids=(0, 101, 102))
    self.compile_seconds: float | None = None

  def train(self, batch: dict[str, np.ndarray], steps: int = 1) -> float:
    """`steps` steps on `batch`, then a wait for the last, as a round's end does (none between
    steps, as in the training loop); returns the sequences trained on."""
    for _ in range(steps):
      self.state, metrics = self.program.train_step(self.state, put_batch(batch, self.mesh))
    jax.block_until_ready(metrics["loss"])
    return steps * float(batch["weights"].sum())

  def evaluate(self, features: Features) -> float:
    self.evaluator.raw_outputs(self.state["params"], 0, features)
    return float(len(features))

  def step_flops(self, batch_size: int, length: int) -> float:
    return throughput.train_step_flops(self.encoder_config, self.non_embedding,
                                       (batch_size, length))

  def forward_flops(self, batch_size: int, length: int) -> float:
    return throughput.forward_flops(self.encoder_config, self.non_embedding, (batch_size, length))

  def compilations(self) -> int:
    return self.program.train_step._cache_size()


def torch_device() -> str:
  """Where the peer runs: CUDA when PyTorch sees a GPU."""
  import torch
  return "cuda" if torch.cuda.is_available() else "cpu"


class Peer:
  """transformers' PyTorch BertForSequenceClassification with AdamW: what MT-DNN users run; on
  CUDA when there is a GPU, in bfloat16 under torch.autocast when asked (weights stay float32,
  as ours do)."""

  def __init__(self, encoder_config: EncoderConfig, precision: str = "float32"):
    import torch
    import transformers
    self.torch = torch
    self.device = torch.device(torch_device())
    self.precision = precision
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=encoder_config.vocab_size, hidden_size=encoder_config.hidden_size,
        num_hidden_layers=encoder_config.num_hidden_layers,
        num_attention_heads=encoder_config.num_attention_heads,
        intermediate_size=encoder_config.intermediate_size,
        max_position_embeddings=encoder_config.max_position_embeddings,
        type_vocab_size=encoder_config.type_vocab_size, num_labels=2)
    self.model = transformers.BertForSequenceClassification(config).to(self.device)
    self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=5e-5, weight_decay=0.01)
    self.compiled = None

  def tensor(self, array: np.ndarray):
    return self.torch.from_numpy(np.asarray(array).astype(np.int64)).to(self.device)

  def tensors(self, batch: dict[str, np.ndarray]) -> dict:
    return {"input_ids": self.tensor(batch["input_ids"]),
            "token_type_ids": self.tensor(batch["segment_ids"]),
            "attention_mask": self.tensor(batch["attention_mask"])}

  def autocast(self):
    return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16,
                               enabled=self.precision == "bfloat16")

  def train(self, batches: list[dict[str, np.ndarray]]) -> float:
    """A step on each batch, then a wait for the GPU (the work is done when it is, as ours waits
    for its last step); returns the sequences trained on."""
    self.model.train()
    for batch in batches:
      with self.autocast():
        loss = self.model(**self.tensors(batch), labels=self.tensor(batch["labels"])).loss
      loss.backward()
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()
    return float(sum(len(b["input_ids"]) for b in batches))

  def evaluate(self, batches: list[dict[str, np.ndarray]], compiled: bool = False) -> float:
    self.model.eval()
    model = self.compiled if compiled else self.model
    with self.torch.no_grad(), self.autocast():
      for batch in batches:
        model(**self.tensors(batch)).logits.float().softmax(-1).cpu().numpy()
    return float(sum(len(b["input_ids"]) for b in batches))


def full_length_batch(rng: np.random.Generator, size: int, length: int,
                      vocab: int) -> dict[str, np.ndarray]:
  """`size` two-segment sequences of exactly `length` tokens, alternating between two tasks."""
  ids = rng.integers(1000, vocab, (size, length)).astype(np.int32)
  segments = np.zeros((size, length), np.int32)
  segments[:, length // 2:] = 1
  return {"input_ids": ids, "segment_ids": segments,
          "attention_mask": np.ones((size, length), np.int32),
          "task_id": (np.arange(size) % 2).astype(np.int32),
          "labels": rng.integers(0, 2, size).astype(np.int32),
          "weights": np.ones(size, np.float32), "example_index": np.arange(size, dtype=np.int32)}


def as_features(batch: dict[str, np.ndarray]) -> Features:
  n, length = batch["input_ids"].shape
  return Features(batch["input_ids"].reshape(-1), batch["segment_ids"].reshape(-1).astype(np.int8),
                  np.arange(n + 1) * length, np.arange(n + 1), batch["labels"],
                  np.array([str(i) for i in range(n)]))


# ------------------------------------------------------------------------------ measurements

def measure_train(name: str, encoder_config: EncoderConfig, settings: dict, peak: float,
                  precision: str) -> tuple[dict, Ours, Peer]:
  batch_size, steps = settings["train_batch"][name], settings["steps_per_round"]
  ours = Ours(encoder_config, batch_size, (SEQ_LEN,), settings["eval_batch"][name], precision)
  peer = Peer(encoder_config, precision)
  batch = full_length_batch(np.random.default_rng(0), batch_size, SEQ_LEN,
                            encoder_config.vocab_size)
  start = time.perf_counter()
  ours.train(batch)  # compiles
  first_call = time.perf_counter() - start
  rates = interleaved({"ours": lambda r: ours.train(batch, steps),
                       "peer": lambda r: peer.train([batch] * steps)},
                      settings["rounds"], f"train {name}")
  ours.compile_seconds = first_call - batch_size / statistics.median(rates["ours"])
  result = comparison(rates["ours"], rates["peer"], "sequences/s", batch_size=batch_size,
                      seq_len=SEQ_LEN,
                      tokens_per_s={k: statistics.median(v) * SEQ_LEN for k, v in rates.items()},
                      mfu=utilisation(rates, ours.step_flops(batch_size, SEQ_LEN) / batch_size,
                                      peak, TARGETS[f"train_{name}"]),
                      steps_per_round=steps,
                      matmul_bound=matmul_bound(encoder_config, batch_size, True, precision,
                                                settings["bound_seconds_each"], rates["peer"]),
                      compilations=ours.compilations())
  return result, ours, peer


def utilisation(rates: dict[str, list[float]], flops_per_sequence: float, peak: float,
                target: float) -> dict[str, float]:
  """Each side's median FLOP rate as a share of `peak`, and the share the target ratio would
  need of ours (target × the peer's): above 1, no implementation running at `peak` reaches it."""
  mfu = {k: statistics.median(rates[k]) * flops_per_sequence / peak for k in ("ours", "peer")}
  return {**mfu, "target_needs": target * mfu["peer"]}


def matmul_bound(encoder_config: EncoderConfig, batch_size: int, train: bool, precision: str,
                 seconds_each: float, peer_rates: list[float]) -> dict:
  """The speed no implementation reaches whose matrix products run no faster than each runs
  alone here (throughput.necessary_matmuls: the step's or forward pass's products, the last
  layer at [CLS] only), and its ratio to the peer: below the target ratio, the target is out of
  reach on this machine whatever is done outside the matrix products."""
  matmuls = throughput.necessary_matmuls(encoder_config, batch_size, SEQ_LEN, train)
  seconds = throughput.matmul_seconds(matmuls, precision, seconds_each)
  flops, rate = sum(m.flops for m in matmuls), batch_size / seconds
  return {"sequences_per_s": rate, "ratio_to_peer": rate / statistics.median(peer_rates),
          "matmul_gflop": flops / 1e9, "matmul_gflops_per_s": flops / seconds / 1e9}


def measure_eval(name: str, ours: Ours, peer: Peer, settings: dict, peak: float,
                 precision: str) -> dict:
  """A round evaluates `steps_per_round` batches: ours as one Evaluator pass over them."""
  batch_size, steps = settings["eval_batch"][name], settings["steps_per_round"]
  rng = np.random.default_rng(1)
  batches = [full_length_batch(rng, batch_size, SEQ_LEN, ours.encoder_config.vocab_size)
             for _ in range(steps)]
  features = as_features({k: np.concatenate([b[k] for b in batches]) for k in batches[0]})
  contenders = {"ours": lambda r: ours.evaluate(features),
                "peer": lambda r: peer.evaluate(batches)}
  extra = {}
  if settings["torch_compile"]:
    try:
      start = time.perf_counter()
      peer.compiled = peer.torch.compile(peer.model)
      peer.evaluate(batches[:1], compiled=True)
      extra["peer_compile_seconds"] = time.perf_counter() - start
      contenders["peer_compiled"] = lambda r: peer.evaluate(batches, compiled=True)
    except Exception as error:  # noqa: BLE001 (torch.compile's failures vary by platform)
      extra["peer_compiled_error"] = f"{type(error).__name__}: {str(error)[:300]}"
  rates = interleaved(contenders, settings["rounds"], f"eval {name}")
  if "peer_compiled" in rates:
    extra["peer_compiled"] = summary(rates["peer_compiled"])
    extra["ratio_vs_compiled"] = (statistics.median(rates["ours"])
                                  / statistics.median(rates["peer_compiled"]))
  return comparison(rates["ours"], rates["peer"], "sequences/s", batch_size=batch_size,
                    seq_len=SEQ_LEN,
                    batches_per_round=steps,
                    mfu=utilisation(rates, ours.forward_flops(batch_size, SEQ_LEN) / batch_size,
                                    peak, TARGETS[f"eval_{name}"]),
                    matmul_bound=matmul_bound(ours.encoder_config, batch_size, False, precision,
                                              settings["bound_seconds_each"], rates["peer"]),
                    **extra)


def mrpc_features(glue_dir: Path, tokenizer) -> Features:
  task = load_task_defs(REPO / "configs/task_defs/glue.yml")["mrpc"]
  with tempfile.TemporaryDirectory() as tmp:
    raw.convert_split(task, "train", glue_dir, tmp, raw.Skipped())
    return load_or_build_features(task, "train", tmp, Path(tmp) / "features", tokenizer,
                                  SEQ_LEN)[0]


def dynamic_padding_batch(features: Features, rows: np.ndarray, pad_id: int) -> dict:
  """The reference's collation: a batch padded to its longest sequence."""
  lengths = features.seq_lengths[rows]
  ids = np.full((len(rows), lengths.max()), pad_id, np.int32)
  segments = np.zeros_like(ids)
  mask = np.zeros_like(ids)
  for i, e in enumerate(rows):
    start, end = features.seq_offsets[e], features.seq_offsets[e + 1]
    ids[i, :end - start] = features.input_ids[start:end]
    segments[i, :end - start] = features.segment_ids[start:end]
    mask[i, :end - start] = 1
  return {"input_ids": ids, "segment_ids": segments, "attention_mask": mask,
          "labels": features.labels[rows]}


def measure_e2e(glue_dir: Path, vocab: Path, rounds: int, batches_per_round: int | None,
                encoder_changes: dict, precision: str) -> dict:
  """Examples/s training on MRPC's train set (tokenized with all-MiniLM-L6-v2's uncased
  vocabulary, `vocab`), MiniLM's shape; collation is timed on both sides (tokenization, which
  both toolkits do once before training, is not)."""
  tokenizer = Tokenizer(vocab)  # the default settings are that model's: lower case, BERT's rules
  features = mrpc_features(glue_dir, tokenizer)
  encoder_config = encoder_shape("minilm").replace(**encoder_changes)
  bucket_lengths = fit_bucket_lengths(features.example_lengths, E2E_BUCKET_COUNT, SEQ_LEN)
  ours = Ours(encoder_config, E2E_BATCH, bucket_lengths, precision=precision)
  peer = Peer(encoder_config, precision)
  buckets = Buckets.make(bucket_lengths, E2E_BATCH)
  special = dict(pad_id=tokenizer.pad_id, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id)
  sampler = MultiTaskSampler([features], buckets, seed=1, **special)
  steps = sampler.steps_per_epoch()
  per_round = batches_per_round or -(-steps // rounds)  # full run: about an epoch over the rounds

  # Padding of an epoch on each side, counted without timing.
  ours_tokens = sum(buckets.lengths[plan.bucket] * buckets.batch_sizes[plan.bucket]
                    for plan in sampler.epoch_plan(0))
  real_tokens = int(features.seq_lengths.sum())
  order = np.random.default_rng(1).permutation(len(features))
  peer_rows = [order[i:i + E2E_BATCH] for i in range(0, len(order), E2E_BATCH)]
  peer_tokens = sum(len(rows) * int(features.seq_lengths[rows].max()) for rows in peer_rows)

  # Warm-up: compile every bucket the data fills, on a real batch of each.
  needed = {bucket_lengths[i] for i in np.unique(buckets.assign(features.example_lengths))}
  seen, start = set(), time.perf_counter()
  for batch in MultiTaskSampler([features], buckets, seed=2, **special):
    if batch["input_ids"].shape[-1] not in seen:
      seen.add(batch["input_ids"].shape[-1])
      ours.train(batch)
    if seen == needed:
      break
  compile_seconds = time.perf_counter() - start
  our_batches = iter(sampler)

  def ours_round(r):
    examples, metrics = 0.0, None
    for _ in range(per_round):  # as the training loop: no host synchronisation between steps
      batch = next(our_batches)
      ours.state, metrics = ours.program.train_step(ours.state, put_batch(batch, ours.mesh))
      examples += float(batch["weights"].sum())
    jax.block_until_ready(metrics["loss"])
    return examples

  def peer_round(r):
    return peer.train([dynamic_padding_batch(features,
                                             peer_rows[(r * per_round + i) % len(peer_rows)],
                                             tokenizer.pad_id) for i in range(per_round)])

  rates = interleaved({"ours": ours_round, "peer": peer_round}, rounds, "e2e mrpc")
  return comparison(rates["ours"], rates["peer"], "examples/s", examples=len(features),
                    batch_size=E2E_BATCH, buckets=list(bucket_lengths), batches_per_round=per_round,
                    padding_fraction={"ours": 1 - real_tokens / ours_tokens,
                                      "peer": 1 - real_tokens / peer_tokens,
                                      "ours_default_buckets": 1 - real_tokens / padded_tokens(
                                          features.example_lengths, default.get_config().buckets)},
                    compile_seconds=compile_seconds, compilations=ours.compilations(),
                    buckets_used=len(needed))


def torch_matmul_peak(size: int, seconds: float, precision: str) -> float:
  import torch
  device = torch_device()
  a = torch.ones(size, size, dtype=getattr(torch, precision), device=device)

  def matmul():
    a @ a
    if device == "cuda":
      torch.cuda.synchronize()

  return 2 * size ** 3 / throughput.fastest_call_seconds(matmul, seconds)


def fma_ceiling(seconds: float, precision: str) -> dict:
  """The cores' float32 fused-multiply-add rate, from `fma_ceiling.c` compiled for this CPU
  (`-march=native`) by the system's C compiler and run on every core: a float32 matrix product
  does one FMA per multiply-add, so none runs faster, whatever its kernel. A record with
  `skipped` (and the reason) where it does not apply or cannot be built."""
  if on_gpu():
    return {"skipped": "an accelerator run: the ceiling is the data sheet's (mfu_peak)"}
  if precision != "float32":
    return {"skipped": f"{precision} products do not run on the float32 FMA units"}
  compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
  if not compiler:
    return {"skipped": "no C compiler (cc, gcc or $CC) to build scripts/fma_ceiling.c"}
  with tempfile.TemporaryDirectory() as tmp:
    probe = Path(tmp) / "fma_ceiling"
    build = subprocess.run([compiler, "-O2", "-march=native", "-ffp-contract=fast", "-pthread",
                            str(Path(__file__).with_name("fma_ceiling.c")), "-o", str(probe)],
                           capture_output=True, text=True)
    if build.returncode:
      return {"skipped": f"{compiler} could not build scripts/fma_ceiling.c: "
                         f"{build.stderr.strip()[-300:]}"}
    threads = len(os.sched_getaffinity(0))
    measured = subprocess.run([str(probe), str(threads), str(seconds)], capture_output=True,
                              text=True, check=True)
  return {**json.loads(measured.stdout), "unit": "GFLOP/s", "compiler": compiler}


def device_peak_memory_mib() -> dict[str, float]:
  """Accelerator memory high-water marks (empty on a CPU, where resident memory says it)."""
  if not on_gpu():
    return {}
  import torch
  return {"ours": jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 2 ** 20,
          "peer": torch.cuda.max_memory_allocated() / 2 ** 20}


def machine() -> dict:
  cpu = "unknown"
  try:
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
               if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  import torch
  import transformers
  return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)),
          "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1),
          "devices": [str(d) for d in jax.devices()], "python": platform.python_version(),
          "jax": jax.__version__, "torch": torch.__version__,
          "transformers": transformers.__version__, "runtime": runtime.describe(),
          "accelerator": jax.devices()[0].device_kind if on_gpu() else None}


def run(mode: str, glue_dir: Path, precision: str, vocab: Path | None = None) -> dict:
  settings = run_settings(mode, on_gpu())
  rounds = settings["rounds"]
  results = {"mode": mode, "precision": precision, "machine": machine()}
  measured = throughput.measured_matmul_peak(2048, settings["matmul_seconds"], precision)
  results["matmul_peak"] = {
      "unit": "GFLOP/s", "ours": measured / 1e9,
      "peer": torch_matmul_peak(2048, settings["matmul_seconds"], precision) / 1e9}
  results["fma_ceiling"] = fma_ceiling(settings["matmul_seconds"], precision)
  # MFU: against the data sheet on an accelerator, against XLA's measured matmul on a CPU.
  peak, source = (throughput.machine_peak_flops() if on_gpu()
                  else (measured, f"measured {precision} matmul (XLA)"))
  results["mfu_peak"] = {"tflops": peak / 1e12, "source": source}
  results["memory"] = {"unit": "MiB peak resident, cumulative", "start": peak_rss_mib()}
  compile_info = {}
  shapes = {name: encoder_shape(name) for name in ("base", "minilm")}
  if "encoder" in settings:
    shapes = {k: v.replace(**settings["encoder"]) for k, v in shapes.items()}
  for name in ("minilm", "base"):
    results[f"train_{name}"], ours, peer = measure_train(name, shapes[name], settings, peak,
                                                         precision)
    compile_info[f"train_{name}_seconds"] = ours.compile_seconds
    results[f"eval_{name}"] = measure_eval(name, ours, peer, settings, peak, precision)
    results["memory"][name] = peak_rss_mib()
    del ours, peer
  if (glue_dir / "MRPC").is_dir():
    vocab = vocab or packaged_source_dir("all-MiniLM-L6-v2") / "vocab.txt"
    results["e2e_mrpc"] = measure_e2e(glue_dir, vocab, rounds, settings["e2e_batches_per_round"],
                                      settings.get("encoder", {}), precision)
    compile_info["e2e_seconds"] = results["e2e_mrpc"]["compile_seconds"]
    compile_info["e2e_compilations"] = results["e2e_mrpc"]["compilations"]
    compile_info["e2e_buckets_used"] = results["e2e_mrpc"]["buckets_used"]
    results["memory"]["e2e"] = peak_rss_mib()
  else:
    results["e2e_mrpc"] = {"skipped": f"no MRPC under {glue_dir}"}
  results["compile"] = compile_info
  results["device_memory_mib"] = device_peak_memory_mib()
  against_fma_ceiling(results)
  return results


def against_fma_ceiling(results: dict) -> None:
  """Adds `fma_ceiling` to each record with a matmul bound, where the ceiling was measured:
  `products_alone`, the share of the ceiling the necessary products reach, each timed alone;
  `target_needs`, the share they would take at the target ratio (target × the peer's
  sequences/s × their FLOPs per sequence). Above 1, no float32 implementation of the same
  products (one FMA per multiply-add) reaches the target on these cores."""
  ceiling = results["fma_ceiling"].get("gflops")
  if not ceiling:
    return
  for key, target in TARGETS.items():
    record = results.get(key, {})
    if "matmul_bound" in record:
      bound = record["matmul_bound"]
      gflop_per_sequence = bound["matmul_gflop"] / record["batch_size"]
      record["fma_ceiling"] = {
          "products_alone": bound["matmul_gflops_per_s"] / ceiling,
          "target_needs": target * record["peer"]["median"] * gflop_per_sequence / ceiling}


# ------------------------------------------------------------------------------ the report

TARGETS = {"train_base": 1.3, "train_minilm": 1.3, "eval_base": 1.5, "eval_minilm": 1.5,
           "e2e_mrpc": 1.3}  # issue 8's ratios to reach
TRAIN_MFU_TARGETS = {"cpu": 0.60, "gpu": 0.45}  # issue 8's, against each kind's peak
BEGIN, END = "<!-- benchmark results: begin -->", "<!-- benchmark results: end -->"
# A GPU run has its own section and plot, so that it does not replace the CPU's.
GPU_BEGIN = "<!-- benchmark results (gpu): begin -->"
GPU_END = "<!-- benchmark results (gpu): end -->"


def platform_of(results: dict) -> str:
  return "gpu" if results["machine"].get("accelerator") else "cpu"


def results_table(results: dict) -> str:
  rows = ["| measurement | unit | ours (median [min, max]) | PyTorch peer | ours/peer | target "
          "| MFU ours / peer | MFU the target needs | bound: matmuls alone / peer "
          "| FMA ceiling: the target needs / products alone |",
          "|---|---|---|---|---|---|---|---|---|---|"]
  for key, target in TARGETS.items():
    r = results.get(key, {})
    if "ratio" not in r:
      rows.append(f"| {key} | | {r.get('skipped', 'not measured')} | | | ≥ {target} | | | | |")
      continue
    span = lambda s: f"{s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"
    mfu = f"{r['mfu']['ours']:.0%} / {r['mfu']['peer']:.0%}" if "mfu" in r else ""
    needs = f"{r['mfu']['target_needs']:.0%}" if "mfu" in r else ""
    bound = f"{r['matmul_bound']['ratio_to_peer']:.2f}" if "matmul_bound" in r else ""
    fma = (f"{r['fma_ceiling']['target_needs']:.0%} / {r['fma_ceiling']['products_alone']:.0%}"
           if "fma_ceiling" in r else "")
    peer = span(r["peer"])
    if "peer_compiled" in r:
      peer += f"; torch.compile {r['peer_compiled']['median']:.2f}"
    rows.append(f"| {key} | {r['unit']} | {span(r['ours'])} | {peer} | **{r['ratio']:.2f}** "
                f"| ≥ {target} | {mfu} | {needs} | {bound} | {fma} |")
  m = results["machine"]
  compile_info = results.get("compile", {})
  host = f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB"
  where = f"{m['accelerator']} ({host})" if m.get("accelerator") else host
  kind = platform_of(results)
  lines = [
      f"Measured by `python scripts/benchmark.py{' --quick' if results['mode'] == 'quick' else ''}"
      f"{' --precision bfloat16' if results['precision'] == 'bfloat16' else ''}"
      f" --report docs/PERFORMANCE.md` in {results['wall_seconds'] / 60:.1f} min on {where}; "
      f"jax {m['jax']}, torch {m['torch']}, "
      f"transformers {m['transformers']}; devices {', '.join(m['devices'])}; "
      f"{results['precision']}, sequence length {SEQ_LEN} (e2e: MRPC's own lengths).", "", *rows,
      "",
      f"- matmul peak ({results['precision']}, 2048²): XLA {results['matmul_peak']['ours']:.0f} "
      f"GFLOP/s, PyTorch {results['matmul_peak']['peer']:.0f} GFLOP/s; MFU is against "
      f"{results['mfu_peak']['source']} ({results['mfu_peak']['tflops']:.3g} TFLOP/s); the "
      f"train MFU target is {TRAIN_MFU_TARGETS[kind]:.0%}.",
      fma_ceiling_line(results),
      *([f"- batches: train {results['train_base']['batch_size']} (BERT-base) and "
         f"{results['train_minilm']['batch_size']} (MiniLM), eval "
         f"{results['eval_base']['batch_size']} and {results['eval_minilm']['batch_size']}; "
         f"{results['train_base']['steps_per_round']} steps (or batches) a round, one wait for "
         "the GPU at its end; accelerator memory high-water marks (MiB): " + ", ".join(
             f"{k} {v:.0f}" for k, v in results.get("device_memory_mib", {}).items())]
        if kind == "gpu" else []),
      "- compile: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in compile_info.items()),
      "- peak resident memory (MiB, cumulative over the run): " + ", ".join(
          f"{k} {v:.0f}" for k, v in results["memory"].items() if k != "unit"),
      "- bound: the sequences/s of the step's (or forward pass's) matrix products alone, each at "
      "its fastest in this run (`throughput.necessary_matmuls`; the last layer at [CLS] only), "
      "over the peer's; where it is below the target, no work outside the matrix products "
      "reaches the target on this machine.",
      f"- runtime settings in force: `{json.dumps(m['runtime'])}`",
  ]
  e2e = results.get("e2e_mrpc", {})
  if "padding_fraction" in e2e:
    padding = e2e["padding_fraction"]
    lines.append(f"- e2e padding (share of computed tokens that are padding): ours "
                 f"{padding['ours']:.0%} (buckets {e2e['buckets']} fitted to MRPC; "
                 f"{padding['ours_default_buckets']:.0%} with configs/default.py's buckets, before "
                 f"partial last batches), peer {padding['peer']:.0%} (padded to each batch's "
                 "longest)")
  return "\n".join(lines)


def fma_ceiling_line(results: dict) -> str:
  fma = results.get("fma_ceiling", {"skipped": "not measured"})
  if "gflops" not in fma:
    return f"- FMA ceiling: none ({fma['skipped']})."
  ours, peer = (results["matmul_peak"][k] / fma["gflops"] for k in ("ours", "peer"))
  return (f"- FMA ceiling (float32 fused multiply-adds on every core, `scripts/fma_ceiling.c` "
          f"built for this CPU; {fma['threads']} threads, {fma['vector_bytes']}-byte vectors): "
          f"{fma['gflops']:.0f} GFLOP/s; the 2048² matmul reaches {ours:.0%} of it in XLA, "
          f"{peer:.0%} in PyTorch. Its column: the share "
          "of it the necessary products (those of the bound) would take at the target ratio, "
          "and the share they reach, each timed alone; above 100%, no float32 implementation "
          "reaches the target on these cores.")


def plot(results: dict, path: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  keys = [k for k in TARGETS if "ratio" in results.get(k, {})]
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
  x = np.arange(len(keys))
  left.bar(x, [results[k]["ratio"] for k in keys], color="tab:blue")
  for i, k in enumerate(keys):
    low = results[k]["ours"]["min"] / results[k]["peer"]["max"]
    high = results[k]["ours"]["max"] / results[k]["peer"]["min"]
    left.plot([i, i], [low, high], color="black", lw=1)
    left.plot([i - 0.4, i + 0.4], [TARGETS[k]] * 2, color="tab:red", ls="--", lw=1)
  bounded = [i for i, k in enumerate(keys) if "matmul_bound" in results[k]]
  left.scatter(bounded, [results[keys[i]]["matmul_bound"]["ratio_to_peer"] for i in bounded],
               marker="v", color="black", zorder=3, label="bound: matmuls alone")
  at_ceiling = [i for i, k in enumerate(keys) if "fma_ceiling" in results[k]]
  left.scatter(at_ceiling, [TARGETS[keys[i]] / results[keys[i]]["fma_ceiling"]["target_needs"]
                            for i in at_ceiling],
               marker="^", color="tab:gray", zorder=3, label="bound: matmuls at the FMA ceiling")
  left.axhline(1.0, color="gray", lw=0.8)
  left.set_xticks(x, keys)
  left.set_ylabel("ours / PyTorch (median; bar: min–max)")
  left.set_title("throughput ratio (red: target)")
  if bounded or at_ceiling:
    left.legend(fontsize=8, loc="upper left")
  mfu_keys = [k for k in keys if "mfu" in results[k]]
  width = 0.38
  xm = np.arange(len(mfu_keys))
  right.bar(xm - width / 2, [results[k]["mfu"]["ours"] for k in mfu_keys], width, label="ours")
  right.bar(xm + width / 2, [results[k]["mfu"]["peer"] for k in mfu_keys], width, label="PyTorch")
  right.scatter(xm - width / 2, [results[k]["mfu"]["target_needs"] for k in mfu_keys],
                marker="_", s=300, color="black", label="ours at the target ratio")
  right.axhline(1.0, color="gray", lw=0.8)
  trains = [i for i, k in enumerate(mfu_keys) if k.startswith("train_")]
  if trains:  # the MFU target is for training
    target = TRAIN_MFU_TARGETS[platform_of(results)]
    right.plot([trains[0] - 0.45, trains[-1] + 0.45], [target] * 2, color="tab:red", ls="--", lw=1)
  right.set_xticks(xm, [k.replace("_", "\n") for k in mfu_keys])
  right.set_title("MFU (red: train target)")
  right.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(results: dict, report: Path) -> None:
  """Replaces the generated section of `report` (between its markers: a GPU run's own) and the
  plot beside it."""
  gpu_run = platform_of(results) == "gpu"
  begin, end = (GPU_BEGIN, GPU_END) if gpu_run else (BEGIN, END)
  image = report.with_name(report.stem + ("_gpu" if gpu_run else "") + ".png")
  plot(results, image)
  section = f"{begin}\n{results_table(results)}\n\n![benchmark]({image.name})\n{end}"
  text = report.read_text() if report.is_file() else f"# Performance\n\n{begin}\n{end}\n"
  if begin not in text or end not in text:
    raise SystemExit(f"{report}: no '{begin}' ... '{end}' section to replace")
  head, rest = text.split(begin, 1)
  report.write_text(head + section + rest.split(end, 1)[1])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  modes = parser.add_mutually_exclusive_group()
  modes.add_argument("--quick", action="store_true", help="fewer rounds, smaller batches (<5 min)")
  modes.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests only
  parser.add_argument("--out", default="benchmark.json", help="where the JSON results go")
  parser.add_argument("--glue_dir", default=str(REPO.parent / "shared/data/glue"),
                      help="GLUE's download layout, for the end-to-end MRPC measurement")
  parser.add_argument("--vocab", help="the uncased BERT vocabulary MRPC is tokenized with "
                      "(default: the packaged all-MiniLM-L6-v2's vocab.txt; on a machine without "
                      "that package, a copy of it)")
  parser.add_argument("--precision", choices=("float32", "bfloat16"),
                      help="compute precision of both sides (default: bfloat16 on a GPU, with "
                      "cuDNN attention at evaluation; float32 on a CPU)")
  parser.add_argument("--report", help="also rewrite this Markdown file's results section "
                      "(docs/PERFORMANCE.md) and a plot beside it")
  args = parser.parse_args(argv)
  started = time.time()
  precision = args.precision or ("bfloat16" if on_gpu() else "float32")
  results = run("quick" if args.quick else "smoke" if args.smoke else "full",
                Path(args.glue_dir), precision, args.vocab and Path(args.vocab))
  results["wall_seconds"] = time.time() - started
  write_json(args.out, results)
  print(json.dumps({k: v.get("ratio") for k, v in results.items()
                    if isinstance(v, dict) and "ratio" in v}, indent=1))
  if args.report:
    write_report(results, Path(args.report))


if __name__ == "__main__":
  runtime.use_fast_cpu_settings()  # oneDNN matmuls, jemalloc (mtdnn_jax/runtime.py)
  main()
