#!/usr/bin/env bash
# Reproduces docs/RESULTS.md's super-ticket comparison (SPEC.md §5): per task, the heads and
# feed-forward neurons of the plain seed-1 MiniLM-L6 model are scored, a ticket is cut at each
# sparsity, and each ticket is rewound to the pre-trained weights and fine-tuned with seeds 1 2 3,
# against the full model's three plain runs (the same as scripts/smart_results.sh's, shared).
#   bash scripts/tickets_results.sh     (TASKS="mrpc rte" SPARSITIES="0.1 0.3 0.5" SEEDS="1 2 3")
# Budget for a 2-core CPU: 2 epochs per run, about 9 minutes each, so ~1.5 hours per task with
# the plain runs already kept. As in scripts/smart_results.sh, a finished run's logs are kept at
# once (docs/results/tickets_minilm/, with the tickets) and a kept run is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
GLUE=${GLUE:-../shared/data/glue}
OUT=${OUT:-runs/smart}  # shared with smart_results.sh: the plain runs and the compilation cache
TASKS=${TASKS:-"mrpc rte"}
SPARSITIES=${SPARSITIES:-"0.1 0.3 0.5"}  # written as python's f"{x:g}" would: 0.1, not 0.10
SEEDS=${SEEDS:-"1 2 3"}
KEEP=docs/results/tickets_minilm
FULL_MODEL=docs/results/smart_minilm  # where the plain runs' logs are kept
source scripts/results_lib.sh
seeds_setup "$OUT" $TASKS
for t in $TASKS; do
  tickets="$KEEP/tickets_$t"
  to_cut=()
  for sp in $SPARSITIES; do [ -f "$tickets/ticket_$sp.json" ] || to_cut+=("$sp"); done
  for s in $SEEDS; do
    if [ "$s" = 1 ] && [ ${#to_cut[@]} -gt 0 ]; then  # its checkpoint is scored: train it here
      KEEP=$FULL_MODEL train_run configs/single_task.py:$t "$OUT/plain_${t}_seed1" --config.seed=1
    else
      KEEP=$FULL_MODEL run configs/single_task.py:$t "$OUT/plain_${t}_seed$s" --config.seed=$s
    fi
  done
  if [ ${#to_cut[@]} -gt 0 ]; then
    python scripts/super_tickets.py --workdir "$OUT/plain_${t}_seed1" --output_dir "$tickets" \
        --sparsities "$(IFS=,; echo "${to_cut[*]}")"  # scored on the train split, last checkpoint
  fi
  for sp in $SPARSITIES; do
    percent=$(awk "BEGIN { print $sp * 100 }")
    for s in $SEEDS; do
      run configs/super_tickets.py:$t "$OUT/ticket${percent}_${t}_seed$s" --config.seed=$s \
          --config.tickets.file="$tickets/ticket_$sp.json"
    done
  done
done
python scripts/seed_table.py "$FULL_MODEL" "$KEEP" --arms plain,ticket --tasks "${TASKS// /,}" \
    --plot docs/results/tickets_minilm.png
