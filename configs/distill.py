"""Knowledge distillation (SPEC.md §4): a student MT-DNN trained on an ensemble's soft labels.

  for s in 1 2 3; do
    python scripts/train.py --config configs/single_task.py:rte --workdir runs/teacher$s --config.seed=$s
  done
  python scripts/distill.py --teachers runs/teacher1 runs/teacher2 runs/teacher3 --output_dir soft/
  python scripts/train.py --config configs/distill.py:rte --workdir runs/student \
      --config.distill.soft_labels_dir=soft/

Loss: hard_weight · CE(gold) + kd_weight · KL(soft ‖ student) for classification (squared error
to the teachers' score for regression). Results with MiniLM: docs/RESULTS.md.
"""
from configs import default


def get_config(tasks: str = "rte"):
  config = default.get_config()
  config.tasks = tasks
  config.distill.soft_labels_dir = "soft"
  return config
