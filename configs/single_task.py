"""Single-task fine-tuning from the pre-trained encoder: the baseline MT-DNN is compared with.

  python scripts/train.py --config configs/single_task.py:rte --workdir runs/single_rte

`:task` names one task of configs/task_defs/glue.yml; canonical files come from
`python scripts/prepro.py --task_def configs/task_defs/glue.yml --raw_dir GLUE --output_dir data/glue`.
Result with MiniLM-L6 (the default encoder): docs/RESULTS.md.
"""
from configs import default


def get_config(task: str = "rte"):
  config = default.get_config()
  config.tasks = task
  return config
