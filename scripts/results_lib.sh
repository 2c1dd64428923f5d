# Shared by the scripts that reproduce docs/RESULTS.md (COMMON: the flags every run gets, set
# before a run; KEEP: the folder under docs/results where finished runs' logs are kept as evidence).
# seeds_setup OUT TASKS...: what the per-seed comparisons (smart_results.sh, tickets_results.sh)
#   share: TASKS' canonical GLUE files in data/glue, and COMMON for their 2-epoch runs, which
#   share a compilation cache under OUT (it saves only the ~1 minute each run spends compiling).
seeds_setup() {
  python scripts/prepro.py --task_def configs/task_defs/glue.yml --raw_dir "$GLUE" \
      --output_dir data/glue --tasks "${@:2}"
  COMMON=(--config.data_dir=data/glue --config.num_epochs=2
          --config.distributed.compilation_cache_dir="$1/xla_cache")
}
# train_run CONFIG WORKDIR [FLAGS...]: trains unless WORKDIR already holds a finished run (its
#   plot), with the script's COMMON flags; an interrupted run resumes from its checkpoints. A
#   finished run's small logs are copied to KEEP at once, so evidence accumulates run by run.
train_run() {
  [ -f "$2/training.png" ] || python scripts/train.py --config "$1" --workdir "$2" "${COMMON[@]}" "${@:3}"
  [ -z "${KEEP:-}" ] || keep_run "$2" "$KEEP"
}
# run CONFIG WORKDIR [FLAGS...]: train_run, skipped when KEEP already holds the run's logs (a run
#   finished in an earlier session, whose workdir is gone: runs are deterministic on a CPU).
run() { [ -n "${KEEP:-}" ] && [ -f "$KEEP/$(basename "$2")/metrics.jsonl" ] || train_run "$@"; }
# keep_run WORKDIR DEST: copies a run's metrics.jsonl and config.json into DEST/<run>/.
keep_run() {
  mkdir -p "$2/$(basename "$1")"
  cp "$1/metrics.jsonl" "$1/config.json" "$2/$(basename "$1")/"
}
# keep_logs OUT DEST: keep_run for every finished run under OUT (checkpoints stay out).
keep_logs() {
  for workdir in "$1"/*/; do
    [ -f "$workdir/training.png" ] && keep_run "${workdir%/}" "$2"
  done
  return 0
}
