"""Scaling up: trainer presets, DDP on two CPU processes, torch.compile, mixed precision, run directories."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from lightning.pytorch import LightningModule
from torch import nn

from lightning_hw.runs import naming, plan_run
from lightning_hw.callbacks.compile import CompileNet
from lightning_hw.callbacks.speed import ChannelsLast
from lightning_hw.cli import HWCLI
from lightning_hw.errors import ConfigError
from lightning_hw.nets.mlp import MLP
from lightning_hw.precision import AutoMixedPrecision, best_mixed_precision
from lightning_hw.runs import RunConfig
from lightning_hw.tasks.classification import Classifier

from conftest import QUICKSTART, tiny_run_args
from test_epoch_logging import epoch_metrics
from lightning_hw.cli import warm_start

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "configs" / "trainer"


def resolved(tiny_args, capsys, *presets: str) -> dict:
    """The config that ``--print_config`` prints for the quickstart with ``presets`` stacked on it."""
    args = tiny_args("fit")
    for name in presets:
        args += ["--config", str(PRESETS / f"{name}.yaml")]
    with pytest.raises(SystemExit) as exit_info:
        HWCLI(args=[*args, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_presets_stack_on_an_experiment_config(tiny_args, capsys):
    trainer = resolved(tiny_args, capsys, "gpu", "ddp", "compile")["trainer"]
    assert trainer["accelerator"] == "gpu" and trainer["devices"] == -1 and trainer["strategy"] == "ddp"
    assert trainer["benchmark"] is True and trainer["deterministic"] is False
    assert [p["class_path"] for p in trainer["plugins"]] == ["lightning_hw.precision.AutoMixedPrecision"]
    # callbacks+ appends: the presets' callbacks add up instead of replacing each other
    assert [c["class_path"].rsplit(".", 1)[-1] for c in trainer["callbacks"]] == [
        "ClassificationInterpretation", "ChannelsLast", "Float32MatmulPrecision", "CompileNet",
    ]
    multinode = resolved(tiny_args, capsys, "gpu", "multinode")["trainer"]
    assert multinode["num_nodes"] == 2 and multinode["strategy"] == "ddp"
    assert resolved(tiny_args, capsys, "cpu")["trainer"]["accelerator"] == "cpu"


def test_a_preset_given_first_does_not_name_the_run_group(tiny_args):
    args = tiny_args("fit", "--run.name", "first")
    at = args.index("--config")
    cli = HWCLI(args=[*args[:at], "--config", str(PRESETS / "cpu.yaml"), *args[at:]])
    assert cli.run_dir.parent.name == "quickstart"
    assert cli.trainer.accelerator.__class__.__name__ == "CPUAccelerator"


def test_mixed_precision_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert best_mixed_precision("cuda") == "bf16-mixed"
    # a pre-Ampere GPU only emulates bf16: float16 with a gradient scaler
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert best_mixed_precision("cuda") == "16-mixed"
    plugin = AutoMixedPrecision()
    assert plugin.precision == "16-mixed" and plugin.scaler is not None
    assert best_mixed_precision("cpu") == "bf16-mixed"
    cpu_plugin = AutoMixedPrecision(device="cpu")
    assert cpu_plugin.precision == "bf16-mixed" and cpu_plugin.scaler is None


def test_channels_last_converts_conv_nets_only():
    conv = LightningModule()
    conv.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 2))
    ChannelsLast().setup(None, conv, "fit")
    assert conv.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.net[0].weight.is_contiguous()
    out = conv.net[0](torch.randn(2, 3, 16, 16))  # NCHW input, channels-last output
    assert out.is_contiguous(memory_format=torch.channels_last)

    mlp = Classifier(partial(MLP, hidden=[8]), num_classes=3, input_shape=(4,))
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    ChannelsLast().setup(None, mlp, "fit")
    assert all(torch.equal(before[k], v) and v.is_contiguous() for k, v in mlp.state_dict().items())


def test_compile_net_names_a_missing_submodule():
    with pytest.raises(ConfigError, match="has no submodule 'backbone'.*net"):
        CompileNet(attribute="backbone").setup(None, Classifier(partial(MLP, hidden=[4]), 2, (3,)), "fit")


def test_compile_preset_without_a_cpu_compiler_says_so_in_one_line(tiny_args, capsys, workdir):
    """The first compiled step failed with a 150-line InductorError traceback."""
    from torch._inductor import config

    from reliability_helpers import error_of

    torch._dynamo.reset()
    with config.patch({"cpp.cxx": (None, "/nonexistent/g++")}):  # as with no compiler installed
        code, line = error_of(tiny_args("fit", "--config", str(PRESETS / "compile.yaml")), capsys)
    torch._dynamo.reset()
    assert code == 2 and "needs a C++ compiler" in line and "backend aot_eager" in line, line
    assert not (workdir / "runs").exists() or not any((workdir / "runs").rglob("*.ckpt"))


@pytest.mark.slow
def test_compile_preset_fits_and_its_checkpoint_loads_uncompiled(tiny_args, workdir):
    """compile.yaml with the default inductor backend on the CPU (needs g++ and Python headers)."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cli = HWCLI(
        args=tiny_args(
            "fit", "--config", str(PRESETS / "compile.yaml"), "--run.name", "c",
            # training only: every compiled graph costs seconds on a small CPU
            "--trainer.limit_val_batches", "0", "--run.monitor", "train/loss", "--run.test_after_fit", "false",
        )
    )
    net = cli.model.net
    assert getattr(net, "_compiled_call_impl", None) is not None
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # dynamo did compile a graph

    checkpoint = cli.run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert not [k for k in state if "_orig_mod" in k]
    plain = Classifier.load_from_checkpoint(checkpoint, net=partial(MLP, hidden=[128]))
    assert getattr(plain.net, "_compiled_call_impl", None) is None
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        expected = cli.model.net._call_impl(x)  # the trained net without its compiled path
        assert torch.allclose(plain(x), expected, atol=1e-6)


