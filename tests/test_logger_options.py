"""Options of the run's loggers given as LightningCLI names them: one line that says where they go."""

from __future__ import annotations

from conftest import QUICKSTART

from test_report_cli import cli


def test_a_logger_option_given_as_lightning_names_it_points_at_the_run_option(workdir):
    """`--trainer.logger.init_args.project x` (LightningCLI's way to set the W&B project) said
    "--trainer.logger: expected bool, got NestedArg(key='project', val='x')": jsonargparse's
    internals, and no word of --run.project, where the run's W&B settings are given."""
    for option, value, line in (
        ("--trainer.logger.init_args.project", "x", "use --run.project x"),
        ("--trainer.logger.offline", "true", "use --run.wandb offline"),
        (
            "--trainer.logger.init_args.log_model", "all",
            "give them with --run.project, --run.tags, --run.notes, --run.job_type, --run.wandb",
        ),
    ):
        done = cli("fit", "--config", str(QUICKSTART), option, value, cwd=workdir)
        assert done.returncode == 2, done.stderr
        (error,) = done.stderr.strip().splitlines()
        key = option.rsplit(".", 1)[1]
        assert "NestedArg" not in error and error.startswith(f"error: --trainer.logger option {key}={value}: the run's loggers"), error
        assert line in error, error
    # Another class-typed option given before its class: the class is asked for first.
    done = cli("fit", "--config", str(QUICKSTART), "--trainer.profiler.init_args.filename", "prof", cwd=workdir)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --trainer.profiler option filename=prof: no class is named yet to take it; "
        "name the class first: --trainer.profiler CLASS --trainer.profiler.init_args.filename prof"
    ]
    assert not (workdir / "runs").exists()
