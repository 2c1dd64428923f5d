"""SMART fine-tuning (SPEC.md §3): adversarial smoothness regulariser and Bregman proximal point.

  python scripts/train.py --config configs/smart.py:rte --workdir runs/smart_rte
  python scripts/train.py --config configs/smart.py:rte --workdir runs/smart_rte_nobreg \
      --config.smart.bregman=False

The reference's defaults: α = 1, one ascent step of size 1e-5 from N(0, 1e-5²) noise,
per-token L∞ normalisation, symmetric KL (MSE for regression); Bregman μ = 1, β = 0.99.
Expected with MiniLM-L6, 2 epochs, seeds 1-3 (dev; docs/RESULTS.md, `bash scripts/smart_results.sh`):
MRPC ACC 70.5 ± 0.3 (70.4 ± 0.6 with Bregman; plain 70.3 ± 0.3), STS-B Pearson 72.2 ± 2.4
(73.2 ± 3.1; plain 73.2 ± 1.3), RTE ACC 52.8 ± 2.8 (51.7 ± 3.1; plain 52.9 ± 2.6, at chance):
no gain over plain fine-tuning in this small budget.
"""
from configs import default


def get_config(tasks: str = "rte"):
  config = default.get_config()
  config.tasks = tasks
  config.smart.adv_train = True
  config.smart.bregman = True
  return config
