#!/usr/bin/env bash
# The one command of a GPU session (issue #14), run on the device machine in the repo's root:
#   here:   bash benchmarks/gpu_wheels.sh
#   device: run(command="bash benchmarks/gpu_device_run.sh", carry=[".whl"], timeout_s=590)
# It writes into $OUT: gpu_suite.md (parts a encode, d DCP save/load and async blocking, b the
# tokenize job, c eager training; C, compiled training, was measured at 55.2% MFU and is left out
# unless PARTS says so), variants.md (the encoder's default path and its CUDA-graphs variant at
# batch 32 and 64, in what time is left), and the logs. Budgets fit one 600 s call.
# SMOKE=1 runs the same steps here on CPU with tiny configs (tests/test_gpu_suite.py does).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
start=$(date +%s)
PY=${PYTHON:-python3}
smoke=()
if [ "${SMOKE:-0}" = 1 ]; then
  smoke=(--smoke)
else
  if compgen -G ".whl/*.whl" >/dev/null; then  # built for the device's Python 3.12 (gpu_wheels.sh)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/nvidia_smi.csv"
  "$PY" -c "import torch, pydantic; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'pydantic', pydantic.VERSION)" \
    || exit 1
fi
timeout "${SUITE_LIMIT_S:-430}" "$PY" benchmarks/gpu_suite.py "${smoke[@]}" --parts "${PARTS:-a,d,b,c}" \
  --budget-s "${SUITE_BUDGET_S:-360}" --out "$OUT/gpu_suite.md" > "$OUT/gpu_suite.log" 2>&1
echo "gpu_suite rc $? after $(( $(date +%s) - start )) s"
cat "$OUT/gpu_suite.md"
left=$(( ${TOTAL_S:-570} - ($(date +%s) - start) ))
if [ "$left" -gt 60 ]; then
  # variants 5 and 8: "bf16 weights, contiguous, compiled" (the default) and its CUDA-graphs form
  timeout "$left" "$PY" benchmarks/gpu_vqgan_variants.py "${smoke[@]}" --variants 5,8 --batches 32,64 \
    --out "$OUT/variants.md" > "$OUT/variants.log" 2>&1
  echo "variants rc $? after $(( $(date +%s) - start )) s"
  cat "$OUT/variants.md" 2>/dev/null || tail -20 "$OUT/variants.log"
fi
