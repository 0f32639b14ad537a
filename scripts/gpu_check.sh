#!/usr/bin/env bash
# The CUDA path end to end on one GPU, in one call (about 4 minutes on an H100, plus the tests):
# versions, smoke tests of the benchmarks on CUDA, short trainings (fp32 and bf16) with eval/translate,
# `attnlab bench --device cuda`, benchmarks/scaling.py on CUDA, a profile of one step (kernels vs
# wall time, eager vs torch.compile: scripts/gpu_profile_step.py), then the fast test suite.
#
#   OUT=/tmp/gpu bash scripts/gpu_check.sh          # run from the repository root
#
# Writes (flat) into $OUT: gpu_check.log, bench-cuda.json, attention-cuda.png, scaling-cuda.json,
# scaling-cuda.md, profile-step-cuda.json, pytest.log. Python packages missing on the machine (fastapi, uvicorn, ...) can be
# put as wheels in .whl/; they are installed into /tmp/site first. Every stage has its own time limit
# and a failure does not stop the later ones; the summary at the end lists each stage's exit status.
set -u
OUT=${OUT:?set OUT to a folder for the results}
PY=${PY:-python3}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >>"$LOG" 2>&1 && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# attnlab itself, with its console script (no dependencies fetched: nothing can be reached)
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$LOG" 2>&1 \
    || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
ATTNLAB=(env "$PY" -m attnlab)
RUNS=/tmp/attnlab-runs
rm -rf "$RUNS"
SUMMARY=()

stage() {  # stage NAME SECONDS COMMAND...: run with a limit, log it, remember the exit status and time
    local name=$1 limit=$2
    shift 2
    if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then return; fi  # ONLY="a b": run just those stages
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    SUMMARY+=("$name: rc=$rc, $((SECONDS - start)) s")
    echo "=== $name: rc=$rc in $((SECONDS - start)) s" | tee -a "$LOG"
}

stage versions 60 bash -c "nvidia-smi; $PY -c 'import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.is_available())'; $PY -c 'import attnlab, fastapi; print(attnlab.__file__)'"
stage bench-quick 120 "${ATTNLAB[@]}" bench --quick --device cuda --out "$RUNS/bench-quick"
stage scaling-quick 60 "$PY" benchmarks/scaling.py --quick --device cuda --out "$RUNS/scaling-quick"
stage train-reverse 150 "${ATTNLAB[@]}" train --task reverse --device cuda --steps 300 --quiet --out "$RUNS/reverse"
stage eval-reverse 60 "${ATTNLAB[@]}" eval "$RUNS/reverse"
stage generate-reverse 60 "${ATTNLAB[@]}" generate "$RUNS/reverse" "3 1 4 1 5"
stage train-toy-bf16 150 "${ATTNLAB[@]}" train --task toy --device cuda --precision bf16 --steps 600 --quiet --out "$RUNS/toy-bf16"
stage eval-toy 90 "${ATTNLAB[@]}" eval "$RUNS/toy-bf16"
stage translate-toy 60 "${ATTNLAB[@]}" translate "$RUNS/toy-bf16" --beam 4 "the small cat does not like the red car ."
stage bench-cuda 200 "${ATTNLAB[@]}" bench --device cuda --out "$RUNS/bench"
cp "$RUNS/bench/bench.json" "$OUT/bench-cuda.json" 2>/dev/null
cp "$RUNS/bench/attention.png" "$OUT/attention-cuda.png" 2>/dev/null
stage scaling-cuda 150 "$PY" benchmarks/scaling.py --device cuda --batches 16,64,256,1024 --d-models 128,256,512,1024 \
    --size-batch 256 --out "$OUT/scaling-cuda"
stage profile-step 300 "$PY" scripts/gpu_profile_step.py --out "$OUT/profile-step-cuda.json"
# the explorer and browser tests need playwright and Chromium, which the GPU image lacks
stage pytest "${PYTEST_LIMIT:-150}" bash -c "set -o pipefail; CUDA_VISIBLE_DEVICES=0 $PY -m pytest -q -p no:cacheprovider \
    -p no:benchmark -n 8 tests/ -k 'not browser and not slow' --ignore tests/test_explore_live.py \
    --ignore tests/test_viz_browser.py 2>&1 | tee $OUT/pytest.log | tail -30"
if [[ -n "${SLOW:-}" ]]; then  # SLOW=1: also the end-to-end trainings, where --device auto now picks the GPU
    stage pytest-slow "${SLOW_LIMIT:-300}" bash -c "set -o pipefail; $PY -m pytest -q -p no:cacheprovider -p no:benchmark \
        -n 8 tests/ -m slow -k 'not browser' --ignore tests/test_explore_live.py --ignore tests/test_viz_browser.py \
        2>&1 | tee $OUT/pytest-slow.log | tail -30"
fi

echo "=== summary" | tee -a "$LOG"
printf '%s\n' "${SUMMARY[@]}" | tee -a "$LOG"
grep -E "^(train step|decoding|L=|d_model|matmul)" "$LOG" | tail -60