@pytest.mark.slow
def test_compile_preset_keeps_a_fine_tuning_run_compiled_through_its_test(workdir):
    """Train/eval, short last batches, frozen then unfrozen: 9 graphs, past torch's default limit of 8.

    Beyond the limit dynamo runs the net eagerly (the test did, with a warning); the preset allows more.
    aot_eager: the same graphs and guards as inductor, without a C++ compiler's minutes.
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    HWCLI(args=[
        "fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--config", str(PRESETS / "compile.yaml"),
        "--trainer.callbacks.init_args.backend", "aot_eager", "--finetune.unfreeze_at_epoch", "1",
        "--trainer.max_epochs", "2", "--run.root", str(workdir / "runs"), "--run.wandb", "disabled",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ])
    frames = dict(counters["frames"])
    assert counters["stats"]["unique_graphs"] > 8  # more than torch's default would have allowed
    assert frames["ok"] == frames["total"], dict(counters["unimplemented"])  # none fell back to eager
    torch._dynamo.reset()


# Two epochs on half the digits: the single-process run takes 64 per step, each DDP process 32.
DDP_COMMON = (
    "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1.0", "--trainer.limit_val_batches", "1.0",
    "--trainer.num_sanity_val_steps", "0", "--data.init_args.splits", "[0.5, 0.4, 0.1]", "--run.test_after_fit", "false",
)
DDP_ON_TWO_CPUS = (
    "--data.init_args.batch_size", "32", "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
)


def ddp_env() -> dict[str, str]:
    """This environment without a parent job's ranks or run directory, with tests/ on PYTHONPATH (reliability_helpers)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", naming.RUN_DIR_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    return env


