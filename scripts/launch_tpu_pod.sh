#!/usr/bin/env bash
# Training on a Cloud TPU VM pod slice: the same command on every worker; JAX's distributed
# runtime finds the other workers by itself.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b bash scripts/launch_tpu_pod.sh \
#       configs/glue_mtl.py gs://my-bucket/runs/mtl --config.model.dtype=bfloat16
#
# Every worker needs this repository at ~/mtdnn-jax (the first step copies it there) and its
# dependencies: pip install -e ".[tf]" "jax[tpu]". The workdir should be a gs:// path or a
# file system all workers share. Extra arguments are passed to scripts/train.py.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
CONFIG=${1:?usage: launch_tpu_pod.sh CONFIG WORKDIR [train.py flags...]}
WORKDIR=${2:?usage: launch_tpu_pod.sh CONFIG WORKDIR [train.py flags...]}
shift 2
cd "$(dirname "$0")/.."
gcloud compute tpus tpu-vm scp --recurse --zone "$ZONE" --worker=all . "$TPU_NAME:~/mtdnn-jax"
printf -v EXTRA ' %q' "$@"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
    "cd ~/mtdnn-jax && python scripts/train.py --config $CONFIG --workdir $WORKDIR \
     --config.distributed.compilation_cache_dir=$WORKDIR/xla_cache$EXTRA"
