"""Freeze a pretrained backbone, train the head, then fine-tune its last layers (E5).

    finetune:                     # the CLI's own key for this callback (or in trainer.callbacks)
      unfreeze_at_epoch: 20       # None: frozen for the whole run
      last_blocks: 3              # or last_layers: 40, or from_layer: 160
      lr: 1.0e-5                  # the unfrozen layers' own learning rate

Batch norm, deliberately: a frozen batch-norm layer runs in eval mode, i.e. it normalises
with the running statistics it was pretrained with and does not update them (Keras does
the same for ``trainable=False``). Lightning's own ``BaseFinetuning.freeze`` only stops the
gradients, so a frozen BN layer in train mode would normalise with each batch's
statistics, which on 16-image batches differ from ImageNet's and shift the features
every step. By default (``train_bn: false``) the BN layers of the unfrozen blocks stay
frozen the same way, the usual advice for fine-tuning on small data; ``train_bn: true``
trains their scale/shift and statistics too. Every other frozen module runs in eval mode
as well (dropout off), so a frozen backbone is a fixed function: exactly what the
feature cache stores.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning, EarlyStopping
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import nn
from torch.optim import Optimizer

from lightning_hw._compat.lightning import epoch_start_skipped, finetuning_groups, finetuning_restarting
from lightning_hw.errors import ConfigError, LightningHWWarning


def backbone_of(pl_module: nn.Module) -> nn.Module:
    """The ``backbone`` of a task or of its ``net`` (e.g. :class:`~lightning_hw.nets.backbones.TimmNet`)."""
    for owner in (pl_module, getattr(pl_module, "net", None)):
        backbone = getattr(owner, "backbone", None)
        if isinstance(backbone, nn.Module):
            return backbone
    raise ConfigError(
        f"FreezeBackbone needs a net with a `backbone` (e.g. lightning_hw.nets.backbones.TimmNet); "
        f"{type(pl_module).__name__} has none"
    )


def backbone_layers(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's leaf modules in definition order, the analogue of Keras' ``model.layers``.

    ``nn.Identity`` placeholders (the removed classifier and pooling) are left out. Keras
    also lists its Add/Concatenate layers, which are operations here, so indices are
    close to, but not the same as, a Keras model's.
    """
    # Modules with parameters of their own count even with children (timm's BatchNormAct2d
    # holds its activation as a child), as in Lightning's BaseFinetuning.flatten_modules.
    return [
        m for m in backbone.modules()
        if (not list(m.children()) or any(True for _ in m.parameters(recurse=False))) and not isinstance(m, nn.Identity)
    ]


