#!/usr/bin/env bash
# Runs ON the GPU machine (see device_prepare.sh): one fine-tuned member per backbone on ALL-IDB2's
# paper split under KERAS_BACKEND=jax, results and log into $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export ALLREP_DATA=$PWD/.carry/data ALLREP_WEIGHTS_DIR=$PWD/.carry/weights ALLREP_SCRATCH=/tmp/scratch
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 scripts/gpu_members.py --profile paper --dataset IDB2 --backbones mobilenetv2 efficientnetb3 \
  --members "${MEMBERS:-2}" --epochs "${EPOCHS:-30}" --out "$OUT" 2>&1 | tee "$OUT/log.txt"
