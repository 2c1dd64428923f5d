#!/usr/bin/env bash
# Reproduces docs/RESULTS.md's SMART and distillation comparison: MiniLM-L6 fine-tuned per task
# with seeds 1 2 3 as plain fine-tuning, SMART (no Bregman), and SMART + Bregman proximal point;
# then a student distilled from the three plain models' averaged probabilities, and that
# ensemble scored on dev as one model.
#   bash scripts/smart_results.sh            (TASKS="rte mrpc stsb" SEEDS="1 2 3" OUT=runs/smart)
# Budget for a 2-core CPU: 2 epochs per run, as in scripts/glue_results.sh; about 3 hours per
# task. Each finished run's logs go to docs/results/smart_minilm/ at once, and a run found there
# is not run again (runs are deterministic on a CPU), so the work can be spread over sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
GLUE=${GLUE:-../shared/data/glue}
OUT=${OUT:-runs/smart}
TASKS=${TASKS:-"rte mrpc stsb"}
SEEDS=${SEEDS:-"1 2 3"}
KEEP=docs/results/smart_minilm
source scripts/results_lib.sh
seeds_setup "$OUT" $TASKS
for t in $TASKS; do
  soft="$KEEP/soft_$t"  # the ensemble's soft labels, kept so students need no teachers later
  splits=()  # soft-label files still to write: train feeds the students, dev scores the ensemble
  [ -f "$soft/${t}_dev_soft.json" ] || splits+=(dev)
  if [ ! -f "$soft/${t}_train_soft.json" ]; then
    for s in $SEEDS; do
      [ -f "$KEEP/student_${t}_seed$s/metrics.jsonl" ] || { splits+=(train); break; }
    done
  fi
  # The plain models first: they are the teachers, so the KD comparison is complete before the
  # (twice as costly) SMART arms start. Soft labels still to write need their checkpoints here.
  teach=run
  [ ${#splits[@]} -eq 0 ] || teach=train_run
  teachers=()
  for s in $SEEDS; do
    $teach configs/single_task.py:$t "$OUT/plain_${t}_seed$s" --config.seed=$s
    teachers+=("$OUT/plain_${t}_seed$s")
  done
  for split in "${splits[@]}"; do
    python scripts/distill.py --teachers "${teachers[@]}" --output_dir "$soft" --tasks $t \
        --split $split --which latest  # the checkpoints the table reports, not ones picked on dev
  done
  for s in $SEEDS; do
    run configs/distill.py:$t "$OUT/student_${t}_seed$s" --config.seed=$s \
        --config.distill.soft_labels_dir="$soft"
  done
  for s in $SEEDS; do
    run configs/smart.py:$t "$OUT/smart_${t}_seed$s" --config.seed=$s --config.smart.bregman=False
    run configs/smart.py:$t "$OUT/bregman_${t}_seed$s" --config.seed=$s
  done
done
python scripts/seed_table.py "$KEEP" --plot docs/results/smart_minilm.png