def backbone_blocks(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone's blocks in order, as timm groups them (stem, then e.g. each bottleneck).

    timm's ``group_matcher(coarse=False)`` is the grouping it uses for layer-wise learning
    rate decay: ResNet152 has 51 groups (stem + 50 bottlenecks), DenseNet201 100.
    """
    from timm.models import group_modules

    matcher = getattr(backbone, "group_matcher", None)
    if matcher is None:
        raise ConfigError(f"{type(backbone).__name__} does not define timm blocks; use last_layers or from_layer")
    groups = group_modules(backbone, matcher(coarse=False))
    return [[backbone.get_submodule(name) for name in names] for _, names in sorted(groups.items())]


#: batch norm layers (timm's BatchNormAct2d subclasses BatchNorm2d; lazy ones become these once built)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _bn_modules(modules: Iterable[nn.Module]) -> list[nn.Module]:
    return [m for root in modules for m in root.modules() if isinstance(m, BATCH_NORMS)]


def _backbone_groups(optimizers: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The parameter groups of ``BaseFinetuning``'s optimizer metadata (groups of parameter names) holding backbone parameters."""
    # The names backbone_of finds: a task's own backbone, or its net's (TimmNet).
    return [
        group for groups in optimizers.values() for group in groups
        if any(str(name).startswith(("backbone.", "net.backbone.")) for name in group.get("params", ()))
    ]


class FreezeBackbone(BaseFinetuning):
    """Train the head on a frozen backbone; optionally unfreeze its last part at an epoch.

    The unfrozen parameters join the optimizer as a new parameter group with their own
    learning rate (the head keeps its own). Give at most one of ``last_blocks``,
    ``last_layers`` and ``from_layer``; with none, ``unfreeze_at_epoch`` unfreezes the
    whole backbone.

    Args:
        unfreeze_at_epoch: epoch (0-based) at which to unfreeze; ``None`` keeps the
            backbone frozen for the whole run (then the feature cache can be used).
        last_blocks: unfreeze the last N blocks (timm's grouping, see :func:`backbone_blocks`).
        last_layers: unfreeze the last N layers (leaf modules, see :func:`backbone_layers`).
        from_layer: unfreeze layers from this index on, as the report did ("from layer 160").
        lr: learning rate of the unfrozen layers; default: the head's learning rate / 10.
        train_bn: also train the unfrozen batch-norm layers (scale, shift and statistics).
    """

    def __init__(
        self,
        unfreeze_at_epoch: int | None = None,
        last_blocks: int | None = None,
        last_layers: int | None = None,
        from_layer: int | None = None,
        lr: float | None = None,
        train_bn: bool = False,
    ) -> None:
        super().__init__()
        chosen = [n for n, v in (("last_blocks", last_blocks), ("last_layers", last_layers),
                                 ("from_layer", from_layer)) if v is not None]
        if len(chosen) > 1:
            raise ConfigError(f"FreezeBackbone: give one of last_blocks, last_layers, from_layer, not {chosen}")
        if chosen and unfreeze_at_epoch is None:
            # A config's schedule with only its epoch overridden to null (the way to train frozen
            # throughout): the refusal names both settings, or the user was left to find the second.
            raise ConfigError(
                f"FreezeBackbone: {chosen[0]} needs unfreeze_at_epoch (the epoch to unfreeze at); to keep the "
                f"backbone frozen for the whole run, leave {chosen[0]} out too (--finetune.{chosen[0]} null)"
            )
        if unfreeze_at_epoch is not None and unfreeze_at_epoch < 0:
            raise ConfigError(f"FreezeBackbone: unfreeze_at_epoch must be >= 0, got {unfreeze_at_epoch}")
        # Checked here, not at the unfreezing epoch: 0 (or fewer) last blocks would unfreeze nothing and a
        # negative lr would climb the loss, both silently, after the whole head phase had been trained.
        for name, count in (("last_blocks", last_blocks), ("last_layers", last_layers)):
            if count is not None and count < 1:
                raise ConfigError(
                    f"FreezeBackbone: {name} must be at least 1, got {count}; leave it out to unfreeze the whole backbone"
                )
        if from_layer is not None and from_layer < 0:
            raise ConfigError(f"FreezeBackbone: from_layer must be >= 0 (the index of the first layer to unfreeze), got {from_layer}")
        if lr is not None and not lr > 0:
            raise ConfigError(
                f"FreezeBackbone: lr must be a positive number, got {lr}; leave it out for the head's lr / 10"
            )
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.last_blocks, self.last_layers, self.from_layer = last_blocks, last_layers, from_layer
        self.lr = lr
        self.train_bn = train_bn
        self._unfrozen: list[nn.Module] = []
        self._eval_mode_warning_hidden: warnings.catch_warnings | None = None

    @staticmethod
    def unfrozen_lr(checkpoint: dict[str, Any]) -> float | None:
        """The learning rate a checkpoint's unfrozen layers' group was added at; ``None`` before the unfreezing.

        Lightning's ``BaseFinetuning`` keeps the optimizer's parameter groups, by parameter name,
        in its checkpoint state (``internal_optimizer_metadata``); it holds backbone parameters
        only once unfreezing has added their group. A fit from such a checkpoint restores that
        group, learning rate included, and so ignores a new ``lr``. Each group is recorded as it
        joins the optimizer, so this is the lr the backbone started fine-tuning at (``lr``, or the
        head's lr / 10 when none was given), not the one a scheduler has made of it since.

        Args:
            checkpoint: a loaded checkpoint.
        """
        groups = _backbone_groups(finetuning_groups((checkpoint.get("callbacks") or {}).get(FreezeBackbone.__qualname__)))
        return float(groups[0].get("lr", math.nan)) if groups else None  # a float or a tensor (torch takes both); never missing

    def frozen_throughout(self, max_epochs: int | None) -> bool:
        """Whether the backbone stays frozen for a run of ``max_epochs`` epochs."""
        if self.unfreeze_at_epoch is None:
            return True
        return max_epochs is not None and max_epochs >= 0 and self.unfreeze_at_epoch >= max_epochs

    def modules_to_unfreeze(self, backbone: nn.Module) -> list[nn.Module]:
        """The modules that ``unfreeze_at_epoch`` makes trainable."""
        if self.last_blocks is not None:
            blocks = backbone_blocks(backbone)
            return [m for block in blocks[max(len(blocks) - self.last_blocks, 0):] for m in block]
        if self.last_layers is not None or self.from_layer is not None:
            layers = backbone_layers(backbone)
            start = self.from_layer if self.from_layer is not None else max(len(layers) - self.last_layers, 0)
            if not 0 <= start < len(layers):
                raise ConfigError(
                    f"FreezeBackbone: from_layer {start} is outside the backbone's {len(layers)} layers; "
                    f"give one from 0 to {len(layers) - 1}"
                )
            return layers[start:]
        return [backbone]

    def check_schedule(self, backbone: nn.Module) -> None:
        """Refuse a schedule this backbone cannot follow, before training.

        What unfreezes is found now: a from_layer past the backbone's end, or last_blocks of a
        backbone without timm blocks, would otherwise stop the run at the unfreezing epoch. The
        CLI calls it before the run directory exists (so a refusal names no directory that is
        then removed); :meth:`setup` calls it for a Trainer used directly.

        Raises:
            ConfigError: what to give instead.
        """
        if self.unfreeze_at_epoch is not None:
            self.modules_to_unfreeze(backbone)

    # -- Lightning hooks -----------------------------------------------------------------------

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        backbone = backbone_of(pl_module)
        self.freeze(backbone, train_bn=False)
        self._unfrozen = []
        self._apply_modes(backbone)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # calls freeze_before_training
        if stage == "fit":
            self.check_schedule(backbone_of(pl_module))
            if self.unfreeze_at_epoch is not None and self.frozen_throughout(trainer.max_epochs):
                rank_zero_warn(self._never_unfreezes_message(trainer.max_epochs), category=LightningHWWarning)

    def _never_unfreezes_message(self, max_epochs: int) -> str:
        """The warning of a schedule whose unfreezing epoch the run never reaches, with the way out for either intent.

        Fewer epochs may be a mistake (raise them) or the point (a frozen run on cached
        features): only raising the epochs was advised, the opposite of what the second wants.
        """
        frozen_settings = " ".join(
            f"--finetune.{name} null"
            for name, value in (("unfreeze_at_epoch", self.unfreeze_at_epoch), ("last_blocks", self.last_blocks),
                                ("last_layers", self.last_layers), ("from_layer", self.from_layer))
            if value is not None
        )
        return (
            f"FreezeBackbone: unfreeze_at_epoch {self.unfreeze_at_epoch} is not below max_epochs {max_epochs}, so the "
            f"backbone stays frozen for the whole run; to fine-tune it, raise --trainer.max_epochs above "
            f"{self.unfreeze_at_epoch}; to train it frozen on purpose, without this warning: {frozen_settings}"
        )

    def _hide_the_eval_mode_warning(self, hide: bool) -> None:
        """Hide Lightning's "module(s) in eval mode at the start of training" warning from ``on_fit_start`` to ``on_train_start``.

        The frozen backbone is in eval mode on purpose (see the module docstring; said in our
        "backbone frozen" line). The filter is this fit's: set for the rest of the process (it was
        set as the callback was built), it hid the warning from a notebook's later fits of its own.
        """
        if hide and self._eval_mode_warning_hidden is None:
            self._eval_mode_warning_hidden = warnings.catch_warnings()
            self._eval_mode_warning_hidden.__enter__()
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
        elif not hide and self._eval_mode_warning_hidden is not None:
            self._eval_mode_warning_hidden.__exit__(None, None, None)
            self._eval_mode_warning_hidden = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._hide_the_eval_mode_warning(False)  # a fit that failed before on_train_start
        super().teardown(trainer, pl_module, stage)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hide_the_eval_mode_warning(True)  # Lightning warns after this hook, as training starts
        # Said here, once the checkpoint's state is loaded: a fit going on from a checkpoint taken after the
        # unfreezing gets the unfrozen layers' group back and says so as it unfreezes them ("unfroze ... at lr");
        # "frozen until epoch N" before that line would be stale.
        restarting = finetuning_restarting(self)
        if not (restarting and _backbone_groups(finetuning_groups(self.state_dict()))):
            frozen = sum(p.numel() for p in backbone_of(pl_module).parameters())
            whole = self.frozen_throughout(trainer.max_epochs)
            when = "for the whole run" if whole else f"until epoch {self.unfreeze_at_epoch}"
            rank_zero_info(
                f"FreezeBackbone: backbone frozen {when} ({frozen:,} parameters, in eval mode: "
                "batch norm normalises with its stored statistics)"
            )
        if not restarting:
            # LightningCLI's `optimizer:` is built over model.parameters() before anything is
            # frozen; drop the frozen ones so that unfreezing adds them as their own group
            # (with their own lr) instead of finding them already in the head's group.
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["params"] = [p for p in group["params"] if p.requires_grad]
        super().on_fit_start(trainer, pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hide_the_eval_mode_warning(False)
        # A run resumed inside an epoch gets no on_train_epoch_start for it from Lightning: without
        # this, a backbone unfrozen before the interruption stayed frozen for the rest of that epoch
        # (its parameter group restored, but no gradients), and the resumed run trained otherwise.
        if epoch_start_skipped(trainer):
            self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)  # calls finetune_function
        self._apply_modes(backbone_of(pl_module))

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        # ">=" rather than "==": a run resumed after the unfreezing epoch must unfreeze again
        # (the restored parameter groups already hold the parameters; they are not re-added).
        if self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch or self._unfrozen:
            return
        backbone = backbone_of(pl_module)
        modules = self.modules_to_unfreeze(backbone)
        self.make_trainable(modules)
        if not self.train_bn:
            self.freeze(_bn_modules(modules), train_bn=False)
        lr = self.lr if self.lr is not None else optimizer.param_groups[0]["lr"] / 10
        group_lr = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        trainable = list(self.filter_params(modules, train_bn=self.train_bn))
        params = [p for p in trainable if id(p) not in group_lr]
        if params:
            optimizer.add_param_group({"params": params, "lr": lr})
        self._unfrozen = modules
        count = sum(p.numel() for p in trainable)
        # On a resume the parameters are already in the group the checkpoint restored: say its lr.
        lr = group_lr.get(id(trainable[0]), lr) if trainable else lr
        rank_zero_info(f"FreezeBackbone: epoch {epoch}: unfroze {len(modules)} modules ({count:,} parameters) at lr {lr:g}")

    def _apply_modes(self, backbone: nn.Module) -> None:
        """Frozen modules in eval mode; unfrozen ones in train mode (their BN only if ``train_bn``)."""
        backbone.eval()
        for module in self._unfrozen:
            module.train()
        if not self.train_bn:
            for bn in _bn_modules(self._unfrozen):
                bn.eval()


class EarlyStoppingFrom(EarlyStopping):
    """Lightning's ``EarlyStopping`` that starts watching only at ``start_epoch``.

    E5 fine-tunes with early stopping (patience 5) *after* the head has been trained; in
    one run that is ``FreezeBackbone(unfreeze_at_epoch=k)`` plus ``EarlyStoppingFrom(start_epoch=k)``,
    so a plateau of the head phase cannot end the run before fine-tuning begins.

    Args:
        start_epoch: first epoch whose validation result counts.
        **kwargs: ``monitor``, ``patience``, ``mode``... of
            :class:`~lightning.pytorch.callbacks.EarlyStopping`.
    """

    def __init__(self, start_epoch: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch >= self.start_epoch:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch >= self.start_epoch:
            super().on_validation_end(trainer, pl_module)
