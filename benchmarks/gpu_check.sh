#!/usr/bin/env bash
# The prepared GPU check: one script, one log, at most 8 minutes on one GPU from a bare machine.
#
#   1. the tests marked `cuda` (tests/test_cuda.py: forward and backward of the encoders and the
#      denoiser on the GPU, a tiny fit / embed / generate with --device cuda, a checkpoint
#      written on the GPU loaded on the CPU, torchrun --nproc-per-node 1 with nccl);
#   2. the `default` preset fitted on 10,000 DHS sequences in bf16, then fp32, each printing
#      samples/s of every phase, the peak GPU memory and the bare-loop ratio
#      (benchmarks/gpu_fit.py);
#   3. the `default` preset (precision and batches `auto`) fitted on 1,000,000 sequences
#      resampled from the bundled DHS example on the machine (--big-n), printing the same
#      figures, the peak host memory and what auto chose; it gets the time left of the 8
#      minutes (--budget) and, stopped there, reports what it measured until then;
#   4. all of it written to one log (--log, default gpu_check.log).
#
# Usage:
#   bash benchmarks/gpu_check.sh --data .gpu/dhs_train_10000.fa [--wheels .gpu/wheels] [--log F]
#   bash benchmarks/gpu_check.sh --device cpu     # the one-minute CPU version (CI runs it)
#
# A bare GPU machine without a package registry needs, carried in: the data (written here by
# `python benchmarks/gpu_fit.py --write-data .gpu/dhs_train_10000.fa`) and wheels of the project
# and of what its image lacks (`make gpu-check-bundle` writes both into .gpu/).
set -uo pipefail
HERE="$PWD"
cd "$(dirname "$0")/.."
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$HERE/$1" ;; esac; }

DEVICE=cuda
DATA=""
WHEELS=""
LOG=gpu_check.log
PY="${PYTHON:-}"
BIG_N=""
BUDGET=480  # seconds for the whole check; the large fit gets what the other steps leave
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --data) DATA="$(absolute "$2")"; shift 2 ;;
        --wheels) WHEELS="$(absolute "$2")"; shift 2 ;;
        --log) LOG="$(absolute "$2")"; shift 2 ;;
        --python) PY="$2"; shift 2 ;;
        --big-n) BIG_N="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check.sh: --device is cuda or cpu" >&2; exit 2 ;; esac
if [ "$DEVICE" = cuda ] && [ -z "$DATA" ]; then
    echo "gpu_check.sh: --data FILE is needed on a GPU (see --help)" >&2
    exit 2
fi

mkdir -p "$(dirname "$LOG")"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
export PYTHONUNBUFFERED=1 DIFFAUG_NO_BAR=1
failed=()
step() {  # step NAME COMMAND...: run it, time it, remember a failure, go on
    local name="$1"; shift
    echo "=== $name: $*"
    local t0=$SECONDS
    "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || failed+=("$name")
}

echo "gpu_check $(date -u +%FT%TZ) on $(hostname), device $DEVICE"
if [ -n "$WHEELS" ]; then
    step install "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/gpu-check-site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
    # the installed wheel, not the source tree in the current directory (which lacks the
    # package's resources): Python 3.11+ then leaves the working directory off sys.path
    export PYTHONSAFEPATH=1
fi
"$PY" -c "import diffaug_genomics.config as c; c.resolve_config('tiny')" || {
    echo "gpu_check: the project is not installed for $PY (pip install -e ., or --wheels DIR)"
    exit 2
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

if [ "$DEVICE" = cuda ]; then
    step cuda-tests "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
    for precision in bf16 fp32; do
        step "fit-$precision" "$PY" benchmarks/gpu_fit.py --data "$DATA" --device cuda \
            --precision "$precision" --json "${LOG%.log}-$precision.json"
    done
    # the large fit: what is left of the budget, less 100 s for its data (about 10 s) and its
    # bare-loop turns (65,536 rows at the run's batches)
    left=$((BUDGET - SECONDS - 100))
    [ "$left" -ge 60 ] || left=60
    step fit-large "$PY" benchmarks/gpu_fit.py --n "${BIG_N:-1000000}" --device cuda \
        --time-limit "$left" --json "${LOG%.log}-large.json"
else  # the CPU version: the cuda tests skip themselves; short fits check the path
    step cuda-tests "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
    for precision in bf16 fp32; do
        step "fit-$precision" "$PY" benchmarks/gpu_fit.py --device cpu --quick \
            --precision "$precision" ${DATA:+--data "$DATA"} --json "${LOG%.log}-$precision.json"
    done
    step fit-large "$PY" benchmarks/gpu_fit.py --n "${BIG_N:-2000}" --device cpu --quick \
        --time-limit 90 --json "${LOG%.log}-large.json"
fi
echo "gpu_check: $SECONDS s in all (budget $BUDGET s)"

status=0
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${failed[*]} (log: $LOG)"
    status=1
else
    echo "gpu_check: all steps passed (log: $LOG)"
fi
exec >&- 2>&-  # close the pipe into tee and let it write the last lines before exiting
wait "$TEE_PID" 2>/dev/null
exit $status
