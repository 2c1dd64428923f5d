"""One-process A/B runs behind docs/PERFORMANCE.md's table of ideas tried after the benchmark.

  python scripts/ablations.py [--shape base|minilm] [--batch 8] [--rounds 5] \
      [--out docs/results/ablations.json] [--tag HOST] [layers] [last_layer] [last_layer_eval] \
      [dense_rows] [dense_rows_eval] [dropout] [gelu] [gelu_eval] [attention_eval] [xla_cpu] \
      [xla_cpu_eval]

Each study compiles a bare train step of the BERT-base or MiniLM shape (encoder, a 2-class
classifier on [CLS], AdamW, float32, sequence length 128) once per variant, then alternates
their steps for `--rounds` rounds after a warm-up; the JSON record `<study>_<shape>[_<tag>]`
gives the host (hosts of one name differ), sequences/s (median, min, max) per variant and
each variant's ratio to the first one, which is what the project ships:
  layers    the stacked per-layer weights we use vs each layer's weights as separate arrays;
  last_layer  the last layer computed at [CLS] alone (what MTDNN does when no head reads other
            tokens: BertEncoder's cls_only) vs at every position; last_layer_eval the same on
            a forward pass;
  dense_rows  the encoder's dense layers applied to the tokens as the rows of one matrix (what
            ships: bert._per_token) vs to [batch, seq, features] as flax does by default (whose
            weight gradients contract two axes); dense_rows_eval the same on a forward pass;
  dropout   BERT's dropout as we draw it (mtdnn_jax.models.dropout.keep_mask: one threefry
            hash, written as element-wise operations XLA fuses, cut into four 16-bit uniforms
            for elements a quarter-row apart) vs the same pieces on four adjacent elements, vs
            jax's own masks (one hash per element) through the same fused hash, vs flax's
            nn.Dropout (jax's masks through jax.random, whose threefry XLA:CPU runs as a loop of
            passes over memory), vs jax.random's 16-bit and 8-bit random numbers, vs
            attention-probability dropout only, hidden dropout only, and none (the last three
            are bounds, not legal changes: fine-tuning uses both);
  gelu      BERT's exact GELU as we write it (bert.gelu_erf: 0.5·x·(1 + erf(x/√2)), PyTorch's
            form) vs jax.nn.gelu's erfc form; gelu_eval the same on a forward pass;
  attention_eval  a forward pass with attention written out (bert.attend) vs through
            jax.nn.dot_product_attention's "xla" implementation;
  xla_cpu   the same train step compiled with the XLA:CPU kernels we ask for (each dot through
            oneDNN, the rest through YNNPACK: mtdnn_jax/runtime.py) vs oneDNN's grouped dot
            fusions, vs XLA's default (YNNPACK for everything), vs oneDNN dots with YNNPACK
            off, vs neither (XLA's own dots);
  xla_cpu_eval  those four on a forward pass (the classifier's probabilities to the host).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mtdnn_jax import runtime, throughput  # noqa: E402
from mtdnn_jax.fileio import read_json, write_json  # noqa: E402
from mtdnn_jax.models import bert, dropout  # noqa: E402
from mtdnn_jax.models.config import EncoderConfig  # noqa: E402
from scripts.benchmark import SEQ_LEN, encoder_shape, interleaved, machine, summary  # noqa: E402


class StackedClassifier(nn.Module):
  """Our encoder as it ships (layers under an unrolled scan, weights stacked; the last layer at
  [CLS] alone, as MTDNN computes it for heads that read only [CLS]) + a classifier."""
  config: EncoderConfig
  cls_only: bool = True

  @nn.compact
  def __call__(self, input_ids, segment_ids, attention_mask, deterministic):
    encoded = bert.BertEncoder(self.config, cls_only=self.cls_only, name="encoder")(
        input_ids, segment_ids, attention_mask, deterministic=deterministic)
    return nn.Dense(2)(encoded.last_hidden_state[:, 0])


class PerLayerClassifier(nn.Module):
  """The same computation with each layer's weights as their own arrays (a Python loop)."""
  config: EncoderConfig

  @nn.compact
  def __call__(self, input_ids, segment_ids, attention_mask, deterministic):
    x = bert.Embeddings(self.config, name="embeddings")(input_ids, segment_ids,
                                                        deterministic=deterministic)
    for i in range(self.config.num_hidden_layers):
      x, _ = bert.TransformerLayer(self.config, deterministic=deterministic, name=f"layer_{i}")(
          x, attention_mask.astype(bool))
    return nn.Dense(2)(x[:, 0])


