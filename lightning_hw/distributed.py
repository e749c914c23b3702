"""One run directory for all processes of a distributed (DDP) job.

Every process of a DDP job builds the CLI and decides on a run directory. Without care
each would name its run after its own clock (or find its sibling's directory and add
``-1``), splitting one run across several directories. How the processes agree
depends on who started them:

- Lightning itself (``strategy: ddp`` on one machine): the first process picks the
  directory and exports it in ``LIGHTNING_HW_RUN_DIR``; the processes Lightning starts
  inherit its environment and reuse it.
- SLURM (``srun``): an unnamed run is called ``slurm-<job id>``.
- torchrun: an unnamed run is called ``torchrun-<rendezvous id>`` (``--rdzv-id``, which
  ``--standalone`` sets to a fresh id); without one, ``--run.name`` is required.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from lightning_hw.errors import ConfigError
from lightning_hw.runs import RunConfig, run_directory

RUN_DIR_ENV = "LIGHTNING_HW_RUN_DIR"


def job_run_name() -> str | None:
    """A run name that every process of an externally launched job computes alike, or ``None``.

    Raises:
        ConfigError: under torchrun without a rendezvous id (the processes cannot agree).
    """
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return f"slurm-{os.environ['SLURM_JOB_ID']}"
    if TorchElasticEnvironment.detect() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if run_id == "none":
            raise ConfigError(
                "torchrun started this run without --rdzv-id, so its processes cannot agree on a run "
                "directory; pass --run.name NAME (or torchrun --rdzv-id ID)"
            )
        return f"torchrun-{run_id}"
    return None


def shared_run_directory(run: RunConfig, config_files: list[str], ckpt_path: str | None = None) -> Path:
    """:func:`~lightning_hw.runs.run_directory`, the same for every process of a distributed job.

    Args:
        run: the ``run:`` settings.
        config_files: the ``--config`` files given, in order.
        ckpt_path: the checkpoint given to ``validate``/``test``/``predict``, if any.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and int(os.environ.get("LOCAL_RANK", "0")) > 0:
        # A process that Lightning started for DDP: its parent chose (and created) the directory.
        return Path(inherited)
    if run.name is None:
        name = job_run_name()
        if name is not None:
            run = dataclasses.replace(run, name=name)
    directory = run_directory(run, config_files, ckpt_path)
    os.environ[RUN_DIR_ENV] = str(directory)
    return directory
