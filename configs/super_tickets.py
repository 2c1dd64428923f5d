"""Super tickets (SPEC.md §5): fine-tune from the pre-trained encoder under a ticket's masks.

  python scripts/train.py --config configs/single_task.py:rte --workdir runs/rte
  python scripts/super_tickets.py --workdir runs/rte --output_dir tickets/rte
  python scripts/train.py --config configs/super_tickets.py:rte --workdir runs/rte_ticket0.3 \
      --config.tickets.file=tickets/rte/ticket_0.3.json

The first run is the full model the ticket is found in; the last one rewinds to the pre-trained
weights (config.model_dir, heads initialised afresh) and trains only the ticket's heads and
neurons, with everything else as in configs/single_task.py so that the two compare. A
multi-task run works the same way (`configs/glue_mtl.py` with `--config.tickets.file`).
"""
from configs import single_task


def get_config(task: str = "rte"):
  config = single_task.get_config(task)
  config.tickets.file = f"tickets/{task}/ticket_0.3.json"
  return config
