"""Training needs only the core stack: a machine without the study, decoding or export extras still trains.

The lent GPU machine is such a machine (torch, Lightning, timm, torchmetrics; no Optuna, no
TorchCodec, no ONNX), and ``benchmarks/gpu_check.sh`` has a few minutes there: an import of an
extra on ``fit``'s path would fail every GPU test and benchmark. So ``fit`` runs here in a fresh
interpreter in which those packages cannot be imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import QUICKSTART, tiny_run_args

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("optuna", "psycopg", "torchcodec", "onnx", "onnxscript", "onnxruntime", "sqlalchemy", "alembic")

# Runs `python -m lightning_hw ARGS` with EXTRAS unimportable, as if they were not installed
# (a None in sys.modules makes `import x` raise ModuleNotFoundError and find_spec answer None).
WITHOUT_EXTRAS = textwrap.dedent(
    """
    import runpy, sys
    sys.modules.update(dict.fromkeys({extras!r}))
    sys.argv = ["lightning_hw", *sys.argv[1:]]
    runpy.run_module("lightning_hw", run_name="__main__", alter_sys=True)
    """
).format(extras=EXTRAS)


def test_fit_trains_and_tests_without_optuna_torchcodec_or_onnx(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *tiny_run_args("fit", QUICKSTART, runs, "--run.name", "core")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = runs / "quickstart" / "core"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "test/acc" in (run / "metrics.csv").read_text()
