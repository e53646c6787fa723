#!/usr/bin/env bash
# Runs ON the GPU machine (see device_prepare.sh) under KERAS_BACKEND=jax, on ALL-IDB2's paper split:
# fine-tuned MobileNetV2 members (ImageNet file), then EfficientNetB3-GRU from random weights at its
# native 300 px with our from-scratch recipe and the naive one. Results and logs into the output folder
# named by $OUT.
set -uo pipefail
SITE="${TMPDIR:-/tmp}/site" SCRATCH_DIR="${TMPDIR:-/tmp}/scratch"  # on the GPU machine, outside the copied project tree
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
export PYTHONPATH=$SITE:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export ALLREP_DATA=$PWD/.carry/data ALLREP_WEIGHTS_DIR=$PWD/.carry/weights ALLREP_SCRATCH=$SCRATCH_DIR
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
run() {  # name, then gpu_members.py arguments
  local name=$1; shift
  mkdir -p "$OUT/$name"
  python3 scripts/gpu_members.py --profile paper --dataset IDB2 --out "$OUT/$name" "$@" 2>&1 | tee "$OUT/$name/log.txt"
}
run finetune --backbones mobilenetv2 --members "${MEMBERS:-2}" --epochs "${EPOCHS:-30}"
run scratch_ours --backbones efficientnetb3 --scratch ours --members "${SCRATCH_MEMBERS:-3}"
run scratch_naive --backbones efficientnetb3 --scratch naive --members "${SCRATCH_MEMBERS:-3}"
