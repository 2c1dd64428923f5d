"""MTL refinement (SPEC.md §2): one MT-DNN trained on all GLUE tasks but WNLI at once.

  python scripts/train.py --config configs/glue_mtl.py --workdir runs/mtl
  python scripts/strip_model.py --workdir runs/mtl --output models/mtdnn   # encoder only

`:tasks` overrides the task list (comma-separated, the first is the main task), e.g.
`configs/glue_mtl.py:rte,mrpc,stsb,cola,sst` for the five tasks available offline. The best
checkpoint is picked by the mean dev metric of the tasks (the paper: MNLI and RTE). Then
fine-tune per task from models/mtdnn with configs/finetune.py. Result with MiniLM-L6 on five
tasks: docs/RESULTS.md.
"""
from configs import default

ALL_GLUE_BUT_WNLI = "mnli,rte,qqp,qnli,mrpc,sst,cola,stsb"


def get_config(tasks: str = ALL_GLUE_BUT_WNLI):
  config = default.get_config()
  config.tasks = tasks
  return config
