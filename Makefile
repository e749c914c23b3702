# Two commands on a fresh machine: `make quickstart` and `make test`.
# Both create .venv/ when it is missing and (re)install only when pyproject.toml
# or constraints.txt changed, so repeated calls are fast.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lightning-hw-installed
# The example plugins in plugins/ install like anyone's plugin (their tests run with ours).
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: setup quickstart test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt $(PLUGINS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The grep only hides this machine's noisy local-mirror warnings; pipefail keeps pip's exit code.
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@# --no-deps: a plugin's requirements are lightning-hw's own, installed just above.
	$(if $(PLUGINS),$(PY) -m pip install --quiet -c constraints.txt --no-deps $(foreach p,$(PLUGINS),-e $(dir $(p))) 2>&1 | { grep -v "is ignored: it is neither" || true; })
	@touch $(STAMP)

quickstart: setup
	$(PY) -m lightning_hw fit --config configs/quickstart.yaml

# Two pytest workers, each taking whole files: most tests wait on a CLI subprocess, so one worker
# leaves a core idle about half the time (2 cores: 15m47s -> 9m22s for the whole suite).
test: setup
	$(PY) -m pytest -n 2 --dist loadfile

test-fast: setup
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow"

clean:
	rm -rf $(VENV) runs
