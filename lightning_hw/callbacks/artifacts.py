"""The best checkpoint of a run as a W&B model artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger


class LogBestCheckpoint(Callback):
    """At the end of ``fit``, upload the best checkpoint to each W&B run as a ``model`` artifact.

    Lightning's ``WandbLogger(log_model=True)`` uploads every checkpoint its
    ``ModelCheckpoint`` keeps, ``last.ckpt`` included, which doubles the upload for every run;
    this uploads only the best one, aliased ``best``, with its score in the metadata.
    Offline runs are skipped unless asked (an offline artifact is a copy of the checkpoint
    inside ``wandb/`` that ``wandb sync`` uploads later).

    Args:
        offline_too: also log the artifact into offline runs.
    """

    def __init__(self, offline_too: bool = False) -> None:
        self.offline_too = offline_too

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        if not trainer.is_global_zero or not best or not Path(best).is_file():
            return
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            run = logger.experiment
            if getattr(run, "offline", False) and not self.offline_too:
                continue
            log_checkpoint(run, Path(best), checkpoint_metadata(checkpoint))


def checkpoint_metadata(checkpoint: Any) -> dict[str, Any]:
    """What the artifact records about how its checkpoint was chosen."""
    score = getattr(checkpoint, "best_model_score", None)
    return {
        "monitor": getattr(checkpoint, "monitor", None),
        "mode": getattr(checkpoint, "mode", None),
        "score": float(score) if score is not None else None,
        "original_filename": Path(checkpoint.best_model_path).name,
    }


def log_checkpoint(run: Any, path: Path, metadata: dict[str, Any]) -> Any:
    """Log ``path`` as version of the artifact ``model-<run id>`` with aliases ``best`` and ``latest``.

    Args:
        run: the W&B run.
        path: the checkpoint file.
        metadata: stored with the artifact (monitor, score, ...).

    Returns:
        The logged ``wandb.Artifact``.
    """
    import wandb

    artifact = wandb.Artifact(name=f"model-{run.id}", type="model", metadata=metadata)
    artifact.add_file(str(path), name="model.ckpt")
    return run.log_artifact(artifact, aliases=["best", "latest"])
