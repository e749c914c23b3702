#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go (under 8 minutes on the lent H200 machine):
# the `gpu` tests, then the GPU benchmarks (training speed, the JPEG data path, torch.compile).
#
#   bash benchmarks/gpu_wheels.sh            # here, once: the wheels a bare GPU machine lacks (./.whl)
#   bash benchmarks/gpu_check.sh             # there, from the project root (the device tool: carry .whl)
#   bash benchmarks/gpu_check.sh --smoke     # a rehearsal on a CPU: the same install and scripts, tiny sizes
#
# Rehearse before spending GPU time: the lent machine's python3 (3.12, torch 2.11, no Optuna or
# TorchCodec) differs from the project's virtualenv, e.g. in a fresh Python 3.12 venv with
# `pip install "torch==2.11.*" "torchvision==0.26.*" "lightning==2.6.*" timm "torchmetrics==1.9.*"
# rich matplotlib scikit-learn scikit-image onnxruntime setuptools` first on PATH.
#
# Logs go to $OUT (the device tool brings that folder back), else /tmp/gpu_check. Each step has
# its own time limit, so one slow step cannot eat the others' time; a step that fails is reported
# and the next one still runs; the exit code is the number of failed steps.
set -uo pipefail
smoke=""
case "${1:-}" in
    --smoke) smoke="--smoke" ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--smoke]" >&2; exit 2 ;;
esac
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
    echo "gpu_check: no wheels in ./.whl: using what python3 has (a bare GPU machine lacks jsonargparse, wandb, pytest; run benchmarks/gpu_wheels.sh where the registry is reachable and carry .whl)"
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
failed=0
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local code=$?
    grep -iE "\bratio\b|images/s|passed|failed|skipped|error" "$OUT/$name.log" | tail -n 12
    if [ "$code" -ne 0 ]; then
        failed=$((failed + 1))
        echo "-- last lines of $name.log:"
        tail -n 5 "$OUT/$name.log"
    fi
    echo "== $name: exit $code after $((SECONDS - start)) s"
}
if [ -z "$smoke" ]; then
    if ! python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
        echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); to rehearse on a CPU: bash benchmarks/gpu_check.sh --smoke" >&2
        exit 1
    fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fi
step tests 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_core_stack.py
step resnet152 90 python3 benchmarks/gpu_resnet152.py --repeats 2 --epochs 2 $smoke
step pipeline 150 python3 benchmarks/gpu_pipeline.py --images 6000 $smoke
step compile 120 python3 benchmarks/gpu_compile.py --steps 20 $smoke
echo "gpu_check: $failed step(s) failed; logs in $OUT"
exit "$failed"
