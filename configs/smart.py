"""SMART fine-tuning (SPEC.md §3): adversarial smoothness regulariser and Bregman proximal point.

  python scripts/train.py --config configs/smart.py:rte --workdir runs/smart_rte
  python scripts/train.py --config configs/smart.py:rte --workdir runs/smart_rte_nobreg \
      --config.smart.bregman=False

The reference's defaults: α = 1, one ascent step of size 1e-5 from N(0, 1e-5²) noise,
per-token L∞ normalisation, symmetric KL (MSE for regression); Bregman μ = 1, β = 0.99.
Results with MiniLM: docs/RESULTS.md.
"""
from configs import default


def get_config(tasks: str = "rte"):
  config = default.get_config()
  config.tasks = tasks
  config.smart.adv_train = True
  config.smart.bregman = True
  return config
