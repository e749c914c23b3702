#!/usr/bin/env bash
# The wheels that gpu_check.sh installs on a bare GPU machine, into ./.whl: what the lent machine's
# python3 lacks for lightning-hw (../shared/gpu/fetch-wheels.sh: jsonargparse, wandb and their
# dependencies), plus pytest, which that list does not name, at the versions constraints.txt pins.
# Run it here, in the repository root, where the package registry can be reached.
set -euo pipefail
shared=${SHARED_GPU:-../shared/gpu}
bash "$shared/fetch-wheels.sh"
pins=()
for name in pytest pluggy iniconfig; do
    pins+=("$(grep -i -E "^$name==" constraints.txt | head -1 || echo "$name")")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform any -d .whl "${pins[@]}" 2>&1 | grep -v "is ignored" || true
ls .whl | wc -l | xargs echo "wheels in .whl (with pytest):"
