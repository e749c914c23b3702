"""Read W&B's own run files (``run-<id>.wandb``) back, record by record, for tests.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
the LevelDB log format (32 KiB blocks of chunks: CRC-32 of type byte + data, little-endian
length, type FULL/FIRST/MIDDLE/LAST), each record a ``wandb_internal_pb2.Record`` protobuf.
The wandb package no longer ships a Python reader (its Go core writes the file), so the
framing is decoded here and every chunk's checksum is verified; the records themselves are
parsed by wandb's own protobuf classes.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    """Every record of one ``.wandb`` file, in order."""
    data = Path(path).read_bytes()
    if len(data) <= HEADER:
        return
    magic, version = struct.unpack("<HB", data[4:7])
    assert data[:4] == b":W&B" and magic == 0xBEE1 and version == 0, f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # the tail of a block too small for a chunk header is padding
            pos += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += room
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) == checksum, f"bad checksum at byte {pos} of {path}"
        pos += HEADER + length
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        else:
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        yield record


def run_files(run_dir: Path) -> list[Path]:
    """The ``.wandb`` files of a run directory (one per session; a resumed run has several)."""
    return sorted(Path(run_dir).glob("wandb/*-run-*/run-*.wandb"))


def wait_for_exit(path: Path, timeout: float = 60.0) -> Path:
    """Wait until the run file ends with its ``exit`` record, and return it.

    ``run.finish()`` returns once W&B's core process has the run's last record, but in a
    process that goes on (a test) the core writes the file out a moment later.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            kinds = [r.WhichOneof("record_type") for r in records(path)]
        except AssertionError:  # a chunk still being written
            kinds = []
        if kinds and kinds[-1] == "exit":
            return Path(path)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.2)


def history(path: Path) -> list[dict]:
    """The logged history rows (``run.log``), values decoded from JSON."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({_key(item): json.loads(item.value_json) for item in record.history.item})
    return rows


def config(path: Path) -> dict:
    """The run config as it stands at the end of the file (updates applied in order)."""
    return _as_it_stands(path, "config")


def summary(path: Path) -> dict:
    """The run summary as it stands at the end of the file (updates applied in order)."""
    return _as_it_stands(path, "summary")


def _as_it_stands(path: Path, part: str) -> dict:
    """``config`` or ``summary``: the run record's, then each ``config``/``summary`` record's updates in order."""
    values: dict = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        items = getattr(record.run, part).update if kind == "run" else getattr(record, part).update if kind == part else []
        for item in items:
            values[_key(item)] = json.loads(item.value_json)
    return values


def tags(path: Path) -> list[str]:
    """The run's tags as they stand at the end of the file (a tag set after start is a later ``run`` record)."""
    found: list[str] = []
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            found = list(record.run.tags)
    return found


def run_record(path: Path) -> wandb_internal_pb2.RunRecord:
    """The run's own record (id, project, group, name, tags, job type, notes)."""
    return next(r.run for r in records(path) if r.WhichOneof("record_type") == "run")


def artifacts(path: Path) -> list[wandb_internal_pb2.ArtifactRecord]:
    """The artifacts the run logged."""
    return [r.artifact for r in records(path) if r.WhichOneof("record_type") == "artifact"]


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)
