#!/usr/bin/env bash
# The GPU checks issues 8 and 9 still owe, as one prepared run for a lent machine (a command there may run
# 10 minutes, and a session has about 15 minutes of device time in all, start-up included): part 1 is the GPU
# tests and the offload and kernel benchmarks, part 2 the end-to-end training and memory-model benchmarks.
#
#   bash benchmarks/gpu_checks.sh 1      # about 8 minutes on one H100/H200
#   bash benchmarks/gpu_checks.sh 2      # about 8 minutes
#
# Packages the machine lacks travel as wheels in .whl/ (benchmarks/README.md says which and how); they are
# installed first when the folder is there. Each check has its own time limit, so one that hangs cannot eat
# the others' time. The logs and the JSON results written in this run go into one archive in $OUT (the device
# tool brings back only a few files), beside summary.txt.
set -u
OUT=${OUT:-/tmp/tuneforge-gpu-checks}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
touch "$LOGS/.started"
export PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv \
  > "$LOGS/gpu.txt" 2>&1

check() {  # check NAME SECONDS COMMAND...: run it under a time limit, keep its log, say how it ended
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local code=$?
  echo "$name: exit $code after $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
  tail -n 8 "$LOGS/$name.log"
}

case "${1:-1}" in
  1)
    check pytest 200 $PY -m pytest -q -p no:cacheprovider tests/kernels tests/core/test_offload_cuda.py \
      tests/core/test_link_probe.py
    check offload 200 $PY benchmarks/offload_gpu.py
    check offload-layer-major 80 $PY benchmarks/offload_gpu.py --cell 70b-nf4-24g --accumulation 4 --layer-major \
      --out benchmarks/results/offload-layer-major.json
    check kernels 90 $PY benchmarks/kernels_gpu.py
    ;;
  2)
    check training-e2e 240 $PY benchmarks/training_e2e_gpu.py
    check memory-model 120 $PY benchmarks/memory_model_gpu.py --quick
    check strategies 100 $PY benchmarks/strategies_gpu.py
    ;;
  *)
    echo "usage: bash benchmarks/gpu_checks.sh 1|2" >&2
    exit 2
    ;;
esac
find benchmarks/results -name '*.json' -newer "$LOGS/.started" -exec cp {} "$LOGS/" \;
tar czf "$OUT/gpu-checks-${1:-1}.tgz" -C "$LOGS" .
