"""Determinism: the same config and seed give the same run, and report configs ask for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lightning_hw.cli import HWCLI

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_two_runs_of_the_quickstart_are_identical(tiny_args, workdir):
    runs = []
    for name in ("first", "second"):
        HWCLI(args=tiny_args("fit", "--run.name", name, "--trainer.max_epochs", "2"))
        runs.append(workdir / "runs" / "quickstart" / name)
    first, second = runs
    assert (first / "metrics.csv").read_text() == (second / "metrics.csv").read_text()
    a = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_report_configs_fix_the_seed_and_run_deterministically(config):
    """Every experiment config reproduces a report: a fixed seed and deterministic algorithms."""
    content = yaml.safe_load(config.read_text())
    assert isinstance(content.get("seed_everything"), int) and not isinstance(content["seed_everything"], bool), (
        f"{config.name}: set seed_everything to a number"
    )
    assert (content.get("trainer") or {}).get("deterministic") in (True, "warn"), (
        f"{config.name}: set trainer.deterministic: true (or warn, where an op has no deterministic kernel)"
    )
