"""A tiny MT-DNN set-up for tests of the real training loop: a randomly initialised 2-layer
encoder over the real MiniLM vocabulary, and small slices of the demo's real data.

Run as a script it trains once and prints the results as JSON, so that tests can run the loop
under other device counts (XLA_FLAGS must be set before jax is imported, hence a subprocess):
  python tests/tiny_setup.py WORKDIR MODEL_DIR DATA_DIR '{"mesh": {"data": 4, "model": 2}}'
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY_ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=64)


def make_tiny_model_dir(path: Path, vocab_path: Path) -> Path:
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from mtdnn_jax.model_dir import save_model_dir
  from mtdnn_jax.models import BertEncoder, EncoderConfig
  from mtdnn_jax.tokenization import TokenizerSettings, read_vocab

  vocab = read_vocab(vocab_path)
  config = EncoderConfig(vocab_size=len(vocab), **TINY_ENCODER)
  ids = jnp.zeros((1, 4), jnp.int32)
  params = nn.unbox(BertEncoder(config).init(jax.random.PRNGKey(0), ids, ids, ids + 1)["params"])
  return save_model_dir(path, config=config, params=jax.tree.map(lambda x: x.__array__(), params),
                        vocab=vocab, tokenizer_settings=TokenizerSettings(do_lower_case=True))


def write_tiny_data(path: Path, train_rows: int = 40, dev_rows: int = 24) -> Path:
  """The first rows of the demo's real sts / paraphrase files."""
  path.mkdir(parents=True, exist_ok=True)
  for task in ("sts", "paraphrase"):
    for split, n in (("train", train_rows), ("dev", dev_rows)):
      lines = (REPO / "data" / "demo" / f"{task}_{split}.tsv").read_text().splitlines()[:n]
      (path / f"{task}_{split}.tsv").write_text("\n".join(lines) + "\n")
  return path


def tiny_config(model_dir, data_dir, **overrides):
  from configs import default
  config = default.get_config()
  config.task_def = str(REPO / "configs" / "task_defs" / "demo.yml")
  config.tasks = "sts,paraphrase"
  config.data_dir = str(data_dir)
  config.model_dir = str(model_dir)
  config.max_seq_len = 64
  config.buckets = (64,)  # one shape: 5 batches of 8 per task and epoch
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_epochs = 2
  config.log_every_steps = 1
  config.optim.lr = 1e-3
  config.checkpoint.asynchronous = False
  for key, value in overrides.items():
    if isinstance(value, list):  # JSON has no tuples; the config's sequences are tuples
      value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    target = config
    *parents, leaf = key.split(".")
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


def train_losses(workdir: Path) -> dict[int, float]:
  """Step → loss from a run's metrics.jsonl (the last value if a step was logged twice)."""
  losses = {}
  for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
    row = json.loads(line)
    if row["kind"] == "train":
      losses[row["step"]] = row["loss"]
  return losses


if __name__ == "__main__":
  workdir, model_dir, data_dir, overrides = sys.argv[1:]
  from mtdnn_jax.errors import InputError
  from mtdnn_jax.train import train_and_evaluate
  try:
    results = train_and_evaluate(tiny_config(model_dir, data_dir, **json.loads(overrides)), workdir)
  except InputError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
  print(json.dumps(results))
