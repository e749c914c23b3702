"""Options of the run's loggers given as LightningCLI names them: one line that says where they go."""

from __future__ import annotations

from conftest import QUICKSTART

from reliability_helpers import error_of


def test_a_logger_option_given_as_lightning_names_it_points_at_the_run_option(workdir, capsys):
    """`--trainer.logger.init_args.project x` (LightningCLI's way to set the W&B project) said
    "--trainer.logger: expected bool, got NestedArg(key='project', val='x')": jsonargparse's
    internals, and no word of --run.project, where the run's W&B settings are given."""
    for option, value, line in (
        ("--trainer.logger.init_args.project", "x", "use --run.project x"),
        ("--trainer.logger.offline", "true", "use --run.wandb offline"),
        ("--trainer.logger.init_args.save_dir", "elsewhere", "use --run.root elsewhere"),
        (
            "--trainer.logger.init_args.log_model", "all",
            "give them with --run.project, --run.tags, --run.notes, --run.job_type, --run.wandb, --run.root",
        ),
    ):
        code, error = error_of(["fit", "--config", str(QUICKSTART), option, value], capsys)
        assert code == 2, error
        key = option.rsplit(".", 1)[1]
        assert "NestedArg" not in error and error.startswith(f"error: --trainer.logger option {key}={value}: the run's loggers"), error
        assert line in error, error
    # Another class-typed option given before its class: the class is asked for first.
    assert error_of(["fit", "--config", str(QUICKSTART), "--trainer.profiler.init_args.filename", "prof"], capsys) == (2,
        "error: --trainer.profiler option filename=prof: no class is named yet to take it; "
        "name the class first: --trainer.profiler CLASS --trainer.profiler.init_args.filename prof"
    )
    assert not (workdir / "runs").exists()


def test_a_bad_value_of_a_named_class_option_is_not_said_to_lack_its_class(workdir, capsys):
    """`--data.init_args.splits 0.5` (the config names the data class) said "no class is named yet to
    take it; name the class first: --data.init_args.splits CLASS --data.init_args.splits.init_args.splits 0.5",
    an option that does not exist; the value's type is what is wrong, as it said before."""
    for option, value, line in (
        ("--data.init_args.splits", "0.5", "error: --data.init_args.splits: expected tuple, got 0.5"),
        ("--model.init_args.net.init_args.hidden", "5", "error: --model.init_args.net.init_args.hidden: expected list, got 5"),
    ):
        code, error = error_of(["fit", "--config", str(QUICKSTART), option, value], capsys)
        assert code == 2, error
        assert error.startswith(line) and "no class is named" not in error, error
    assert not (workdir / "runs").exists()