def ddp_fit(args: list[str], code: int = 0) -> subprocess.CompletedProcess:
    """``python -m lightning_hw ARGS`` (a DDP run launches its second process itself); asserts its exit code."""
    proc = warm_start.run([sys.executable, "-m", "lightning_hw", *args], capture_output=True, text=True, timeout=300, env=ddp_env())
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One uninterrupted DDP run on two CPU processes (``runs/ddp/<its name>``): the process and its run directory.

    Shared by the comparison with one process and by the interrupted run, which must end like it.
    """
    root = tmp_path_factory.mktemp("ddp") / "runs"
    proc = ddp_fit(tiny_run_args("fit", QUICKSTART, root, *DDP_COMMON, *DDP_ON_TWO_CPUS, "--run.group", "ddp"))
    return SimpleNamespace(proc=proc, runs=sorted((root / "ddp").iterdir()))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tiny_args, workdir, ddp_run):
    """Two gloo processes with half the batch each take the same steps as one process.

    What makes them equal: the in-memory loader shards every epoch's permutation by rank
    (rank r gets positions r, r+2, ...), so the two half-batches of step k together are
    exactly the single process's batch k; DDP averages the two gradients, which is the
    gradient of the mean loss over the whole batch because the halves are equally large
    (900 training samples, 64 per step: every step, even the last of 4, splits evenly);
    the 718 validation samples split 359/359 with no padding; accuracy, F1 and the loss
    means are merged across processes before logging; the net has no dropout and the
    shuffle seed is the same (no ``shuffle_seed`` is given): DDP draws it from the random state
    recorded before ``fit``, where one process draws it from, not after Lightning's DDP re-seeded
    its processes (another order on 2 processes than on 1: epoch 0's val/acc 0.9304 against
    0.9109 with the quickstart's splits). Tasks accumulate per step and merge whole-epoch sums (loss) and
    predictions (accuracy, F1) across the processes before computing, so every logged
    value, train and val, is the single process's up to float32 summation order: the
    stated tolerance is 1e-4 (1.5e-5 seen on the train loss of epoch 1; another order was 0.02 off).
    """
    HWCLI(args=tiny_args("fit", *DDP_COMMON, "--data.init_args.batch_size", "64", "--run.group", "one", "--run.name", "r"))
    one = epoch_metrics(workdir / "runs" / "one" / "r")

    assert len(ddp_run.runs) == 1, f"the two processes wrote to {ddp_run.runs}"  # one shared run directory
    assert ddp_run.proc.stdout.count("Run saved in") == 1  # only rank 0 speaks
    assert "Initializing distributed" not in ddp_run.proc.stdout + ddp_run.proc.stderr  # Lightning's info, one per process
    two = epoch_metrics(ddp_run.runs[0])

    assert sorted(one) == sorted(two) == [0, 1]
    for epoch in (0, 1):
        assert sorted(two[epoch]) == sorted(one[epoch])
        for name, value in one[epoch].items():
            assert two[epoch][name] == pytest.approx(value, abs=1e-4), (epoch, name)
    assert one[1]["val/acc"] > 0.8  # it learned something: the comparison is not of two untrained nets


@pytest.mark.slow
def test_a_ddp_run_interrupted_mid_epoch_resumes_with_every_process_metrics(tiny_args, workdir, ddp_run):
    """The interrupted epoch's train/acc and train/loss are those of the uninterrupted run.

    Lightning writes the first process's checkpoint only: the half-accumulated metric states
    of the other process were lost, and both processes took back the first one's (epoch 1's
    train/acc was 0.8960 instead of 0.8921 here). The uninterrupted run is the shared ``ddp_run``.
    """
    (whole_dir,) = ddp_run.runs
    per_epoch = torch.load(whole_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] // 2
    step = per_epoch + 4  # SIGTERM to both processes after the 4th step of epoch 1
    signal_at = workdir / "signal.yaml"
    signal_at.write_text(yaml.safe_dump({"trainer": {"callbacks+": [
        {"class_path": "reliability_helpers.SignalAtStep", "init_args": {"step": step}},
    ]}}))
    cut_args = tiny_args("fit", *DDP_COMMON, *DDP_ON_TWO_CPUS, "--run.name", "cut", "--config", str(signal_at))
    ddp_fit(cut_args, code=143)
    cut_dir = workdir / "runs" / "quickstart" / "cut"
    assert torch.load(cut_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == step  # inside epoch 1
    ddp_fit([*cut_args, "--ckpt_path", "last"])

    whole, cut = epoch_metrics(whole_dir), epoch_metrics(cut_dir)
    assert sorted(cut) == sorted(whole) == [0, 1]
    for name, value in whole[1].items():
        assert cut[1][name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_a_config_error_under_ddp_is_said_in_one_line(tiny_args, workdir):
    """A mistyped ``--run.monitor`` under DDP: each of the two processes printed the same error line."""
    proc = ddp_fit(tiny_args("fit", *DDP_ON_TWO_CPUS, "--run.monitor", "val/accc"), code=2)

    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "run.monitor val/accc is not a metric" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (workdir / "runs").exists() or not any((workdir / "runs").rglob("*"))


@pytest.mark.slow
def test_a_ddp_run_says_the_backbones_preprocessing_once(workdir):
    """E5 stacked with ddp.yaml: each of the two processes printed "Preprocessing from the backbone's ..."."""
    proc = ddp_fit([
        "fit", "--config", str(REPO / "configs" / "transfer_demo.yaml"), "--config", str(REPO / "configs" / "e5_finetune.yaml"),
        "--config", str(PRESETS / "ddp.yaml"), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
        "--run.test_after_fit", "false", "--run.root", str(workdir / "runs"), "--run.wandb", "disabled",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ])

    assert proc.stdout.count("Preprocessing from the backbone's timm data config") == 1, proc.stdout[-3000:]
    assert proc.stdout.count("Run saved in") == 1


@pytest.mark.slow
def test_sigterm_to_one_ddp_process_stops_the_run_at_the_next_step(tiny_args, workdir):
    """``kill -TERM <pid>`` of a process other than the first stops the whole run, with its last.ckpt.

    The first process alone decided, so a signal to another was ignored: the run trained to its
    last epoch and exited 0, and a second SIGTERM to that process was ignored too.
    """
    signal_at = workdir / "signal.yaml"  # SIGTERM to rank 1 only, after step 3 (of 15 per epoch)
    signal_at.write_text(yaml.safe_dump({"trainer": {"callbacks+": [
        {"class_path": "reliability_helpers.SignalAtStep", "init_args": {"step": 3, "rank": 1}},
    ]}}))
    args = tiny_args("fit", *DDP_COMMON, *DDP_ON_TWO_CPUS, "--trainer.max_epochs", "1", "--run.name", "r",
                     "--config", str(signal_at))
    proc = ddp_fit(args, code=143)

    assert "interrupted by SIGTERM at step 3: saved" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = workdir / "runs" / "quickstart" / "r"
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


@pytest.mark.slow
def test_an_epoch_begun_on_one_process_is_not_continued_on_two(tiny_args, workdir):
    """The checkpoint counts the batches each process drew: on 2 processes the epoch ended at once, unvalidated."""
    signal_at = workdir / "signal.yaml"  # SIGTERM after step 13, inside epoch 0 (of 20 steps)
    signal_at.write_text(yaml.safe_dump({"trainer": {"callbacks+": [
        {"class_path": "reliability_helpers.SignalAtStep", "init_args": {"step": 13}},
    ]}}))
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", naming.RUN_DIR_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    args = tiny_args("fit", "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1.0", "--run.name", "r",
                     "--run.test_after_fit", "false", "--config", str(signal_at))
    first = warm_start.run([sys.executable, "-m", "lightning_hw", *args], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 143, first.stderr[-3000:]
    run = workdir / "runs" / "quickstart" / "r"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    ddp = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp", "--ckpt_path", "last")
    # (it hung in one such run: the processes' loops disagreed on where the epoch stood)
    again = warm_start.run([sys.executable, "-m", "lightning_hw", *args, *ddp], capture_output=True, text=True, timeout=150, env=env)

    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-3000:]
    assert "it was taken inside epoch 0 by 1" in again.stderr and "--trainer.max_epochs 1" in again.stderr, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def _opened_directory(run: RunConfig) -> Path:
    """The directory a ``fit`` of ``exp.yaml`` plans and opens (as the CLI does before training)."""
    planned = plan_run(run, "fit", ["exp.yaml"], None)
    planned.open()
    return planned.directory


class TestSharedRunDirectory:
    """Every process of a distributed job must pick the same run directory."""

    @pytest.fixture(autouse=True)
    def _clean_env(self, monkeypatch):
        for key in ("SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "WORLD_SIZE",
                    "LOCAL_RANK", naming.RUN_DIR_ENV):
            monkeypatch.delenv(key, raising=False)

    def test_a_process_lightning_started_reuses_its_parents_directory(self, workdir, monkeypatch):
        run = RunConfig(root=str(workdir / "runs"))
        parent = _opened_directory(run)
        assert os.environ[naming.RUN_DIR_ENV] == str(parent)
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert _opened_directory(run) == parent
        assert len(list((workdir / "runs" / "exp").iterdir())) == 1  # no "-1" sibling

    def test_slurm_and_torchrun_jobs_are_named_after_the_job(self, workdir, monkeypatch):
        run = RunConfig(root=str(workdir / "runs"))
        monkeypatch.setenv("SLURM_NTASKS", "16")
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        monkeypatch.setenv("SLURM_JOB_NAME", "train")
        assert _opened_directory(run) == workdir / "runs" / "exp" / "slurm-4242"
        for key in ("SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_JOB_NAME"):
            monkeypatch.delenv(key)
        monkeypatch.setenv("WORLD_SIZE", "8")
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
        assert naming.job_run_name() == "torchrun-abc"
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
        with pytest.raises(ConfigError, match="--run.name"):
            naming.job_run_name()
        # an explicit name needs no agreement
        named = RunConfig(root=str(workdir / "runs"), name="mine")
        assert _opened_directory(named).name == "mine"

    def test_a_requeued_slurm_job_resumes_its_run(self, workdir, monkeypatch):
        """Lightning's auto-requeue saves hpc_ckpt_N.ckpt and restarts the same command: it must resume, not be refused."""
        run = RunConfig(root=str(workdir / "runs"))
        for key, value in (("SLURM_NTASKS", "2"), ("SLURM_JOB_ID", "77"), ("SLURM_JOB_NAME", "train")):
            monkeypatch.setenv(key, value)
        directory = workdir / "runs" / "exp" / "slurm-77"
        (directory / "checkpoints").mkdir(parents=True)
        (directory / "config.yaml").write_text("run: {}\n")
        (directory / "hpc_ckpt_1.ckpt").write_bytes(b"x")
        planned = plan_run(run, "fit", ["exp.yaml"], None)
        assert (planned.mode, planned.directory, planned.ckpt_path) == ("resume", directory, "hpc")
        (directory / "checkpoints" / "last.ckpt").write_bytes(b"newer")  # a SIGTERM after the requeue signal
        assert plan_run(run, "fit", ["exp.yaml"], None).ckpt_path == str(directory / "checkpoints" / "last.ckpt")


