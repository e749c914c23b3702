"""Shared test set-up: one tiny config that every CLI test starts from and flips one thing of.

Nothing here touches the network: W&B is disabled unless a test turns it on (offline),
and every run writes under the test's own temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Shared fixtures of the reliability tests (trained_run) and their test-only plugins.
pytest_plugins = ("reliability_helpers",)

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"

# Keep W&B from ever reaching the network or the user's settings during tests.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run inside an empty temporary directory (so we notice anything written to the cwd)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_run_args(subcommand: str, config: Path, runs: Path, *extra: str) -> list[str]:
    """``subcommand --config config`` cut to a couple of batches, W&B disabled, runs under ``runs``."""
    return [
        subcommand,
        "--config", str(config),
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.wandb", "disabled",
        *extra,
    ]


@pytest.fixture
def tiny_args(workdir):
    """Build the argument list of a tiny, fast run: ``tiny_args("fit", "--trainer.max_epochs", "2")``.

    The base is the quickstart config, cut to a couple of batches, W&B disabled and runs
    written to ``<tmp>/runs``; the extra arguments flip one thing.
    """

    def build(subcommand: str = "fit", *extra: str) -> list[str]:
        return tiny_run_args(subcommand, QUICKSTART, workdir / "runs", *extra)

    return build


@pytest.fixture(autouse=True, scope="session")
def _own_cache_home(tmp_path_factory):
    """The session's ``XDG_CACHE_HOME`` (subprocesses inherit it): `list`'s table and other caches stay out of ~/.cache.

    A test that runs ``list`` wrote the real ``~/.cache/lightning-hw/list.json`` of whoever ran the suite.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache-home")))
        yield


@pytest.fixture(autouse=True, scope="session")
def _warm_process_started_early(_own_cache_home):
    """Start this worker's warm process as the session starts, without waiting for it.

    Started on first use instead, it was still importing for the first commands, and a study of
    one or two runs (which starts none, see ``studies.runner``) found none: those commands
    started afresh, ~5 s more each. After ``_own_cache_home``, whose variable it must share.
    """
    from lightning_hw.cli import warm_start

    warm_start.warm_up(wait=0)
    yield


@pytest.fixture(autouse=True)
def _fresh_registry(tmp_path_factory):
    """Forget discovered plugins between tests, and the plugin modules a test imported.

    A test may add a fake distribution whose classes share a short name with ours
    (a clash). jsonargparse resolves short names among all *live* subclasses, so such a
    class must be unimported (and collected) before the next test, or ``Digits`` would be
    ambiguous for the rest of the session.
    """
    import gc
    import sys

    from lightning_hw import registry

    temp_root = str(tmp_path_factory.getbasetemp())
    before = set(sys.modules)
    registry.discover.cache_clear()
    yield
    registry.discover.cache_clear()
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(temp_root):
            del sys.modules[name]
    gc.collect()
    # Whatever is still alive now (torch, Lightning and all else imported so far) is left out of the
    # next collections: each then walks only the objects created since. A collection of every object
    # took 0.3-0.7 s, after each of ~1,000 tests: about a quarter of the suite's time. Frozen objects
    # are still freed when no longer referenced; cycles among them wait for _collect_everything.
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _collect_everything():
    """After each test file, a full collection: frees cycles frozen while a module-scoped fixture held them."""
    import gc

    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the ``gpu`` tests, with the reason, where there is no CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on a GPU machine)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # the marker, not a test named or parametrised "gpu"
            item.add_marker(skip)


# -- how the suite's CLI commands started ------------------------------------------------------------------
# Most tests run `python -m lightning_hw` forked from a warm process (lightning_hw.cli.warm_start); a command
# that cannot fork starts afresh and costs ~5 s more. The end of the run says how many did which and why, so
# a change that quietly stops them forking (it happened: an in-process fit set PL_GLOBAL_SEED) is seen.

_warm_starts_of_workers: list[dict[str, int]] = []


def pytest_sessionfinish(session):
    """On an xdist worker: hand this worker's counts to the controller."""
    from lightning_hw.cli import warm_start

    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["warm_starts"] = dict(warm_start.STARTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the xdist controller: collect a finished worker's counts."""
    _warm_starts_of_workers.append(getattr(node, "workeroutput", {}).get("warm_starts", {}))


def pytest_terminal_summary(terminalreporter, config):
    from collections import Counter

    from lightning_hw.cli import warm_start

    if hasattr(config, "workerinput"):
        return
    starts = Counter(warm_start.STARTS)
    for counts in _warm_starts_of_workers:
        starts.update(counts)
    if not starts:
        return
    afresh = sorted(((n, why) for why, n in starts.items() if why != "forked"), reverse=True)
    terminalreporter.write_sep("-", "lightning-hw commands")
    terminalreporter.write_line(f"{starts['forked']} forked from a warm process, {sum(n for n, _ in afresh)} started afresh")
    for n, why in afresh:
        terminalreporter.write_line(f"  {n:5d}  {why}")
