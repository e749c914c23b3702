"""Every experiment config runs end to end (``fast_dev_run``) through the CLI on a fixture in the real format."""

from __future__ import annotations

import math

import pytest

from lightning_hw.cli import HWCLI
from lightning_hw.data.fixtures import classification as fixtures
from lightning_hw.nets.mlp import MLP
from tests.conftest import REPO

IMAGE_CONFIGS = {
    # config: (fixture writer, the root it returns is --data.init_args.root)
    "mnist_mlp": lambda tmp: fixtures.write_mnist(tmp),
    "cifar10_mlp": lambda tmp: fixtures.write_cifar10(tmp),
    "fer2013_mlp": lambda tmp: fixtures.write_fer2013(tmp),
    "catsdogs_mlp": lambda tmp: fixtures.write_image_folder(tmp / "catsdogs"),
    "catsdogs_offline_aug": lambda tmp: fixtures.write_image_folder(tmp / "catsdogs"),
    "catsdogs_online_aug": lambda tmp: fixtures.write_image_folder(tmp / "catsdogs"),
}
OTHER_CONFIGS = {
    "mobile_price": lambda tmp: fixtures.write_mobile_price(tmp),
    "reuters": lambda tmp: fixtures.write_reuters(tmp),
    "moons_overfit": None,  # TwoMoons is generated, there is no file
    "moons_regularized": None,
}


def dev_run(workdir, config: str, writer, *extra: str) -> HWCLI:
    """``fit --config configs/<config>.yaml --trainer.fast_dev_run true`` on the fixture ``writer`` makes."""
    args = [
        "fit", "--config", str(REPO / "configs" / f"{config}.yaml"),
        "--trainer.fast_dev_run", "true",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(workdir / "runs"),
        "--run.wandb", "disabled",
        "--run.name", "dev",
    ]
    if writer is not None:
        args += ["--data.init_args.root", str(writer(workdir / "data"))]
    return HWCLI(args=[*args, *extra])


def check_specifics(config: str, cli: HWCLI) -> None:
    """What each experiment's config promises beyond running (one CLI run per config keeps this fast)."""
    dm, model = cli.datamodule, cli.model
    if config.startswith("catsdogs"):
        # E3: 20 fixture photos -> 12 train / 2 val / 6 test; (a) adds 8 copies of each, (b) augments online.
        assert dm.class_names == ["cat", "dog"] and dm.input_shape == (3 * 28 * 28,)
        assert model.head.name == "binary_bce"
        copies = {"catsdogs_mlp": 0, "catsdogs_offline_aug": 8, "catsdogs_online_aug": 0}[config]
        assert dm.data["train"][0].shape[0] == 12 * (copies + 1)
        assert (dm.augment is not None) == (config == "catsdogs_online_aug")
    if config == "mobile_price":
        assert sum(p.numel() for p in model.net.parameters()) == 104_404  # the reports' Keras summary
        optimizer = cli.trainer.optimizers[0]
        assert type(optimizer).__name__ == "SGD" and optimizer.defaults["nesterov"] is True
    if config == "reuters":
        assert model.net.layers[1].in_features == 1000 and model.net.layers[-1].out_features == 46
    if config == "moons_regularized":
        assert (model.net.l1, model.net.l2) == (0.0005, 0.005)


@pytest.mark.parametrize("config", list(IMAGE_CONFIGS) + list(OTHER_CONFIGS))
def test_config_runs_on_its_fixture(config, workdir):
    writer = {**IMAGE_CONFIGS, **OTHER_CONFIGS}[config]
    cli = dev_run(workdir, config, writer)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert "test/acc" in cli.trainer.callback_metrics  # after_fit tested the model
    assert cli.model.class_names == cli.datamodule.class_names
    assert cli.model.num_classes == len(cli.datamodule.class_names)
    # The figures were drawn (the callbacks ran) but, as the CLI says for a fast_dev_run, nothing was saved.
    curves = next(c for c in cli.trainer.callbacks if type(c).__name__ == "MetricCurves")
    assert curves.history
    assert not (workdir / "runs").exists()
    check_specifics(config, cli)


def test_e7_underfit_override_from_the_config_comment_parses(workdir):
    cli = dev_run(
        workdir, "mobile_price", OTHER_CONFIGS["mobile_price"],
        "--optimizer.init_args.lr", "1e-4", "--optimizer.init_args.momentum", "0", "--optimizer.init_args.nesterov", "false",
    )
    defaults = cli.trainer.optimizers[0].defaults
    assert (defaults["lr"], defaults["momentum"], defaults["nesterov"]) == (1e-4, 0.0, False)


def test_e8_head_is_selectable_from_the_command_line(workdir):
    cli = dev_run(workdir, "reuters", OTHER_CONFIGS["reuters"], "--model.init_args.head", "sigmoid_mse")
    assert cli.model.head.name == "sigmoid_mse"


def test_e1_model_factory_has_the_reports_parameter_count():
    # "For a 50x50 input and 5 classes it has 320,773 parameters" (Keras summary in the report).
    net = MLP((1, 50, 50), 5, hidden=[128])
    assert sum(p.numel() for p in net.parameters()) == 320_773 == (50 * 50 * 128 + 128) + (128 * 5 + 5)
    assert math.prod((1, 50, 50)) == net.layers[1].in_features


@pytest.mark.parametrize("config", ["quickstart", "moons_overfit", "moons_regularized"])
def test_the_split_sizes_a_configs_comments_name_are_the_ones_it_trains_on(config, workdir):
    """The quickstart's comment spoke of 180 validation images; its validation split holds 359 (179 is the test's)."""
    import re

    text = (REPO / "configs" / f"{config}.yaml").read_text()
    claims = {}
    found = re.search(r"(\d+) train / (\d+) val / (\d+) test", text)
    if found:
        claims = dict(zip(("train", "val", "test"), map(int, found.groups())))
    claims.update({"val": int(n) for n in re.findall(r"(\d+) validation images", text)})
    assert claims, f"{config}.yaml names no split size"
    dm = dev_run(workdir, config, None).datamodule
    assert {split: len(dm.data[split][0]) for split in claims} == claims