def test_a_job_of_another_size_than_configured_is_refused_in_one_line(tiny_args, workdir, monkeypatch, capsys):
    """torchrun started 2 processes, the config asks for 2 nodes x 2 devices: one line, no traceback, nothing left.

    Lightning checks this only inside ``fit``, where every process ended with a ValueError traceback.
    """
    from reliability_helpers import error_of

    for key, value in (("RANK", "0"), ("GROUP_RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "2"),
                       ("WORLD_SIZE", "2"), ("TORCHELASTIC_RUN_ID", "abc")):
        monkeypatch.setenv(key, value)  # the first of torchrun --standalone --nproc-per-node 2's processes
    args = tiny_args("fit", "--config", str(PRESETS / "multinode.yaml"), "--trainer.accelerator", "cpu", "--trainer.devices", "2")

    code, line = error_of(args, capsys)

    assert code == 2
    assert "(2 * 2) does not match the world size (2)" in line and "--trainer.num_nodes" in line, line
    assert not (workdir / "runs").exists()


def test_the_gpu_preset_on_the_cpu_says_it_trains_in_float32(tiny_args):
    """gpu.yaml with --trainer.accelerator cpu: Lightning turned autocast off, the summary spoke of bf16-mixed."""
    from lightning_hw.errors import LightningHWWarning

    args = tiny_args("fit", "--config", str(PRESETS / "gpu.yaml"), "--trainer.accelerator", "cpu", "--run.test_after_fit", "false")
    with pytest.warns(LightningHWWarning, match=r"AutoMixedPrecision .* trains in float32.*--trainer.precision bf16-mixed") as caught:
        HWCLI(args=args)
    assert len([w for w in caught if issubclass(w.category, LightningHWWarning)]) == 1


def test_more_cpu_processes_than_cores_is_said_to_be_slower(workdir, monkeypatch, recwarn):
    """``--trainer.devices 8`` on a 2-core machine started 8 gloo processes without a word; it is allowed, and warned."""
    from lightning_hw.errors import LightningHWWarning

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)  # this process may use one core
    base = ["--config", str(QUICKSTART), "--trainer.accelerator", "cpu", "--run.wandb", "disabled", "--run.root", "runs"]
    # run=False: the trainer is built as `fit` builds it (where the warning is given), and no process is started.
    HWCLI(args=[*base, "--trainer.devices", "1"], run=False)
    assert not [w for w in recwarn if issubclass(w.category, LightningHWWarning)]
    with pytest.warns(LightningHWWarning) as caught:
        cli = HWCLI(args=[*base, "--trainer.devices", "2"], run=False)
    assert cli.trainer.num_devices == 2  # not refused
    assert [str(w.message) for w in caught if issubclass(w.category, LightningHWWarning)] == [
        "--trainer.devices 2 on the CPU starts 2 training processes, more than the 1 CPU core(s) this run may use: "
        "they share the cores, so training is slower, not faster; give --trainer.devices 1 or fewer"
    ]


