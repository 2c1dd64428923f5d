#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per GPU, JAX's distributed runtime reads the
# job from SLURM's environment (no coordinator flags needed).
#
#   sbatch --nodes=2 --gpus-per-node=8 --ntasks-per-node=8 scripts/launch_slurm.sh \
#       configs/glue_mtl.py /shared/runs/mtl --config.model.dtype=bfloat16
#
# For one process per node (each driving all its GPUs), use --ntasks-per-node=1 instead.
# The workdir must be on a file system every node sees (checkpoints are written by all
# processes together). Extra arguments are passed to scripts/train.py.
#SBATCH --job-name=mtdnn-jax
#SBATCH --output=%x-%j.out
set -euo pipefail
CONFIG=${1:?usage: launch_slurm.sh CONFIG WORKDIR [train.py flags...]}
WORKDIR=${2:?usage: launch_slurm.sh CONFIG WORKDIR [train.py flags...]}
shift 2
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
srun --kill-on-bad-exit=1 python scripts/train.py --config "$CONFIG" --workdir "$WORKDIR" \
    --config.distributed.compilation_cache_dir="$WORKDIR/xla_cache" "$@"
