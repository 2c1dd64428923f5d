#!/usr/bin/env bash
# Issue 8's GPU check, prepared here and run on a lent GPU machine (the device tool; see
# docs/PERFORMANCE.md, section "GPU").
#
#   bash scripts/gpu_check.sh prepare       # here, with the package registry: fills .device/
#   bash scripts/gpu_check.sh run [--quick] # there, from the repository root, with $OUT set
#                                           # (--quick: without the full benchmark)
#
# The GPU machine has JAX with CUDA, flax, optax, orbax, PyTorch and transformers, but no
# network, no ../shared beside the checkout, and takes at most 64 MiB of carried files. So
# `prepare` gathers what the benchmark needs that it lacks: wheels of the pure-Python packages
# it does not have, MRPC (from ../shared/data/glue) and the uncased vocabulary MRPC is tokenized
# with (the packaged all-MiniLM-L6-v2's vocab.txt; the package's weights, 88 MB, are not
# needed: the benchmark times randomly initialised encoders). The device call then names
# `.device` in `carry`:
#
#   run(command="bash scripts/gpu_check.sh run", carry=[".device"], timeout_s=600)
#
# `run` runs tests/test_gpu.py (cuDNN attention against ours), then the benchmark in bfloat16
# with cuDNN attention at evaluation, --quick and then full, writing into $OUT: gpu.txt,
# test_gpu.log, benchmark_gpu_quick.json, benchmark_gpu.json, their logs, and PERFORMANCE.md and
# PERFORMANCE_gpu.png with the GPU section filled in by the last run that finished (copy those
# two into docs/ here).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE_DIR=.device
WHEELS=(ml-collections==1.1.0 tensorboardX==2.6.5)  # absent from that machine's image

prepare() {
  set -e
  rm -rf "$DEVICE_DIR"
  mkdir -p "$DEVICE_DIR/wheels" "$DEVICE_DIR/glue"
  # Pure-Python wheels: any platform's pip takes them; Python 3.12 is that machine's.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 -d "$DEVICE_DIR/wheels" "${WHEELS[@]}"
  cp -r ../shared/data/glue/MRPC "$DEVICE_DIR/glue/"
  cp "$(python3 -c "import sys; sys.path.insert(0, '.')
from mtdnn_jax.pretrained import packaged_source_dir
print(packaged_source_dir('all-MiniLM-L6-v2') / 'vocab.txt')")" "$DEVICE_DIR/vocab.txt"
  grep -qx "/$DEVICE_DIR/" .git/info/exclude 2>/dev/null || echo "/$DEVICE_DIR/" >> .git/info/exclude
  du -sh "$DEVICE_DIR"
}

run_check() {
  local out="${OUT:?run this on the device machine, where OUT names the folder that comes back}"
  # One device call may run 10 minutes: each stage gets what is left of GPU_CHECK_SECONDS, and
  # the quick benchmark runs before the full one, so that a call cut short still brings back a
  # GPU table (the full run's replaces it when it finishes).
  local deadline=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-560} ))
  left() { echo $(( deadline - $(date +%s) )); }
  within() {  # runs "$@" under what is left (never `timeout 0`, which would not time out)
    local seconds; seconds=$(left)
    if [ "$seconds" -le 10 ]; then echo "gpu_check: no time left for: $*"; return 124; fi
    timeout "$seconds" "$@"
  }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$DEVICE_DIR"/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
      | tee "$out/gpu.txt"
  python3 -c "import jax, torch; print(jax.__version__, jax.devices(), torch.__version__,
torch.cuda.is_available())" | tee -a "$out/gpu.txt"
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 \
      | tee "$out/test_gpu.log"
  bring_back_report() { cp docs/PERFORMANCE.md docs/PERFORMANCE_gpu.png "$out/" 2>/dev/null; }
  local data=(--glue_dir "$DEVICE_DIR/glue" --vocab "$DEVICE_DIR/vocab.txt")
  within python3 scripts/benchmark.py --quick "${data[@]}" \
      --out "$out/benchmark_gpu_quick.json" --report docs/PERFORMANCE.md 2>&1 \
      | tee "$out/benchmark_quick.log"
  bring_back_report
  [ "${1:-}" = "--quick" ] && return
  within python3 scripts/benchmark.py "${data[@]}" --out "$out/benchmark_gpu.json" \
      --report docs/PERFORMANCE.md 2>&1 | tee "$out/benchmark.log"
  bring_back_report
  echo "gpu_check: done with $(left) s of ${GPU_CHECK_SECONDS:-560} left"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run_check "$@" ;;
  *) echo "usage: bash scripts/gpu_check.sh prepare | run [--quick]" >&2; exit 2 ;;
esac
