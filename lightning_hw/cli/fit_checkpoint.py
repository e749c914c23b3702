"""``fit --ckpt_path X`` without ``--config``: the one line that says which command was meant.

``validate``/``test``/``predict`` read the config of the checkpoint's run themselves; ``fit``
writes into a run (continues it, or starts one from its checkpoint), so it does not guess which:
it refuses, naming the exact command for what the checkpoint allows. Without this, the parser's
"the following arguments are required: fit.data, fit.model" said nothing of the run's config.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from lightning_hw.checkpoints import check_ckpt_path
from lightning_hw.cli.names import config_arguments, option_values
from lightning_hw.errors import ConfigError

#: the ``run:`` options that place a run: ``<root>/<group>/<name>``
PLACE_OPTIONS = ("--run.root", "--run.group", "--run.name")


def refuse_fit_without_config(args: list[str]) -> None:
    """Refuse ``fit --ckpt_path X`` given neither ``--config`` nor ``--model``/``--data``, saying what to run.

    Args:
        args: the command line after the program name (``args[0]`` is the subcommand).

    Raises:
        ConfigError: the command is such a ``fit``; the message holds the command to run instead.
    """
    if not args or args[0] != "fit" or config_arguments(args) or configures_the_model(args):
        return
    ckpt = next((value for _, value in option_values(args, "--ckpt_path")), None)
    if not ckpt or ckpt == "hpc":
        return
    from lightning_hw.runs.lifecycle import command_name

    fit = f"{command_name()} fit"
    if ckpt == "last":
        raise ConfigError(last_without_config(args))
    check_ckpt_path(ckpt, "fit")  # a mistyped file: "checkpoint not found", with the files beside it
    raise ConfigError(_what_to_run(fit, ckpt, _without_ckpt_path(args[1:])))


def last_without_config(args: list[str]) -> str:
    """The refusal of ``<command> --ckpt_path last`` without ``--config``: the command that names the run's config.

    ``last`` means ``<root>/<group>/<name>/checkpoints/last.ckpt`` of the run the config names;
    without a config there is neither the run nor the data and net it was trained with. Where
    ``--run.name`` (with ``--run.group``, or in one group only) finds a run that has its
    ``config.yaml``, the command names that file; else its place.

    Args:
        args: the command line after the program name (``args[0]`` is the subcommand).
    """
    from lightning_hw.runs.files import CONFIG_FILE
    from lightning_hw.runs.lifecycle import command_name

    command = f"{command_name()} {args[0]}"
    what = "continues a run from" if args[0] == "fit" else "loads a run's last checkpoint with"
    run = _named_run(args[1:])
    if run is None:
        return f"--ckpt_path last {what} the config it was trained with: {command} --config runs/<group>/<name>/config.yaml --ckpt_path last"
    config = run / CONFIG_FILE
    rest = _without_ckpt_path(args[1:])
    with_config = [f"{command} --config {shlex.quote(str(config))} --ckpt_path last", *_options_placing(run, config, rest), *map(shlex.quote, rest)]
    return f"--ckpt_path last {what} the config it was trained with; for run {run}: {' '.join(with_config)}"


def _named_run(args: list[str]) -> Path | None:
    """The run that ``--run.root``/``--run.group``/``--run.name`` name, when it has a ``config.yaml`` (one group searched when none is given)."""
    from lightning_hw.runs.files import CONFIG_FILE

    given = {option: next((value for _, value in reversed(option_values(args, option))), None) for option in PLACE_OPTIONS}
    name, group = given["--run.name"], given["--run.group"]
    if not name:
        return None
    root = Path(given["--run.root"] or "runs")
    groups = [root / group] if group else sorted(p for p in root.glob("*") if p.is_dir())
    runs = [g / name for g in groups if (g / name / CONFIG_FILE).is_file()]
    return runs[0] if len(runs) == 1 else None


def _what_to_run(fit: str, ckpt: str, rest: list[str]) -> str:
    """The message for an existing checkpoint file ``ckpt``; ``rest`` are the other options given (kept in the command)."""
    from lightning_hw.runs import run_of_checkpoint
    from lightning_hw.runs.files import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, read_status
    from lightning_hw.runs.lifecycle import test_command

    run = run_of_checkpoint(ckpt)
    if run is None:
        return outside_any_run(fit, ckpt)
    config = run / CONFIG_FILE
    if not config.is_file():
        return no_run_config(ckpt)  # as validate/test/predict say
    with_config = f"{fit} --config {shlex.quote(str(config))}"
    other_name = next((value for _, value in option_values(rest, "--run.name") if value != run.name), None)
    if other_name is not None:  # a new run from this checkpoint, as fit does with the config
        return (
            f"fit needs the config that run {run} was trained with (--ckpt_path gives only the weights); start run "
            f"{shlex.quote(other_name)} from this checkpoint with: {with_config} --ckpt_path {shlex.quote(ckpt)} {shlex.join(rest)}"
        )
    last = run / CHECKPOINT_DIR / LAST_CHECKPOINT
    # ``--ckpt_path last`` names last.ckpt; a run without one (only hpc_ckpt_*) continues from the file itself.
    resume = "last" if last.is_file() else shlex.quote(ckpt)
    continue_it = " ".join([f"{with_config} --ckpt_path {resume}", *_options_placing(run, config, rest), *map(shlex.quote, rest)])
    # A finished run resumed at the epochs it reached has nothing to train (refused): it goes on with more, or is tested.
    test_it = ""
    if read_status(run).get("status") == "finished" and not option_values(rest, "--trainer.max_epochs"):
        continue_it += " --trainer.max_epochs <more>"
        test_it = f"test it with: {test_command(run, Path(ckpt))}; "
    if last.is_file() and last.resolve() != Path(ckpt).resolve():
        # Continuing a run from an older checkpoint is refused: it would overwrite the run's later epochs.
        return (
            f"{ckpt} is not the newest state of run {run}, and fit needs the config it was trained with; "
            f"{test_it}continue that run with: {continue_it}; or start a new run from this checkpoint with: "
            f"{with_config} --ckpt_path {shlex.quote(ckpt)} --run.name NEW_NAME"
        )
    return (
        f"fit needs the config that run {run} was trained with (--ckpt_path gives only the weights); "
        f"{test_it}continue that run with: {continue_it}"
    )


def _options_placing(run: Path, config: Path, rest: list[str]) -> list[str]:
    """``--run.root``/``--run.group``/``--run.name`` where the run's saved config, read from here, names another directory.

    A config saves ``run.root`` as it was given (``runs``, relative): from another working
    directory, or for a run copied elsewhere, it names no such run, and ``--ckpt_path last``
    would be refused there. Options the user gave in ``rest`` are left to them.
    """
    saved = (yaml.safe_load(config.read_text()) or {}).get("run") or {}
    wanted = {"--run.root": str(run.parent.parent), "--run.group": run.parent.name, "--run.name": run.name}
    differs = {
        "--run.root": Path(str(saved.get("root") or "runs")).resolve() != run.parent.parent.resolve(),
        "--run.group": saved.get("group") != run.parent.name,
        "--run.name": saved.get("name") != run.name,
    }
    return [
        f"{option} {shlex.quote(wanted[option])}"
        for option in PLACE_OPTIONS
        if differs[option] and not option_values(rest, option)
    ]


def outside_any_run(command: str, ckpt: str) -> str:
    """The refusal of ``command`` (``python -m lightning_hw fit``...) given, without ``--config``, a checkpoint that lies in no run."""
    what = "start a new run from it with" if command.endswith(" fit") else "run"
    return (
        f"{ckpt} lies in no run (runs/<group>/<name>/checkpoints/), so the data and net it was trained with are "
        f"unknown; {what}: {command} --config <the config it was trained with> --ckpt_path {shlex.quote(ckpt)}"
    )


def no_run_config(ckpt: str) -> str:
    """The refusal of a command given a run's checkpoint whose run has no ``config.yaml`` (and no ``--config``)."""
    return (
        f"no config.yaml in the run of {ckpt}, so the data and net it was trained with are unknown; "
        "pass --config with the config it was trained with"
    )


def configures_the_model(args: list[str]) -> bool:
    """Whether the command line sets the task or the data itself (then the parser says what is missing)."""
    return any(a.split("=", 1)[0] in ("--model", "--data") or a.startswith(("--model.", "--data.")) for a in args)


def _without_ckpt_path(args: list[str]) -> list[str]:
    """``args`` less every ``--ckpt_path`` option and its value."""
    taken = set()
    for i, _ in option_values(args, "--ckpt_path"):
        inline = i < len(args) and args[i].startswith("--ckpt_path=")
        taken |= {i} if inline else {i - 1, i}
    return [a for i, a in enumerate(args) if i not in taken]
