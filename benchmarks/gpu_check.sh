#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go (under 8 minutes on the lent H200 machine):
# the `gpu` tests, then the GPU benchmarks (training speed, the JPEG data path, torch.compile).
#
#   ../shared/gpu/fetch-wheels.sh            # here, once: the wheels a bare GPU machine lacks (./.whl)
#   bash benchmarks/gpu_check.sh             # there, from the project root (the device tool: carry .whl)
#
# Logs go to $OUT (the device tool brings that folder back), else /tmp/gpu_check. Each step has
# its own time limit, so one slow step cannot eat the others' time; a step that fails is reported
# and the next one still runs; the exit code is the number of failed steps.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
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
    grep -E "RATIO|images/s|passed|failed|skipped|error" "$OUT/$name.log" | tail -n 12
    echo "== $name: exit $code after $((SECONDS - start)) s"
    [ "$code" -eq 0 ] || failed=$((failed + 1))
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
step tests 120 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
step resnet152 90 python3 benchmarks/gpu_resnet152.py --repeats 2 --epochs 2
step pipeline 150 python3 benchmarks/gpu_pipeline.py --images 6000
step compile 120 python3 benchmarks/gpu_compile.py --steps 20
echo "gpu_check: $failed step(s) failed; logs in $OUT"
exit "$failed"
