#!/usr/bin/env bash
# Exports a shipped (or any trained) midrun EBM + classifier as a TF Serving SavedModel, serves it
# on 127.0.0.1 with the loopback stand-in (a test double, not TF Serving: see the README), sends
# it 16 test digits over gRPC and prints the purified classes against the labels, then stops it.
#   bash scripts/serve_pretrained.sh [EBM_DIR] [CLASSIFIER_DIR] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
EBM_DIR=${1:-pretrained/midrun_digits}
CLASSIFIER_DIR=${2:-pretrained/classifier_digits}
WORK=${3:-runs/try_serving}
P=.venv/bin/python
GRPC_PORT=${GRPC_PORT:-8500}
REST_PORT=${REST_PORT:-8501}

$P -m export.export_purifier --checkpoint_dir="$EBM_DIR" --classifier_dir="$CLASSIFIER_DIR" \
    --export_base="$WORK/exports" --model_name=purifier --max_batch_size=64
$P -m export.standin_main --model_base_path="$WORK/exports/purifier" --model_name=purifier \
    --grpc_port="$GRPC_PORT" --rest_port="$REST_PORT" --serve_seconds=600 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
# Wait (at most 300 s) until the model reports AVAILABLE over REST.
for _ in $(seq 300); do
  if curl -sf "http://127.0.0.1:$REST_PORT/v1/models/purifier" 2>/dev/null | grep -q AVAILABLE; then
    break
  fi
  kill -0 $server 2>/dev/null || { echo "the stand-in server exited" >&2; exit 1; }
  sleep 1
done
curl -sf "http://127.0.0.1:$REST_PORT/v1/models/purifier"
$P - "$GRPC_PORT" <<'PY'
import sys
from ebm_tf import tf_noise  # before TensorFlow: no CUDA-probe noise
import numpy as np
from ebm_tf import data
from export import client as client_lib
images, labels = data.load_array("digits", "test", max_examples=16)
with client_lib.connect(f"grpc://127.0.0.1:{sys.argv[1]}", "purifier") as client:
  out = client.purify(images, seed=[0, 7])
print("labels           ", labels.tolist())
print("purified classes ", out["class_ids"].tolist())
print(f"accuracy after purification: {np.mean(out['class_ids'] == labels):.3f} (16 test digits, "
      "the export's default purification)")
PY
