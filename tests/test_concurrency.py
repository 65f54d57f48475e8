"""Several real lettingo processes writing one real store file at once: every one succeeds, waiting its turn."""

from __future__ import annotations

import os
import subprocess

from lettingo_cli.store import Store
from tests.conftest import write_ml100k

WRITERS = 6


def start(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["lettingo", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_short_writers_all_succeed(tmp_path):
    env = {**os.environ, "LETTINGO_STORE": str(tmp_path / "shared.db")}
    folder = write_ml100k(tmp_path / "ml", n_users=40, per_user=30)
    subprocess.run(["lettingo", "ingest", "movielens", str(folder)], env=env, check=True, capture_output=True)
    processes = [start(env, "split", "--seed", str(i), "--name", f"c{i}") for i in range(WRITERS)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0] * WRITERS, [err for _, _, err in results]
    assert sorted(out.strip() for _, out, _ in results) == sorted(f"split:c{i}@v1" for i in range(WRITERS))
    store = Store(tmp_path / "shared.db")
    assert len(store.list(kind="split")) == WRITERS and store.verify()["ok"]


def test_a_long_resumable_stage_next_to_short_ones(tmp_path, tiny_model):
    env = {**os.environ, "LETTINGO_STORE": str(tmp_path / "shared.db")}
    folder = write_ml100k(tmp_path / "ml", n_users=24, per_user=30)
    subprocess.run(["lettingo", "ingest", "movielens", str(folder)], env=env, check=True, capture_output=True)
    subprocess.run(["lettingo", "split", "--name", "base"], env=env, check=True, capture_output=True)
    generator = f"gguf:{tiny_model.gguf}"
    long = start(env, "gen", "--split", "base", "--users", "all", "--generator", generator, "--n", "3",
                 "--max-tokens", "24", "--name", "long")  # fmt: skip
    short = [start(env, "split", "--seed", str(i), "--name", f"s{i}") for i in range(1, WRITERS)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in [long, *short]]
    assert [code for code, _, _ in results] == [0] * WRITERS, [err for _, _, err in results]
    store = Store(tmp_path / "shared.db")
    assert store.resolve("profiles:long").count == 24 * 3
    assert len(store.list(kind="split")) == WRITERS and store.verify()["ok"]
