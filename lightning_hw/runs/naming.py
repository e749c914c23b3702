"""Which group and name a run gets, the same in every process of a distributed job.

The group is the experiment: ``run.group``, else the name of the first ``--config`` file that
is not a trainer preset (presets such as ``configs/trainer/gpu.yaml`` hold only ``trainer:``
and must not move the run, whether they are given before or after the experiment).
The name is ``run.name``, else a name every process of the job computes alike:

- Lightning itself (``strategy: ddp`` on one machine): the first process picks the
  directory and exports it in ``LIGHTNING_HW_RUN_DIR``; the processes Lightning starts
  inherit its environment and reuse it.
- SLURM with several tasks: ``slurm-<job id>`` (array jobs ``slurm-<job>_<task>``); a requeued
  job finds its run again. (One-task jobs keep timestamps: a job script may train many runs.)
- torchrun: ``torchrun-<rendezvous id>`` (``--rdzv-id``, which ``--standalone`` sets to a
  fresh id); without one, ``--run.name`` is required.
- otherwise a timestamp, with ``-1``, ``-2``... when two runs start in the same second.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import yaml

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from lightning_hw.errors import ConfigError

RUN_DIR_ENV = "LIGHTNING_HW_RUN_DIR"


def group_of(group: str | None, config_files: list[str]) -> str:
    """``run.group``, else the experiment config's name, else ``default``.

    The experiment config is the first file that is not a trainer preset, or the first file
    when all are presets.
    """
    if group:
        return group
    if not config_files:
        return "default"
    experiment = next((f for f in config_files if not _is_trainer_preset(f)), config_files[0])
    return Path(experiment).stem


def _is_trainer_preset(path: str) -> bool:
    """Whether a config file holds only a ``trainer:`` section (as ``configs/trainer/*.yaml``)."""
    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(content, dict) and set(content) == {"trainer"}


def timestamp() -> str:
    """The default run name: local time to the second."""
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def job_run_name() -> str | None:
    """A run name that every process of an externally launched job computes alike, or ``None``.

    Raises:
        ConfigError: under torchrun without a rendezvous id (the processes cannot agree).
    """
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        if array_job is not None:
            return f"slurm-{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
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


def job_launch(program: str) -> tuple[str, str] | None:
    """How to start this job's processes again (for the resume command), or ``None`` when one command does it.

    A run that torchrun or SLURM started is continued by them too: ``python -m lightning_hw``
    alone would start one node's processes, and with ``num_nodes`` > 1 they would wait for the
    others for good.

    Args:
        program: how this program was started (``python -m lightning_hw`` or ``lightning-hw``).

    Returns:
        The command's start (up to the subcommand) and a remark on where to run it (``""``: none).
    """
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        nodes, tasks = os.environ.get("SLURM_NNODES", "1"), os.environ["SLURM_NTASKS"]
        return f"srun {program}", f"in an sbatch job of the same size ({nodes} node(s), {tasks} tasks)"
    if TorchElasticEnvironment.detect() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", "1")
        nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
        if nodes == 1:
            return f"torchrun --standalone --nproc-per-node {per_node} -m lightning_hw", ""
        return (
            f"torchrun --nnodes {nodes} --nproc-per-node {per_node} --rdzv-backend c10d --rdzv-endpoint NODE0:29500 "
            "-m lightning_hw",
            "on every node; NODE0: the first node's address",
        )
    return None


def inherited_directory() -> Path | None:
    """The run directory chosen by the process that started this one (Lightning's DDP launcher)."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and int(os.environ.get("LOCAL_RANK", "0")) > 0:
        return Path(inherited)
    return None


def share_directory(directory: Path) -> None:
    """Tell the processes this one starts (Lightning's DDP launcher) which directory it chose."""
    os.environ[RUN_DIR_ENV] = str(directory)


def unused_name(parent: Path, name: str) -> str:
    """``name``, or ``name-1``, ``name-2``... when ``parent/name`` exists (two unnamed runs in one second)."""
    candidate, suffix = name, 1
    while (parent / candidate).exists():
        candidate = f"{name}-{suffix}"
        suffix += 1
    return candidate
