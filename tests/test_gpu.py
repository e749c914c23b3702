"""Checks that need a CUDA GPU (marker ``gpu``; skipped elsewhere): precision, layout, compile, data path, presets.

Run them on a GPU machine with ``benchmarks/gpu_check.sh`` (it installs what a bare machine
lacks, then runs these and the GPU benchmarks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_hw.cli import main

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "configs" / "trainer"


def quickstart(workdir: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(REPO / "configs" / "quickstart.yaml"), *extra,
        "--trainer.max_epochs", "2", "--run.root", str(workdir / "runs"), "--run.wandb", "disabled",
        "--trainer.enable_progress_bar", "false", "--run.name", "gpu",
    ]


def fit_exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def test_auto_mixed_precision_picks_bfloat16_where_the_gpu_computes_in_it():
    from lightning_hw.precision import AutoMixedPrecision

    plugin = AutoMixedPrecision("cuda")
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert plugin.precision == expected


def test_channels_last_converts_conv_weights():
    from lightning_hw.callbacks.speed import ChannelsLast
    from lightning_hw.nets.small_cnn import SmallCNN

    net = SmallCNN((3, 32, 32), 4, channels=[8, 16]).cuda()
    ChannelsLast().setup(None, net, "fit")
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_image_batches_are_normalised_on_the_gpu_as_on_the_cpu(tmp_path):
    from lightning_hw.data.fixtures.classification import write_image_folder
    from lightning_hw.data.datasets.image_folder import ImageFolder

    root = write_image_folder(tmp_path / "photos", per_class=8, size=(40, 48))
    dm = ImageFolder(root=str(root), labels="prefix", image_size=32, standardize=True, in_memory=False, batch_size=4)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8  # decoded in the workers, sent to the GPU as uint8
    on_gpu = dm.model_batch((images.cuda(non_blocking=True), labels.cuda()))[0]
    on_cpu = dm.model_batch((images, labels))[0]
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("presets", [["gpu"], ["compile"], ["gpu", "compile"], ["ddp"]])
def test_every_gpu_preset_trains_the_quickstart(presets, workdir):
    stacked = [a for p in presets for a in ("--config", str(PRESETS / f"{p}.yaml"))]
    extra = ["--trainer.devices", "1"] if "ddp" in presets else []  # one process: the test runs in pytest's
    assert fit_exit_code(quickstart(workdir, *stacked, *extra)) == 0
    metrics = (workdir / "runs" / "quickstart" / "gpu" / "metrics.csv").read_text()
    assert "test/acc" in metrics.splitlines()[0]


def test_nvjpeg_decodes_on_the_gpu_within_a_level_of_the_cpu(tmp_path):
    from lightning_hw.data.datasets.image_folder import ImageFolder
    from lightning_hw.data.fixtures.classification import write_image_folder
    from lightning_hw.data.io.jpeg_batch import EncodedImages, read_file

    root = write_image_folder(tmp_path / "photos", per_class=16, size=(120, 160))
    dm = ImageFolder(root=str(root), labels="prefix", decoder="nvjpeg", image_size=64, crop_pct=0.875)
    paths = [path for path, _ in dm.samples]
    batch = EncodedImages.pack([read_file(p) for p in paths], paths)
    on_gpu = dm.decode_encoded(batch)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.uint8
    on_cpu = dm.decode_encoded(batch, torch.device("cpu"))  # the same library's CPU decoder
    assert (on_gpu.cpu().float() - on_cpu.float()).abs().mean() < 1.0  # IDCTs differ by rounding only


def test_nvjpeg_names_a_truncated_jpeg(tmp_path):
    from lightning_hw.data.datasets.image_folder import ImageFolder
    from lightning_hw.data.fixtures.classification import write_image_folder
    from lightning_hw.errors import DataError

    root = write_image_folder(tmp_path / "photos", per_class=8, size=(120, 160))
    whole = (root / "cat.0.jpg").read_bytes()
    (root / "cat.0.jpg").write_bytes(whole[: len(whole) // 2])  # a download cut off half-way
    dm = ImageFolder(root=str(root), labels="prefix", decoder="nvjpeg", image_size=64)
    with pytest.raises(DataError, match=r"cannot read image .*cat\.0\.jpg"):
        dm.setup("fit")


def test_a_streamed_nvjpeg_folder_trains_with_the_gpu_preset(workdir):
    from lightning_hw.data.fixtures.classification import write_image_folder

    root = write_image_folder(workdir / "photos", per_class=30, size=(36, 44))
    args = [
        "fit", "--config", str(REPO / "configs" / "catsdogs_mlp.yaml"), "--config", str(PRESETS / "gpu.yaml"),
        "--data.init_args.root", str(root), "--data.init_args.decoder", "nvjpeg", "--data.init_args.in_memory", "false",
        "--data.init_args.standardize", "true", "--trainer.max_epochs", "5",
        "--run.root", str(workdir / "runs"), "--run.wandb", "disabled", "--trainer.enable_progress_bar", "false",
        "--run.name", "nvjpeg",
    ]
    assert fit_exit_code(args) == 0
    (metrics,) = (workdir / "runs").glob("*/nvjpeg/metrics.csv")
    assert "test/acc" in metrics.read_text().splitlines()[0]


def test_a_fit_forked_from_the_warm_process_trains_on_the_gpu(tmp_path):
    """A study's fits fork from a process that imported torch without initialising CUDA (warm_start)."""
    import subprocess
    import sys

    from lightning_hw.cli import warm_start

    assert warm_start.warm_up(wait=300), "the warm process is not ready here: did an import initialise CUDA?"
    command = [sys.executable, "-m", "lightning_hw", *quickstart(tmp_path, "--trainer.accelerator", "gpu", "--trainer.devices", "1")]
    fit = warm_start.popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    assert isinstance(fit, warm_start.WarmProcess)
    output, _ = fit.communicate(timeout=300)
    assert fit.returncode == 0, output[-3000:]
    assert "test/acc" in output
