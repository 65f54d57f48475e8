"""kill -9 in the middle of an ingest leaves a consistent store: no partial artifact, verify passes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from lettingo_cli.store import Store

ROWS = 300_000


def write_big_csv(path: Path) -> Path:
    with open(path, "w") as handle:
        handle.write("user,item,stars,when\n")
        for row in range(ROWS):
            handle.write(f"u{row % 5000},i{row % 7919},{1 + row % 5},{1_600_000_000 + row}\n")
    return path


def test_kill_9_during_ingest_write_leaves_no_partial_artifact(tmp_path):
    big = write_big_csv(tmp_path / "big.csv")
    store_path = tmp_path / "lettingo.db"
    small = tmp_path / "small.csv"
    small.write_text("user,item,stars,when\na,x,5,1\nb,x,1,2\n")
    ingest = [
        "lettingo",
        "ingest",
        "csv",
        "--user",
        "user",
        "--item",
        "item",
        "--rating",
        "stars",
        "--time",
        "when",
        "--store",
        str(store_path),
    ]
    subprocess.run([*ingest, str(small)], check=True, capture_output=True)  # one finished artifact to keep

    wal = store_path.with_name(store_path.name + "-wal")
    start_size = wal.stat().st_size if wal.exists() else 0
    process = subprocess.Popen([*ingest, str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # The rows go in as one transaction; once its pages spill into the WAL, the write is under way.
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > start_size + 1_000_000:
            break
        time.sleep(0.005)
    assert process.poll() is None, "ingest finished before it could be killed; make the file bigger"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    store = Store(store_path)
    assert [a.ref for a in store.list()] == ["dataset:small@v1"]
    assert store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == 1
    assert store.db.execute("SELECT COUNT(*) FROM interactions").fetchone()[0] == 2
    report = store.verify()
    assert report["ok"] and report["pending"] == 0, report
    store.close()

    # and the same command then completes normally
    finished = subprocess.run([*ingest, str(big)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "dataset:big@v1\n"
    assert Store(store_path).resolve("big").counts["interactions"] == ROWS
