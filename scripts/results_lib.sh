# Shared by the scripts that reproduce docs/RESULTS.md (source it after setting COMMON).
# run CONFIG WORKDIR [FLAGS...]: trains unless WORKDIR already holds a finished run (its plot),
#   with the script's COMMON flags; an interrupted run resumes from its checkpoints.
run() { [ -f "$2/training.png" ] || python scripts/train.py --config "$1" --workdir "$2" "${COMMON[@]}" "${@:3}"; }
# keep_logs OUT DEST: copies every finished run's small logs under OUT into DEST/<run>/, the
#   evidence kept in the repository (checkpoints stay out).
keep_logs() {
  for workdir in "$1"/*/; do
    [ -f "$workdir/metrics.jsonl" ] || continue
    mkdir -p "$2/$(basename "$workdir")"
    cp "$workdir/metrics.jsonl" "$workdir/config.json" "$2/$(basename "$workdir")/"
  done
}