@pytest.mark.parametrize("devices", [("--config", str(PRESETS / "ddp.yaml")), ("--trainer.devices", "0")])
def test_cpu_devices_that_are_no_number_of_processes_say_what_to_give(tiny_args, workdir, capsys, devices):
    """ddp.yaml's ``devices: -1`` (every GPU) with ``--trainer.accelerator cpu``: Lightning's line said only "should be an int > 0"."""
    from reliability_helpers import error_of

    code, line = error_of(tiny_args("fit", *devices, "--trainer.accelerator", "cpu"), capsys)

    assert code == 2 and "--trainer.devices is the number of processes" in line, line
    assert not (workdir / "runs").exists() or not any((workdir / "runs").rglob("*"))


def test_ddp_spawn_is_refused_in_one_line(tiny_args, workdir, capsys):
    """``--trainer.strategy ddp_spawn`` pickles the task for its processes: a PicklingError traceback (a loss head's lambda)."""
    from reliability_helpers import error_of

    code, line = error_of(tiny_args("fit", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                                    "--trainer.strategy", "ddp_spawn"), capsys)

    assert code == 2 and "as ddp_spawn does" in line and "--trainer.strategy ddp " in line, line
    assert not (workdir / "runs").exists() or not any((workdir / "runs").rglob("*"))


