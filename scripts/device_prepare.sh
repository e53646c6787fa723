#!/usr/bin/env bash
# Prepare a run on a GPU machine without network access (JAX, no TensorFlow; .whl/ and .carry/ together
# stay within 64 MiB): keras wheels (and wrapt, which allrep.repro uses) for Python 3.12 into .whl/,
# ALL-IDB2 and the MobileNetV2 ImageNet file into .carry/. Both folders are git-ignored; nothing here is
# committed. Then copy the project with both folders to that machine and run there, with $OUT naming the output
# folder:
#   OUT=DIR bash scripts/device_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data=${ALLREP_DATA:?set ALLREP_DATA}
weights=${ALLREP_WEIGHTS_DIR:?set ALLREP_WEIGHTS_DIR (allrep weights build DEST)}
rm -rf .whl .carry && mkdir -p .whl .carry/data/ALL_IDB2 .carry/weights
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0 wrapt==2.5.2
cp -r "$data/ALL_IDB2/img" .carry/data/ALL_IDB2/
cp "$weights/mobilenet_v2_tv_1.0_224_no_top.h5" .carry/weights/
python3 - "$weights/manifest.yaml" .carry/weights/manifest.yaml <<'PY'
import sys, yaml
m = yaml.safe_load(open(sys.argv[1]))
m["inceptionv3"] = None  # 88 MB: over the 64 MiB the copied folders stay within; the GPU run covers MobileNetV2 and EfficientNetB3
yaml.safe_dump(m, open(sys.argv[2], "w"))
PY
du -sh .whl .carry
