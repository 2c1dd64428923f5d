"""Fine-tuning one task from the MTL-refined encoder (the second stage of MT-DNN).

  python scripts/train.py --config configs/finetune.py:rte --workdir runs/ft_rte \
      --config.model_dir=models/mtdnn

`models/mtdnn` is what `scripts/strip_model.py` made of a configs/glue_mtl.py run. The
reference fine-tunes RTE at lr 2e-5 and STS-B at the default; we keep one lr for all tasks so
that the comparison with configs/single_task.py changes only the encoder. Result: docs/RESULTS.md.
"""
from configs import default


def get_config(task: str = "rte"):
  config = default.get_config()
  config.tasks = task
  config.model_dir = "models/mtdnn"
  return config
