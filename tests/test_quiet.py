"""What a command prints: a short transcript by default, everything with ``--verbose``; a fast offline hub error.

The CLI runs as a subprocess (as a user runs it), W&B offline and not silenced by the
environment, so any line a library adds back shows up here. The hub is made unreachable
for the subprocess by a proxy on a closed local port: the same connection error as a
machine without network, on any machine.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lightning_hw.cli.verbosity import RANK_ZERO_LOGGER, LightningInfoFilter, pop_verbose_flag

REPO = Path(__file__).resolve().parents[1]
#: seconds the hub part of an offline pretrained config may take (it took ~50 s of retries)
HUB_LIMIT_S = 5.0


def cli_env(**extra: str) -> dict[str, str]:
    """The test process's environment without what would hide or redirect W&B output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def transcript(tmp_path: Path, *extra: str) -> list[str]:
    """stdout and stderr of a short quickstart fit, W&B offline, without a progress bar."""
    command = [
        sys.executable, "-m", "lightning_hw", "fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "5",
        "--trainer.enable_progress_bar", "false", "--run.wandb", "offline", "--run.root", str(tmp_path / "runs"),
        *extra,
    ]
    done = subprocess.run(command, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert done.returncode == 0, done.stdout
    return [line for line in done.stdout.splitlines() if line.strip()]


def test_quickstart_prints_a_short_transcript(tmp_path):
    lines = transcript(tmp_path)
    text = "\n".join(lines)
    assert len(lines) <= 25, text
    (run_dir,) = [line for line in lines if line.startswith("Run directory: ")]
    assert Path(run_dir.split(": ", 1)[1]).is_dir()
    # The net's layers and its parameter count, not the task's metric collections.
    assert re.search(r"^Model: Classifier, 9\.6 K parameters \(9\.6 K trainable", text, re.M), text
    assert re.search(r"^  net\.layers\.1 +Linear +8\.3 K$", text, re.M), text
    for noise in ("epoch_loss", "MetricCollection", "Total FLOPs", "GPU available", "litlogger", "LeafSpec", "Run history", "Seed set"):
        assert noise not in text
    (test_line,) = [line for line in lines if line.startswith("Test (best checkpoint")]
    assert re.search(r"test/acc = 0\.\d{4}(,|$)", test_line), test_line
    assert "Test metric" not in text and not re.search(r"0\.\d{8}", text)  # no 16-digit table
    assert len([line for line in lines if "wandb sync" in line]) == 1, text


def test_verbose_brings_back_what_the_libraries_print(tmp_path):
    text = "\n".join(transcript(tmp_path, "--verbose"))
    assert "Total params" in text and "Model: Classifier" not in text  # Lightning's own summary
    assert "Test metric" in text and "GPU available" in text and "Seed set to 42" in text
    assert "wandb: Run history:" in text
    assert "LeafSpec" not in text  # filtered whatever the verbosity: nobody can act on it


def test_quiet_drops_lightnings_info_lines_but_not_our_callbacks(caplog):
    from lightning.pytorch import Trainer
    from lightning.pytorch.utilities import rank_zero_info

    logger = logging.getLogger(RANK_ZERO_LOGGER)
    quiet = LightningInfoFilter()
    logger.addFilter(quiet)
    try:
        with caplog.at_level(logging.INFO):
            Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)  # "GPU available: False, ..."
            rank_zero_info("FreezeBackbone: backbone frozen")  # as our callbacks report what they do
    finally:
        logger.removeFilter(quiet)
    assert "FreezeBackbone: backbone frozen" in caplog.text
    assert "GPU available" not in caplog.text


def test_bare_verbose_is_ours_and_lightnings_takes_a_value():
    assert pop_verbose_flag(["fit", "--verbose", "--config", "c.yaml"]) == (True, ["fit", "--config", "c.yaml"])
    assert pop_verbose_flag(["fit", "--config", "c.yaml", "--verbose"]) == (True, ["fit", "--config", "c.yaml"])
    assert pop_verbose_flag(["test", "--verbose", "false"]) == (False, ["test", "--verbose", "false"])
    assert pop_verbose_flag(["test", "--verbose=true"]) == (False, ["test", "--verbose=true"])


# -- pretrained weights without a network -----------------------------------------------------


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Every request through a proxy that refuses connections, and an empty hub cache of this test."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in cli_env().items() if k.lower() not in ("no_proxy", "hf_hub_offline", "hf_endpoint", "hf_hub_cache")}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    return {**env, "HF_HOME": str(tmp_path / "hf"), **extra}


LOAD_SCRIPT = """
import json, sys, time
import timm, huggingface_hub  # imported first: only the hub part is timed
from lightning_hw.nets.backbones import create_backbone
start = time.monotonic()
try:
    net = create_backbone(sys.argv[1], pretrained=True)
    result = {"ok": True, "weight": float(next(iter(net.state_dict().values())).flatten()[0])}
except Exception as err:
    result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
result["seconds"] = time.monotonic() - start
print(json.dumps(result))
"""


def load_pretrained(model_name: str, env: dict[str, str]) -> dict:
    """``create_backbone(model_name, pretrained=True)`` in a subprocess with ``env``: its outcome and seconds."""
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, model_name], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_offline_hub_fails_in_seconds(tmp_path):
    result = load_pretrained("resnet18", offline_env(tmp_path))
    assert not result["ok"]
    assert result["error"].startswith("ConfigError: could not load pretrained resnet18 weights from the Hugging Face hub")
    assert "pass it as weights_file" in result["error"]
    assert result["seconds"] < HUB_LIMIT_S, result


def test_offline_pretrained_config_is_one_line_without_retries(tmp_path):
    command = [
        sys.executable, "-m", "lightning_hw", "fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"),
        "--model.init_args.net.init_args.pretrained", "true", "--run.root", str(tmp_path / "runs"),
    ]
    done = subprocess.run(command, cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    # No "Retrying in 8s [Retry 4/5]" from huggingface_hub, nor Lightning's "Seed set to 42".
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: could not load pretrained resnet18 weights from the Hugging Face hub")
    assert not (tmp_path / "runs").exists()


def test_cached_hub_weights_load_offline(tmp_path):
    """Weights in the hub cache need no network: no probe refuses them, and none is waited for."""
    import timm
    from safetensors.torch import save_file

    model_name, repo = "test_resnet.r160_in1k", "models--timm--test_resnet.r160_in1k"
    commit = "0" * 40
    snapshot = tmp_path / "hf" / "hub" / repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    state = {k: v.contiguous() for k, v in timm.create_model(model_name).state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))

    result = load_pretrained(model_name, offline_env(tmp_path))
    assert result["ok"], result
    assert result["weight"] == pytest.approx(float(next(iter(state.values())).flatten()[0]))
    assert result["seconds"] < HUB_LIMIT_S, result


class NotFound(BaseHTTPRequestHandler):
    """A hub that answers every request with 404, and remembers the paths asked for."""

    paths: list[str] = []

    def do_HEAD(self) -> None:  # noqa: N802 - the http.server hook
        self.paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args) -> None:
        pass


def test_a_hub_that_answers_is_not_taken_for_offline(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = offline_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        result = load_pretrained("resnet18", env)
    finally:
        server.shutdown()
    assert not result["ok"] and "ConnectError" not in result["error"], result
    # The probe passed, so timm asked for the weights themselves.
    assert any(path.startswith("/timm/resnet18.a1_in1k/resolve/") for path in NotFound.paths), NotFound.paths
