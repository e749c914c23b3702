"""Checkpoints are loaded with ``weights_only=True``: a file that would run code is refused."""

from __future__ import annotations

import fractions
import pathlib

import pytest
import torch

from lightning_hw.checkpoints import load_checkpoint
from lightning_hw.cli import main
from lightning_hw.errors import ConfigError


class TouchOnLoad:
    """Unpickling this calls ``Path.touch(marker)``: any callable could stand here (``os.system``...)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _with_extra(trained_run, workdir, name: str, extra: object) -> pathlib.Path:
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["extra"] = extra
    path = workdir / name
    torch.save(checkpoint, path)
    return path


def test_checkpoint_that_would_run_code_is_refused(tiny_args, workdir, trained_run, capsys):
    marker = workdir / "code-ran"
    evil = _with_extra(trained_run, workdir, "evil.ckpt", TouchOnLoad(marker))
    torch.load(evil, weights_only=False)  # the fixture is truly dangerous: an unsafe load runs it
    assert marker.exists()
    marker.unlink()

    for args in (tiny_args("validate", "--ckpt_path", str(evil)), ["export", "--ckpt_path", str(evil)]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2
        assert err[-1].startswith(f"error: refused to load {evil}: it holds Python objects (")
        assert err[-1].endswith("if you trust where the file came from, add --weights_only false")
        assert not marker.exists()


def test_unsafe_load_happens_only_on_the_explicit_flag(tiny_args, workdir, trained_run, capsys):
    # A harmless object that is still beyond weights_only (so the default refuses it).
    odd = _with_extra(trained_run, workdir, "odd.ckpt", fractions.Fraction(1, 3))
    with pytest.raises(SystemExit):
        main(tiny_args("validate", "--ckpt_path", str(odd)))
    assert "error: refused to load" in capsys.readouterr().err
    main(tiny_args("validate", "--ckpt_path", str(odd), "--weights_only", "false"))
    assert "val/acc" in capsys.readouterr().out


def test_random_bytes_are_not_called_unsafe(workdir):
    """Advising --weights_only false for a file that is no checkpoint at all would be wrong."""
    noise = workdir / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ConfigError, match=r"cannot read checkpoint .*noise.ckpt: the file is truncated or not a PyTorch") as err:
        load_checkpoint(noise)
    assert "--weights_only" not in str(err.value)


def _damaged_zip_checkpoint(path: pathlib.Path, trained_run) -> pathlib.Path:
    """A whole zip archive from torch.save whose pickle (``data.pkl``) is garbage after its first bytes."""
    import zipfile

    with zipfile.ZipFile(trained_run / "checkpoints" / "last.ckpt") as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[:2] + bytes(range(250, 256)) * 40 if item.filename.endswith("data.pkl") else data)
    return path


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 8,
        b"\x80" + bytes(range(255, 0, -1)) * 8,  # starts like a pickle (protocol byte 0x80)
        b"\x80\x02" + bytes(range(13, 256)) * 8,  # torch: "Unsupported operand 13", "weights only load failed"
        "zip",
    ],
    ids=["noise", "pickle-byte", "pickle-protocol-2", "zip-with-damaged-pickle"],
)
def test_random_bytes_through_the_cli_get_no_unsafe_advice(tiny_args, workdir, trained_run, capsys, content):
    """Advising --weights_only false for a file that is no (whole) checkpoint would be wrong advice."""
    from reliability_helpers import error_of

    noise = workdir / "noise.ckpt"
    if content == "zip":
        _damaged_zip_checkpoint(noise, trained_run)
    else:
        noise.write_bytes(content)
    code, line = error_of(tiny_args("validate", "--ckpt_path", str(noise)), capsys)
    assert code == 2
    assert line.startswith(f"error: cannot read checkpoint {noise}: the file is truncated or not a PyTorch checkpoint")
    assert "weights_only" not in line
    assert not (workdir / "runs").exists()


def test_damaged_checkpoint_is_one_line(workdir, trained_run):
    damaged = workdir / "damaged.ckpt"
    damaged.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes()[:3000])
    with pytest.raises(ConfigError, match=r"cannot read checkpoint .*damaged.ckpt: the file is truncated or not a"):
        load_checkpoint(damaged)
