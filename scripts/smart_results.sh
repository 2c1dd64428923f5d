#!/usr/bin/env bash
# Reproduces docs/RESULTS.md's SMART and distillation comparison: MiniLM-L6 fine-tuned per task
# with seeds 1 2 3 as plain fine-tuning, SMART (no Bregman), and SMART + Bregman proximal point;
# then a student distilled from the three plain models' averaged probabilities, and that
# ensemble scored on dev as one model.
#   bash scripts/smart_results.sh            (TASKS="rte mrpc stsb" SEEDS="1 2 3" OUT=runs/smart)
# Budget for a 2-core CPU: 2 epochs per run, as in scripts/glue_results.sh. Finished runs are
# skipped when restarted.
set -euo pipefail
cd "$(dirname "$0")/.."
GLUE=${GLUE:-../shared/data/glue}
OUT=${OUT:-runs/smart}
TASKS=${TASKS:-"mrpc"}
SEEDS=${SEEDS:-"1 2 3"}
python scripts/prepro.py --task_def configs/task_defs/glue.yml --raw_dir "$GLUE" \
    --output_dir data/glue --tasks $TASKS
COMMON=(--config.data_dir=data/glue --config.num_epochs=2)
source scripts/results_lib.sh
for t in $TASKS; do
  for s in $SEEDS; do
    run configs/single_task.py:$t "$OUT/plain_${t}_seed$s" --config.seed=$s
    run configs/smart.py:$t "$OUT/smart_${t}_seed$s" --config.seed=$s --config.smart.bregman=False
    run configs/smart.py:$t "$OUT/bregman_${t}_seed$s" --config.seed=$s
  done
  teachers=()
  for s in $SEEDS; do teachers+=("$OUT/plain_${t}_seed$s"); done
  for split in train dev; do  # train: the students' soft labels; dev: the ensemble's own score
    [ -f "$OUT/soft_$t/${t}_${split}_soft.json" ] || python scripts/distill.py \
        --teachers "${teachers[@]}" --output_dir "$OUT/soft_$t" --tasks $t --split $split \
        --which latest  # the checkpoints the table reports, not ones picked on dev
  done
  for s in $SEEDS; do
    run configs/distill.py:$t "$OUT/student_${t}_seed$s" --config.seed=$s \
        --config.distill.soft_labels_dir="$OUT/soft_$t"
  done
done
python scripts/seed_table.py "$OUT" --plot docs/results/smart_minilm.png
keep_logs "$OUT" docs/results/smart_minilm  # the runs' small logs, kept as evidence
for t in $TASKS; do
  mkdir -p "docs/results/smart_minilm/soft_$t"
  cp "$OUT/soft_$t/${t}_dev_soft.json" "docs/results/smart_minilm/soft_$t/"
done
