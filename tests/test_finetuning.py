"""FreezeBackbone: exactly the head trains, then the chosen layers join as their own parameter group."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn
from transfer_utils import RandomImages, make_task, make_trainer

from lightning_hw.callbacks.finetuning import EarlyStoppingFrom, FreezeBackbone, backbone_blocks, backbone_layers
from lightning_hw.errors import ConfigError


def trainable(task) -> set[str]:
    return {name for name, p in task.named_parameters() if p.requires_grad}


def names_under(task, prefix: str, skip_bn: bool = False) -> set[str]:
    return {n for n, _ in task.named_parameters() if n.startswith(prefix) and not (skip_bn and ".bn" in n)}


class Recorder(Callback):
    """What the optimizer and one batch-norm layer look like during each training epoch."""

    def __init__(self) -> None:
        self.groups: list[list[float]] = []
        self.bn_training: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.groups.append([g["lr"] for g in trainer.optimizers[0].param_groups])
            self.bn_training.append(pl_module.net.backbone.layer4[1].bn1.training)


def test_freezing_leaves_exactly_the_head_trainable():
    task = make_task(spec=("flatten", 8, "batchnorm"))
    FreezeBackbone().freeze_before_training(task)
    assert trainable(task) == names_under(task, "net.head.")
    assert sum(p.numel() for p in task.parameters() if p.requires_grad) == 512 * 8 + 8 + 16 + 9
    # Frozen batch norm normalises with its stored statistics (eval mode); the head's trains.
    assert all(not m.training for m in task.net.backbone.modules())
    assert task.net.head[2].training


def test_a_frozen_backbone_does_not_change_while_the_head_trains():
    task = make_task()
    before = {k: v.clone() for k, v in task.net.backbone.state_dict().items()}
    head_before = task.net.head[0].weight.clone()
    trainer = make_trainer([FreezeBackbone()], max_epochs=1)
    trainer.fit(task, RandomImages())
    # Adam was built over all parameters (the task's default); only the head's remain in it.
    assert {id(p) for p in trainer.optimizers[0].param_groups[0]["params"]} == {id(p) for p in task.net.head.parameters()}
    after = task.net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running statistics
    assert not torch.equal(head_before, task.net.head[0].weight)


@pytest.mark.parametrize("train_bn", [False, True])
def test_unfreezing_at_epoch_k_adds_a_parameter_group_with_its_lr(train_bn):
    task = make_task()
    for module in task.net.backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            # timm starts each block's last BN at scale 0, which would stop every gradient into
            # the block while BN is frozen; pretrained weights have non-zero scales.
            nn.init.uniform_(module.weight, 0.5, 1.5)
    recorder = Recorder()
    freezer = FreezeBackbone(unfreeze_at_epoch=2, last_blocks=1, lr=1e-5, train_bn=train_bn)
    block = task.net.backbone.layer4[1]
    conv_before, other_before = block.conv1.weight.clone(), task.net.backbone.layer4[0].conv1.weight.clone()
    trainer = make_trainer([freezer, recorder], max_epochs=3)
    trainer.fit(task, RandomImages())
    assert recorder.groups == [[1e-3], [1e-3], [1e-3, 1e-5]]
    unfrozen = names_under(task, "net.backbone.layer4.1.", skip_bn=not train_bn)
    assert trainable(task) == names_under(task, "net.head.") | unfrozen
    by_name = dict(task.named_parameters())
    new_group = trainer.optimizers[0].param_groups[1]["params"]
    assert {id(p) for p in new_group} == {id(by_name[n]) for n in unfrozen}
    assert recorder.bn_training == [False, False, train_bn]
    assert not torch.equal(conv_before, block.conv1.weight)  # the unfrozen block learned
    assert torch.equal(other_before, task.net.backbone.layer4[0].conv1.weight)  # the block before did not


def test_layers_and_blocks_to_unfreeze():
    backbone = make_task().net.backbone
    layers = backbone_layers(backbone)
    assert len(layers) == 60 and isinstance(layers[0], nn.Conv2d)  # ... the last two: avg pool, flatten
    assert sum(p.numel() for m in layers for p in m.parameters(recurse=False)) == 11_176_512  # every weight, once
    from_52 = FreezeBackbone(unfreeze_at_epoch=0, from_layer=52).modules_to_unfreeze(backbone)
    assert from_52 == layers[52:] == FreezeBackbone(unfreeze_at_epoch=0, last_layers=8).modules_to_unfreeze(backbone)
    blocks = backbone_blocks(backbone)
    assert len(blocks) == 9  # resnet18: stem + 8 basic blocks
    last_two = FreezeBackbone(unfreeze_at_epoch=0, last_blocks=2).modules_to_unfreeze(backbone)
    assert backbone.layer4[0].conv1 in last_two and backbone.layer3[1].conv1 not in last_two
    assert FreezeBackbone(unfreeze_at_epoch=0).modules_to_unfreeze(backbone) == [backbone]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unfreeze_at_epoch": 1, "last_blocks": 2, "from_layer": 3}, "give one of"),
        ({"last_blocks": 2}, "needs unfreeze_at_epoch"),
        ({"unfreeze_at_epoch": -1}, ">= 0"),
    ],
)
def test_contradictory_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FreezeBackbone(**kwargs)


def test_from_layer_outside_the_backbone_is_refused():
    backbone = make_task().net.backbone
    with pytest.raises(ConfigError, match="outside the backbone's 60 layers"):
        FreezeBackbone(unfreeze_at_epoch=0, from_layer=60).modules_to_unfreeze(backbone)


def test_the_fine_tuning_lr_is_among_the_restored_settings_wherever_it_is_given():
    """Under finetune: or as a trainer callback: one key, so a resume compares it whichever the config used."""
    from lightning_hw.runs.lifecycle import FINETUNE_FROM, FINETUNE_LR, restored_settings

    freezer = {"class_path": "lightning_hw.callbacks.finetuning.FreezeBackbone", "init_args": {"lr": 0.001, "unfreeze_at_epoch": 3}}
    own_key = {"finetune": freezer, "trainer": {"callbacks": []}, "optimizer": {"init_args": {"lr": 0.01}}}
    as_callback = {"finetune": None, "trainer": {"callbacks": [freezer]}, "optimizer": {"init_args": {"lr": 0.01}}}
    # The unfreezing epoch comes along, uncompared: it says whether the run has a checkpoint of before it.
    assert restored_settings(own_key) == restored_settings(as_callback) == {
        "optimizer.init_args.lr": 0.01, FINETUNE_LR: 0.001, FINETUNE_FROM: 3,
    }
    assert FINETUNE_LR not in restored_settings({"finetune": None, "trainer": {"callbacks": []}})


def test_frozen_throughout():
    assert FreezeBackbone().frozen_throughout(100)
    assert FreezeBackbone(unfreeze_at_epoch=10).frozen_throughout(10)
    assert not FreezeBackbone(unfreeze_at_epoch=10).frozen_throughout(11)
    assert not FreezeBackbone(unfreeze_at_epoch=10).frozen_throughout(-1)  # -1: no epoch limit


def test_early_stopping_from_waits_for_its_start_epoch():
    # stopping_threshold=0 on val/acc: any check stops the run at once.
    def run(stopper):
        trainer = make_trainer([FreezeBackbone(), stopper], max_epochs=5)
        trainer.fit(make_task(), RandomImages())
        return trainer.current_epoch

    assert run(EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=0.0)) == 1
    assert run(EarlyStoppingFrom(start_epoch=2, monitor="val/acc", mode="max", stopping_threshold=0.0)) == 3


@pytest.mark.parametrize(
    ("override", "error"),
    [
        # found at the unfreezing epoch, the run stopped there after training the head phase
        (["--finetune.from_layer", "9999"], "from_layer 9999 is outside the backbone's 60 layers; give one from 0 to 59"),
        # trained on, saying "unfroze 0 modules": a fine-tuning run that fine-tuned nothing
        (["--finetune.last_blocks", "0"], "last_blocks must be at least 1, got 0; leave it out to unfreeze the whole backbone"),
        # trained on with the backbone climbing its loss
        (["--finetune.lr=-1e-4"], "lr must be a positive number, got -0.0001; leave it out for the head's lr / 10"),
    ],
)
def test_a_schedule_that_cannot_unfreeze_is_refused_before_training(workdir, capsys, override, error):
    from conftest import REPO, tiny_run_args
    from lightning_hw.cli import main

    args = tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--trainer.max_epochs", "2", "--finetune.unfreeze_at_epoch", "1", "--finetune.last_blocks", "null", *override,
        "--config", str(REPO / "configs" / "trainer" / "cpu.yaml"),  # a preset stacked after the override
    )
    with pytest.raises(SystemExit) as exit_info:  # `python -m lightning_hw fit`, in this process
        main(args)
    assert exit_info.value.code == 2
    done = capsys.readouterr()
    assert [line for line in (done.out + done.err).splitlines() if line.startswith("error:")] == [
        f"error: FreezeBackbone: {error}"
    ]
    assert "Traceback" not in done.err and not list((workdir / "runs").rglob("*.ckpt"))
    assert not list((workdir / "runs").glob("*/*"))  # a run that never trained leaves nothing