def narrow_bits_dropout(bits_dtype):
  """A drop-in for flax's nn.Dropout drawing `bits_dtype` random integers per element (jax's
  default threefry still hashes every element and truncates: no fewer hashes)."""
  levels = np.iinfo(bits_dtype).max + 1

  class NarrowBitsDropout(nn.Module):
    rate: float

    @nn.compact
    def __call__(self, x, deterministic):
      if deterministic or self.rate == 0.0:
        return x
      bits = jax.random.bits(self.make_rng("dropout"), x.shape, bits_dtype)
      keep = bits >= bits_dtype(round(self.rate * levels))  # keeps 1 - rate ± 1/levels
      return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype)

  return NarrowBitsDropout


class PerElementHashDropout(dropout.Dropout):
  """Dropout with jax's own masks (`jax.random.bernoulli`: one threefry hash per element), the
  hash fused as mtdnn_jax.models.dropout writes it: what we shipped before `keep_mask`."""
  mask = staticmethod(lambda key, keep_prob, shape: (dropout.bernoulli(key, keep_prob, shape),
                                                     keep_prob))


def adjacent_pieces_keep_mask(key, keep_prob: float, shape: tuple[int, ...]):
  """`dropout.keep_mask`'s decisions with each hash's four pieces on four adjacent elements of a
  row instead of a quarter-row apart: what shipped before that layout."""
  pieces, realised = dropout.kept_pieces(key, keep_prob, shape)
  keep = jnp.stack(pieces, axis=-1).reshape(*shape[:-1], -1)[..., :shape[-1]]
  return keep, realised


class AdjacentPiecesDropout(dropout.Dropout):
  """The shipped Dropout with `adjacent_pieces_keep_mask`."""
  mask = staticmethod(adjacent_pieces_keep_mask)


# flax names a module (and so derives its keys) by its class's name: the shipped Dropout's
# (and nn.Dropout's) keys.
PerElementHashDropout.__name__ = AdjacentPiecesDropout.__name__ = "Dropout"

_SHIPPED_ACTIVATION = bert.activation


def erfc_gelu_activation(name: str):
  """bert.activation with BERT's "gelu" as jax.nn.gelu(approximate=False) computes it (through
  erfc): what the encoder used before bert.gelu_erf."""
  if name == "gelu":
    return functools.partial(jax.nn.gelu, approximate=False)
  return _SHIPPED_ACTIVATION(name)


def fused_call_attention(query, key, value, attention_mask, probs_dropout=None):
  """bert.attend through jax.nn.dot_product_attention's "xla" implementation (what evaluation
  used before); it has no dropout, so it serves forward passes only."""
  if probs_dropout is not None:
    raise ValueError("jax.nn.dot_product_attention has no dropout: a forward-pass variant")
  return jax.nn.dot_product_attention(query, key, value, mask=attention_mask[:, None, None, :],
                                      implementation="xla")


@contextlib.contextmanager
def patched_encoder(**replacements):
  """Swaps names in `mtdnn_jax.models.bert` (the Dropout module the encoder builds, the way its
  dense layers meet the tokens, its activation, its attention) while a variant is traced (and
  compiled)."""
  originals = {name: getattr(bert, name) for name in replacements}
  for name, value in replacements.items():
    setattr(bert, name, value)
  try:
    yield
  finally:
    for name, value in originals.items():
      setattr(bert, name, value)


def dense_on_batch_and_sequence(layer, x, feature_dims: int = 1):
  """The encoder's dense layers applied to [batch, seq, ...] as flax does by default, instead
  of to the tokens as rows of one matrix (bert._per_token)."""
  del feature_dims  # nn.Dense and nn.DenseGeneral contract the trailing axes themselves
  return layer(x)


@dataclasses.dataclass
class Variant:
  model: nn.Module
  encoder_patches: dict = dataclasses.field(default_factory=dict)  # see patched_encoder
  compiler_options: dict = dataclasses.field(default_factory=dict)  # XLA's, for jax's compile()
  evaluate: bool = False  # time a forward pass (probabilities to the host), not a train step


