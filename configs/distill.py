"""Knowledge distillation (SPEC.md §4): a student MT-DNN trained on an ensemble's soft labels.

  for s in 1 2 3; do
    python scripts/train.py --config configs/single_task.py:rte --workdir runs/teacher$s --config.seed=$s
  done
  python scripts/distill.py --teachers runs/teacher1 runs/teacher2 runs/teacher3 --output_dir soft/
  python scripts/train.py --config configs/distill.py:rte --workdir runs/student \
      --config.distill.soft_labels_dir=soft/

Loss: hard_weight · CE(gold) + kd_weight · KL(soft ‖ student) for classification (squared error
to the teachers' score for regression). Expected with MiniLM-L6, 2 epochs, seeds 1-3 (dev;
docs/RESULTS.md): students MRPC ACC 70.4 ± 0.3, STS-B Pearson 72.3 ± 0.4, RTE ACC 52.8 ± 3.1,
each near a single model and below the teachers' ensemble (70.8, 74.0, 54.5).
"""
from configs import default


def get_config(tasks: str = "rte"):
  config = default.get_config()
  config.tasks = tasks
  config.distill.soft_labels_dir = "soft"
  return config
