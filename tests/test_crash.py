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


def _kill_at(command: list[str], delay: float) -> int | None:
    """Start a command, kill -9 it after `delay` seconds (unless it finished first); its return code."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    return process.returncode


def test_kill_9_at_random_points_of_score_and_pair_then_rerun_gives_the_same_artifacts(tmp_path, tiny_model):
    """score (resumable in chunks) and pair (one transaction), each killed at seeded random moments and rerun,
    end with the artifacts an uninterrupted run makes, and the store verifies after every kill."""
    import random
    import shutil

    from tests.conftest import write_ml100k

    folder = write_ml100k(tmp_path / "ml", n_users=40, per_user=25)
    model = f"gguf:{tiny_model.gguf}"

    def lettingo(store: Path, *args: str) -> list[str]:
        return ["lettingo", *args, "--store", str(store)]

    score = ("score", "--predictor", f"llm:{model}", "--name", "s")
    pair = ("pair", "scores:s", "--rule", "margin", "--margin", "0", "--name", "p")
    prepared = tmp_path / "prepared.db"
    for args in (("ingest", "movielens", str(folder)), ("split",),
                 ("gen", "--users", "all", "--generator", model, "--n", "4", "--max-tokens", "8")):  # fmt: skip
        subprocess.run(lettingo(prepared, *args), check=True, capture_output=True)
    Store(prepared).db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def prepare(store: Path) -> None:  # the same dataset, split and profiles in a store of its own
        shutil.copyfile(prepared, store)

    reference = tmp_path / "reference.db"
    prepare(reference)
    took = {}
    for args in (score, pair):
        started = time.monotonic()
        subprocess.run(lettingo(reference, *args), check=True, capture_output=True)
        took[args] = time.monotonic() - started
    expected = {ref: Store(reference).resolve(ref).content_hash for ref in ("scores:s", "pairs:p")}

    rng = random.Random(14)
    kills = 0
    for attempt in range(3):
        killed = tmp_path / f"killed-{attempt}.db"
        prepare(killed)
        for args in (score, pair):
            code = _kill_at(lettingo(killed, *args), rng.uniform(0.2, 0.9) * took[args])  # before it would end
            kills += code == -signal.SIGKILL
            report = Store(killed).verify()
            assert report["ok"], report
            rerun = subprocess.run(lettingo(killed, *args), capture_output=True, text=True)
            assert rerun.returncode == 0, rerun.stderr
        store = Store(killed)
        assert {ref: store.resolve(ref).content_hash for ref in expected} == expected
        assert store.db.execute("SELECT COUNT(*) FROM artifacts WHERE status = 'pending'").fetchone()[0] == 0
    assert kills >= 2  # the moments were not all after the commands had finished
