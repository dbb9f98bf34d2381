#!/usr/bin/env bash
# The GPU checks issues 8 and 9 still owe, as one prepared run for a lent machine (a command there may run
# 10 minutes, and a session has about 15 minutes of device time in all, start-up included): part 1 is the GPU
# tests and the offload and kernel benchmarks, part 2 the end-to-end training and memory-model benchmarks.
#
#   bash benchmarks/gpu_checks.sh 1      # about 8 minutes on one H100/H200
#   bash benchmarks/gpu_checks.sh 2      # about 8 minutes
#   bash benchmarks/gpu_checks.sh all    # both in one 9-minute call, shortened: the correctness and memory
#                                        # checks side by side first, then the timed ones alone
#   bash benchmarks/gpu_checks.sh recheck  # 5-6 minutes: what a fix changes (see its case below)
#   bash benchmarks/gpu_checks.sh owed     # about 9 minutes: the checks left owed (see its case below)
#   bash benchmarks/gpu_checks.sh experts  # about 4 minutes: a mixture of experts, each way a plan trains it
#
# Packages the machine lacks travel as wheels in .whl/ (benchmarks/README.md says which and how); they are
# installed first when the folder is there. Each check has its own time limit, so one that hangs cannot eat
# the others' time (SKIP="kernels offload" leaves those out, e.g. on a second call). The logs and the JSON
# results written in this run go into one archive in $OUT (the device tool brings back only a few files),
# beside summary.txt.
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
  case " ${SKIP:-} " in *" $name "*) echo "$name: skipped (SKIP)" | tee -a "$OUT/summary.txt"; return ;; esac
  local started=$SECONDS
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local code=$?
  echo "$name: exit $code after $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
  tail -n 8 "$LOGS/$name.log"
  pack
}

pack() {  # the archive is rebuilt after every check, so a call stopped at its limit still brings back the rest
  find benchmarks/results -name '*.json' -newer "$LOGS/.started" -exec cp {} "$LOGS/" \;
  local part="$OUT/.gpu-checks-$PART.$BASHPID"  # checks side by side must not write one archive at once
  tar czf "$part" -C "$LOGS" . 2>/dev/null
  mv -f "$part" "$OUT/gpu-checks-$PART.tgz"
}
PART=${1:-1}
GPU_TESTS="tests/kernels tests/core/test_offload_cuda.py tests/core/test_link_probe.py"  # what needs a GPU to run

case "$PART" in
  1)
    check pytest 200 $PY -m pytest -q -p no:cacheprovider $GPU_TESTS
    check offload 200 $PY benchmarks/offload_gpu.py
    check offload-layer-major 150 $PY benchmarks/offload_gpu.py --cell 70b-nf4-24g --accumulation 4 --layer-major \
      --out benchmarks/results/offload-layer-major.json
    check kernels 90 $PY benchmarks/kernels_gpu.py
    ;;
  2)
    check training-e2e 240 $PY benchmarks/training_e2e_gpu.py
    check memory-model 120 $PY benchmarks/memory_model_gpu.py --quick
    check strategies 100 $PY benchmarks/strategies_gpu.py
    ;;
  all)  # one call: what measures correctness or memory runs side by side (its timings say so), then the
        # timed benchmarks one at a time with fewer steps
    check pytest 170 $PY -m pytest -q -p no:cacheprovider --tb=short -rfE $GPU_TESTS &
    (check memory-model 100 $PY benchmarks/memory_model_gpu.py --quick
     check strategies 70 $PY benchmarks/strategies_gpu.py --steps 3 --lisa-steps 6) &
    wait
    check kernels 75 $PY benchmarks/kernels_gpu.py
    check training-e2e 170 $PY benchmarks/training_e2e_gpu.py --steps 4
    check offload 170 $PY benchmarks/offload_gpu.py --steps 3
    ;;
  recheck)  # about 5-6 minutes, after fixes: the tests, memory model and strategies side by side, the loss
            # kernel, LoRA without checkpointing (what the planner picks where activations fit), and the
            # layer-major 70B offload cell
    check pytest 100 $PY -m pytest -q -p no:cacheprovider --tb=short -rfE $GPU_TESTS &
    (check memory-model 50 $PY benchmarks/memory_model_gpu.py --quick
     check strategies 45 $PY benchmarks/strategies_gpu.py --steps 3 --lisa-steps 6) &
    wait
    # beside the logs: a one-kernel run must not overwrite results/kernels-<gpu>.json, which has them all
    check kernels 30 $PY benchmarks/kernels_gpu.py --kernel cross_entropy --out "$LOGS/kernels-cross_entropy.json"
    check training-e2e 110 $PY benchmarks/training_e2e_gpu.py --cell peft-lora --cell lora --no-checkpointing --steps 4
    check offload-layer-major 150 $PY benchmarks/offload_gpu.py --cell 70b-nf4-24g --accumulation 4 --layer-major \
      --out benchmarks/results/offload-layer-major.json
    ;;
  owed)  # about 9 minutes: what stop 25 left owed. The tests (host activations on the side stream among them),
         # QLoRA with its activations in RAM against peft (issue 8's memory goal), every offload cell with its
         # roofline (issue 9's goal), then the memory model alone (it timed out beside the tests before)
    check pytest 85 $PY -m pytest -q -p no:cacheprovider --tb=short -rfE $GPU_TESTS
    check training-e2e 170 $PY benchmarks/training_e2e_gpu.py --cell peft-qlora --cell qlora \
      --cell qlora-host-activations --steps 4
    check offload 185 $PY benchmarks/offload_gpu.py --steps 3
    check memory-model 90 $PY benchmarks/memory_model_gpu.py --quick
    ;;
  experts)  # a mixture of experts (Qwen3-30B-A3B's shape, 4 layers) trained each way a plan may pick: peaks and
            # tokens/s against the memory and speed models, the experts in 4 bits among them
    check moe 260 $PY benchmarks/moe_gpu.py
    ;;
  *)
    echo "usage: bash benchmarks/gpu_checks.sh 1|2|all|recheck|owed|experts" >&2
    exit 2
    ;;
esac
pack