def compiled_step(variant: Variant, batch: dict, seed: int = 0):
  """(state, step) for one variant, already compiled: a train step maps state -> state; an
  evaluation step maps state -> the classifier's probabilities."""
  inputs = (batch["input_ids"], batch["segment_ids"], batch["attention_mask"])
  params = nn.unbox(variant.model.init(jax.random.key(seed), *inputs, True)["params"])
  if variant.evaluate:
    def forward(params, key):
      del key  # no dropout at evaluation
      return jax.nn.softmax(variant.model.apply({"params": params}, *inputs, True))

    with patched_encoder(**variant.encoder_patches):
      step = jax.jit(forward).lower(params, jax.random.key(0)).compile(variant.compiler_options)
    jax.block_until_ready(step(params, jax.random.key(0)))
    return params, step
  tx = optax.adamw(1e-5)

  def train_step(state, key):
    params, opt_state = state

    def loss(p):
      logits = variant.model.apply({"params": p}, *inputs, False, rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  state = (params, tx.init(params))
  with patched_encoder(**variant.encoder_patches):
    step = jax.jit(train_step, donate_argnums=0).lower(state, jax.random.key(0)).compile(
        variant.compiler_options)
  state = jax.block_until_ready(step(state, jax.random.key(0)))
  return state, step


def study(variants: dict[str, Variant], batch_size: int, rounds: int, label: str) -> dict:
  rng = np.random.default_rng(0)
  batch = {"input_ids": jnp.asarray(rng.integers(1000, 30000, (batch_size, SEQ_LEN)), jnp.int32),
           "segment_ids": jnp.zeros((batch_size, SEQ_LEN), jnp.int32),
           "attention_mask": jnp.ones((batch_size, SEQ_LEN), jnp.int32),
           "labels": jnp.asarray(rng.integers(0, 2, batch_size))}
  states, steps = {}, {}
  for name, variant in variants.items():
    states[name], steps[name] = compiled_step(variant, batch)

  def one_step(name):
    def work(r):
      if variants[name].evaluate:
        np.asarray(steps[name](states[name], jax.random.key(r)))
      else:
        states[name] = jax.block_until_ready(steps[name](states[name], jax.random.key(r)))
      return batch_size
    return work

  rates = interleaved({name: one_step(name) for name in variants}, rounds, label)
  first = np.median(rates[next(iter(variants))])
  return {name: {"unit": "sequences/s", **summary(r), "ratio": float(np.median(r) / first),
                 "library_fusions": library_fusions(steps[name].as_text())}
          for name, r in rates.items()}


def library_fusions(optimized_hlo: str) -> dict[str, int]:
  """How many fusions of the compiled step XLA:CPU handed to each kernel library: shows that a
  variant's compiler options took effect."""
  found = re.findall(r"%(onednn|ynn|xnn)_fusion[.\w]* = ", optimized_hlo)
  return {library: found.count(library) for library in ("onednn", "ynn", "xnn")}


# XLA:CPU's kernel choices (see xla_cpu in the docstring); the first is what the scripts set.
_NO_ONEDNN = {"xla_cpu_use_onednn": False, "xla_cpu_experimental_onednn_fusion_type": ""}
_NO_YNNPACK = {"xla_cpu_experimental_ynn_fusion_type": ""}
KERNELS = {
    "onednn_dots": runtime.ONEDNN_OPTIONS,
    # The grouped type we shipped first: chained dots become one oneDNN graph (runtime.py says
    # why that was dropped); BERT's steps chain none, so it measures the same fusions.
    "onednn_dot_groups": {**runtime.ONEDNN_OPTIONS,
                          "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
    "xla_default_ynnpack": _NO_ONEDNN,
    "onednn_dots_no_ynnpack": {**runtime.ONEDNN_OPTIONS, **_NO_YNNPACK},
    "xla_own_dots": {**_NO_ONEDNN, **_NO_YNNPACK},
}


def _with_evaluation(name: str, variants: dict[str, Variant]) -> dict[str, dict[str, Variant]]:
  """A study of train steps and the same variants on a forward pass (`<name>_eval`)."""
  return {name: variants, f"{name}_eval": {
      variant: dataclasses.replace(v, evaluate=True) for variant, v in variants.items()}}


def studies(config: EncoderConfig) -> dict[str, dict[str, Variant]]:
  without = functools.partial(dataclasses.replace, config)
  return {
      **_with_evaluation("xla_cpu", {
          name: Variant(StackedClassifier(config), compiler_options=options)
          for name, options in KERNELS.items()}),
      "layers": {"stacked": Variant(StackedClassifier(config, cls_only=False)),
                 "per_layer_arrays": Variant(PerLayerClassifier(config))},
      **_with_evaluation("last_layer", {
          "cls_only": Variant(StackedClassifier(config)),
          "every_position": Variant(StackedClassifier(config, cls_only=False))}),
      **_with_evaluation("dense_rows", {
          "tokens_as_rows": Variant(StackedClassifier(config)),
          "batch_and_sequence": Variant(StackedClassifier(config), {
              "_per_token": dense_on_batch_and_sequence})}),
      **_with_evaluation("gelu", {
          "erf_form": Variant(StackedClassifier(config)),
          "jax_erfc_form": Variant(StackedClassifier(config),
                                   {"activation": erfc_gelu_activation})}),
      "attention_eval": {
          "written_out": Variant(StackedClassifier(config), evaluate=True),
          "jax_dot_product_attention": Variant(StackedClassifier(config),
                                               {"attend": fused_call_attention}, evaluate=True)},
      "dropout": {
          "hash_per_4_elements": Variant(StackedClassifier(config)),
          "adjacent_pieces": Variant(StackedClassifier(config), {"Dropout": AdjacentPiecesDropout}),
          "hash_per_element": Variant(StackedClassifier(config),
                                      {"Dropout": PerElementHashDropout}),
          "flax_dropout": Variant(StackedClassifier(config), {"Dropout": nn.Dropout}),
          "bits_16": Variant(StackedClassifier(config),
                             {"Dropout": narrow_bits_dropout(np.uint16)}),
          "bits_8": Variant(StackedClassifier(config), {"Dropout": narrow_bits_dropout(np.uint8)}),
          "attention_dropout_only": Variant(StackedClassifier(without(hidden_dropout_prob=0.0))),
          "hidden_dropout_only": Variant(StackedClassifier(
              without(attention_probs_dropout_prob=0.0))),
          "no_dropout": Variant(StackedClassifier(
              without(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)))},
  }


def encoder_config(shape: str) -> EncoderConfig:
  if shape == "tiny":  # for tests: a 2-layer, 64-wide encoder
    return dataclasses.replace(encoder_shape("base"), hidden_size=64, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=128)
  return encoder_shape(shape)


def host() -> dict:
  """What the ratios were measured on: hosts of one name differ (docs/PERFORMANCE.md)."""
  described = machine()
  return {"cpu": described["cpu"], "cores": described["cores"], "jax": jax.__version__,
          "xla_matmul_gflops": throughput.measured_matmul_peak(2048, 1.0) / 1e9}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("studies", nargs="*",
                      help=", ".join(studies(encoder_config("tiny"))) + " (default: all)")
  parser.add_argument("--shape", choices=("base", "minilm", "tiny"), default="base")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--out", type=Path, default=Path("docs/results/ablations.json"),
                      help="a JSON file of records keyed <study>_<shape>[_<tag>]; the studies "
                           "run replace their records, the others are kept")
  parser.add_argument("--tag", default="",
                      help="appended to the records' keys, e.g. the kind of host, so that runs "
                           "on another host keep the earlier ones")
  args = parser.parse_args(argv)
  available = studies(encoder_config(args.shape))
  unknown = set(args.studies) - set(available)
  if unknown:
    parser.error(f"unknown studies {sorted(unknown)}; choose from {sorted(available)}")
  results = read_json(args.out, "ablation results") if args.out.exists() else {}
  measured_on = host()
  for name in args.studies or available:
    variants = study(available[name], args.batch, args.rounds, name)
    key = "_".join(filter(None, (name, args.shape, args.tag)))
    results[key] = {
        "shape": args.shape, "batch_size": args.batch, "sequence_length": SEQ_LEN,
        "rounds": args.rounds, "host": measured_on, "variants": variants}
    for variant, r in variants.items():
      print(f"{key:20s} {variant:24s} {r['median']:7.3f} seq/s  "
            f"ratio {r['ratio']:.3f}")
  write_json(args.out, results)
  return results


if __name__ == "__main__":
  runtime.use_fast_cpu_settings()
  main()
