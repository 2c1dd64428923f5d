"""Domain adaptation (SPEC.md §2): fine-tune on a fraction of SNLI or SciTail training data.

  python scripts/prepro.py --task_def configs/task_defs/scitail.yml --raw_dir RAW \
      --output_dir data/scitail --train_fractions 0.001 0.01 0.1
  python scripts/train.py --config configs/domain_adaptation.py:scitail,0.01 \
      --workdir runs/scitail_1pct --config.model_dir=models/mtdnn

`:task,fraction` with task snli or scitail and fraction 0.001, 0.01, 0.1 or 1. Linear head (no
SAN), 3 epochs, lr 5e-5, batch 8 for the two smallest fractions and 32 otherwise, as the
reference. Published dev accuracy (BERT-base → MT-DNN-base) at 0.1/1/10/100%: SNLI
52.5/78.1/86.7/91.0 → 82.1/85.2/88.4/91.5; SciTail 51.2/82.2/90.5/94.3 → 81.9/88.3/91.1/95.7.
"""
from configs import default
from mtdnn_jax.data.raw import subset_split_name


def get_config(arg: str = "scitail,0.01"):
  task, fraction = arg.split(",")
  fraction = float(fraction)
  config = default.get_config()
  config.task_def = f"configs/task_defs/{task}.yml"
  config.tasks = task
  config.data_dir = f"data/{task}"
  config.train_split = "train" if fraction == 1 else subset_split_name(fraction)
  config.batch_size = 8 if fraction < 0.1 else 32
  config.num_epochs = 3
  config.optim.lr = 5e-5
  return config