def test_several_nodes_without_a_launcher_are_refused_in_one_line(tiny_args, workdir):
    """``multinode.yaml`` run with plain ``python -m lightning_hw``: no other node can ever join.

    The process waited in the rendezvous for good (torch's default timeout: 30 minutes), and
    neither Ctrl-C nor SIGTERM stopped it there; it left a run directory without a run.
    """
    env = {k: v for k, v in ddp_env().items() if k not in ("NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")}
    args = tiny_args("fit", "--config", str(PRESETS / "multinode.yaml"), "--trainer.accelerator", "cpu", "--trainer.devices", "1")
    proc = warm_start.run([sys.executable, "-m", "lightning_hw", *args], capture_output=True, text=True, timeout=90, env=env)

    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "--trainer.num_nodes 2" in line and "torchrun or srun" in line and "--trainer.num_nodes 1" in line, line
    assert "Traceback" not in proc.stderr
    assert not (workdir / "runs").exists() or not any((workdir / "runs").rglob("*"))


@pytest.mark.slow
def test_a_torchrun_job_signalled_as_a_whole_stops_at_the_next_step_with_its_checkpoint(tiny_args, workdir):
    """SLURM and ``kill -TERM -<pgid>`` signal torchrun and its workers; torchrun passes the signal on again.

    Each worker got SIGTERM twice within milliseconds and took the second as "stop at once":
    the run ended without the last.ckpt of its step (here the one of epoch 0, 3 steps older).
    """
    signal_at = workdir / "signal.yaml"
    signal_at.write_text(yaml.safe_dump({"trainer": {"callbacks+": [
        {"class_path": "reliability_helpers.SignalJobAtStep", "init_args": {"step": 13}},
        {"class_path": "reliability_helpers.TrainingOrderFiles", "init_args": {"directory": str(workdir / "order")}},
    ]}}))
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", naming.RUN_DIR_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    args = tiny_args(
        "fit", "--config", str(PRESETS / "multinode.yaml"), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.num_nodes", "1", "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1.0",
        "--run.test_after_fit", "false", "--run.name", "r", "--config", str(signal_at),
        "--seed_everything", "false",  # each worker seeds itself: they must still share one training order
    )
    proc = warm_start.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lightning_hw", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )

    assert "interrupted by SIGTERM at step 13: saved" in proc.stderr, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "interrupted by SIGTERM at once" not in proc.stderr
    run = workdir / "runs" / "quickstart" / "r"
    status = json.loads((run / "status.json").read_text())
    assert (status["status"], status["global_step"]) == ("interrupted", 13)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 13
    # The two workers' shares of epoch 0 hold every training sample: each drew its own seed
    # (without seed_everything) and took its positions of another permutation, repeating some
    # samples and leaving out others.
    shares = [{int(i) for i in (workdir / "order" / f"rank{r}-epoch0.txt").read_text().split()} for r in (0, 1)]
    assert shares[0] | shares[1] == set(range(1259)), (len(shares[0] | shares[1]), len(shares[0] & shares[1]))

    # The printed command continues the run under torchrun (python -m lightning_hw alone would not
    # start the job's processes: with num_nodes 2 it waited for the other node for good).
    resume = proc.stderr.split("resume with: ", 1)[1].splitlines()[0]
    assert resume.startswith("torchrun --standalone --nproc-per-node 2 -m lightning_hw fit --config "), resume
    assert status["resume_command"] == resume
    again = warm_start.run([sys.executable, "-m", "torch.distributed.run", *shlex.split(resume)[1:]],
                           capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert sorted(epoch_metrics(run)) == [0, 1, 2]


@pytest.mark.slow
def test_a_slurm_job_requeued_after_sigterm_resumes_its_run(tiny_args, workdir):
    """Preemption or ``scontrol requeue``: SIGTERM (last.ckpt written), then the same command with SLURM_RESTART_COUNT=1.

    The requeued job was refused ("run ... already exists"), exit 2: the job failed and the run stayed cut.
    """
    signal_at = workdir / "signal.yaml"  # SIGTERM after step 13, inside epoch 0 (of 20 steps)
    signal_at.write_text(yaml.safe_dump({"trainer": {"callbacks+": [
        {"class_path": "reliability_helpers.SignalAtStep", "init_args": {"step": 13}},
    ]}}))
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", naming.RUN_DIR_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env.update(SLURM_JOB_ID="314", SLURM_JOB_NAME="train", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1", SLURM_NNODES="1",
               SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost")
    args = tiny_args("fit", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1.0", "--run.name", "r",
                     "--run.test_after_fit", "false", "--config", str(signal_at))

    def job(**more: str) -> subprocess.CompletedProcess:
        return warm_start.run([sys.executable, "-m", "lightning_hw", *args], capture_output=True, text=True, timeout=300,
                              env={**env, **more})

    first = job()
    assert first.returncode == 143, first.stderr[-3000:]
    again = job(SLURM_RESTART_COUNT="1")

    assert again.returncode == 0, again.stderr[-3000:]
    run = workdir / "runs" / "quickstart" / "r"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and status["earlier_attempts"][0]["global_step"] == 13
    assert sorted(epoch_metrics(run)) == [0, 1]
    rows = (run / "metrics.csv").read_text().splitlines()
    assert sum(1 for row in rows[1:] if row.split(",")[rows[0].split(",").index("val/loss")]) == 2  # none twice


def test_compile_advice_without_a_cpu_compiler_reaches_compilenet_with_a_preset_after_it(tiny_args, capsys, workdir):
    """compile.yaml then gpu.yaml, on the CPU: the advice, added at the end, went to Float32MatmulPrecision.

    ``--trainer.callbacks.init_args.backend aot_eager`` sets the last callback given before it, and
    gpu.yaml's come after CompileNet: the command the message suggested failed with "Float32MatmulPrecision
    has no option 'backend'".
    """
    import re

    from torch._inductor import config

    from reliability_helpers import error_of, output_of

    compile_preset = ["--config", str(PRESETS / "compile.yaml")]
    after = ["--config", str(PRESETS / "gpu.yaml"), "--trainer.accelerator", "cpu"]
    torch._dynamo.reset()
    with config.patch({"cpp.cxx": (None, "/nonexistent/g++")}):  # as with no compiler installed
        code, line = error_of(tiny_args("fit", *compile_preset, *after), capsys)
    torch._dynamo.reset()
    assert code == 2 and "needs a C++ compiler" in line, line
    option = re.search(r"(--trainer\.callbacks\.init_args\.backend aot_eager)", line).group(1).split()
    if "right after `--config configs/trainer/compile.yaml`" in line:
        followed = tiny_args("fit", *compile_preset, *option, *after)
    else:  # where a user adds an option
        followed = tiny_args("fit", *compile_preset, *after, *option)
    printed = yaml.safe_load(output_of(*followed, "--print_config"))
    (compile_net,) = [c for c in printed["trainer"]["callbacks"] if c["class_path"].endswith(".CompileNet")]
    assert compile_net["init_args"]["backend"] == "aot_eager"


def test_an_option_for_a_callback_that_a_later_preset_follows_says_where_to_give_it(tiny_args, capsys, workdir):
    """After gpu.yaml, ``--trainer.callbacks.init_args.backend`` reached Float32MatmulPrecision, not CompileNet.

    The line said only "Float32MatmulPrecision has no option 'backend' (accepted: precision)": true, but
    the user never named Float32MatmulPrecision and was not told how to reach CompileNet.
    """
    from reliability_helpers import error_of, output_of

    compile_preset = ["--config", str(PRESETS / "compile.yaml")]
    after = ["--config", str(PRESETS / "gpu.yaml"), "--trainer.accelerator", "cpu"]
    option = ["--trainer.callbacks.init_args.backend", "aot_eager"]
    code, line = error_of(tiny_args("fit", *compile_preset, *after, *option), capsys)
    assert code == 2 and line.startswith("error: Float32MatmulPrecision has no option 'backend'"), line
    assert line.endswith(
        "; --trainer.callbacks.init_args.backend goes to the last callback given before it, here Float32MatmulPrecision: "
        "give it right after the --config that adds the callback you mean"
    ), line
    printed = yaml.safe_load(output_of(*tiny_args("fit", *compile_preset, *option, *after), "--print_config"))
    assert printed["trainer"]["callbacks"][-3]["init_args"]["backend"] == "aot_eager"  # CompileNet, then gpu.yaml's two
