"""A full disk, for real: a store on a small tmpfs the test mounts. A stage that runs out of room (SQLite's "database
or disk is full" while writing rows, ENOSPC while copying a blob) ends with one line naming the store and the room
it needs, exit 1; the store still verifies; once space is freed the same command finishes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lettingo_cli.cli import app
from tests.conftest import write_ml100k

DISK_BYTES = 24 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a small file system here ({done.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all of the disk's free room but `leave` bytes."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def run(store: Path, *args: str):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"LETTINGO_STORE": str(store)})
    return result.exit_code, result.stdout, result.stderr


def test_a_full_disk_ends_with_one_line_and_the_stage_finishes_once_space_is_freed(small_disk, tmp_path):
    store = small_disk / "lettingo.db"
    data = write_ml100k(tmp_path / "ml", n_users=15, per_user=25)
    assert run(store, "ingest", "movielens", data)[0] == 0
    assert run(store, "split", "--test-users", "5", "--recent", "0", "--targets", "2")[0] == 0

    # SQLite runs out of room while gen writes its rows
    filler = fill(small_disk, leave=4096)
    code, out, err = run(store, "gen", "--users", "all", "--generator", "history-text", "--name", "ht")
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1, err
    assert f"the disk of the store {store} is full" in lines[0] and "free at least" in lines[0]
    filler.unlink()
    assert run(store, "store", "verify")[0] == 0
    code, out, err = run(store, "gen", "--users", "all", "--generator", "history-text", "--name", "ht")
    assert code == 0 and out.strip() == "profiles:ht@v1", err

    # a blob copy runs out of room: fit's weights (several MB) cannot be stored
    weights = 6 * 1024 * 1024
    filler = fill(small_disk, leave=2 * 1024 * 1024)
    code, out, err = run(store, "fit")
    lines = err.strip().splitlines()
    assert code == 1 and out == "", err
    assert "is full" in lines[-1] and f"{store}" in lines[-1] and "free at least" in lines[-1]
    needed_mb = float(lines[-1].split("free at least ")[1].split(" MB")[0].replace(",", ""))
    assert needed_mb * 1e6 > weights  # the size of the file it was copying
    assert not any(os.scandir(store.with_name("lettingo.blobs") / "tmp"))  # no half-written blob left
    filler.unlink()
    assert run(store, "store", "verify")[0] == 0
    code, out, err = run(store, "fit")
    assert code == 0 and out.strip() == "predictor:ml-reader@v1", err
