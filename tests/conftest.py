"""Shared fixtures: small data sets written in each real format, and a runner for the real CLI."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lettingo_cli.cli import app

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


@dataclass
class Invocation:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "lettingo.db"


@pytest.fixture
def lettingo(store_path: Path):
    """Run `lettingo ARGS` in-process through Typer's runner, against the test's store."""

    def run(*args: str, input: str | None = None) -> Invocation:
        result = CliRunner().invoke(app, [str(a) for a in args], input=input, env={"LETTINGO_STORE": str(store_path)})
        return Invocation(result.exit_code, result.stdout, result.stderr)

    return run


def write_ml100k(folder: Path, n_users: int = 12, n_items: int = 40, per_user: int = 25, seed: int = 1) -> Path:
    """A MovieLens 100K-format folder: u.data (tab-separated), u.item (latin-1, genre flags), u.user, u.genre."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)), encoding="latin-1")
    items = []
    for item in range(1, n_items + 1):
        flags = ["0"] * len(GENRES)
        flags[1 + item % 18] = "1"
        title = f"Movie {item} (19{50 + item % 50})" if item != 3 else "Café Société (1995)"
        items.append(f"{item}|{title}|01-Jan-19{50 + item % 50}||http://example.org/{item}|" + "|".join(flags))
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.user").write_text(
        "".join(f"{u}|{20 + u}|{'MF'[u % 2]}|writer|0{u:04d}\n" for u in range(1, n_users + 1)), encoding="latin-1"
    )
    lines = []
    for user in range(1, n_users + 1):
        chosen = rng.sample(range(1, n_items + 1), per_user)
        for position, item in enumerate(chosen):
            lines.append(f"{user}\t{item}\t{rng.randint(1, 5)}\t{880000000 + user * 10000 + position * 60}")
    rng.shuffle(lines)
    (folder / "u.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_ml_csv(folder: Path) -> Path:
    """A MovieLens CSV-release folder (ratings.csv with half stars, movies.csv with quoted titles)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Unrated Film (2001),(no genres listed)\n",
        encoding="utf-8",
    )
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.5,964982703\n1,2,3.5,964981247\n2,1,0.5,964982224\n",
        encoding="utf-8",
    )
    return folder


def write_amazon(folder: Path) -> tuple[Path, Path]:
    """Amazon 2018-format reviews (with one exact duplicate) and metadata (one HTML-fragment title)."""
    folder.mkdir(parents=True, exist_ok=True)
    reviews = [
        {"overall": 5.0, "reviewerID": "U1", "asin": "A1", "unixReviewTime": 1400000000, "reviewText": "great"},
        {"overall": 2.0, "reviewerID": "U1", "asin": "A2", "unixReviewTime": 1400000100, "reviewText": "meh"},
        {"overall": 4.0, "reviewerID": "U2", "asin": "A1", "unixReviewTime": 1400000200, "reviewText": "good"},
        {"overall": 3.0, "reviewerID": "U2", "asin": "A3", "unixReviewTime": 1400000300, "reviewText": "ok"},
    ]
    reviews.append(dict(reviews[0]))  # an exact duplicate, as in the 2018 release
    review_path = folder / "Tiny_Category_5.json.gz"
    with gzip.open(review_path, "wt", encoding="utf-8") as handle:
        for review in reviews:
            handle.write(json.dumps(review) + "\n")
    meta = [
        {"asin": "A1", "title": "Clean Title &amp; More", "brand": "Acme", "category": ["Cat", "Sub"]},
        {
            "asin": "A2",
            "title": '<span class="a-size-medium a-color-secondary"',
            "brand": "Reason Foundation",
            "category": ["Magazine Subscriptions", "Economics &amp; Economic Theory"],
            "description": ["<p>REASON is edited for <b>people</b> interested in economic issues.</p>"],
        },
    ]
    meta_path = folder / "meta_Tiny_Category.json.gz"
    with gzip.open(meta_path, "wt", encoding="utf-8") as handle:
        for record in meta:
            handle.write(json.dumps(record) + "\n")
    return review_path, meta_path


def write_ratings_csv(path: Path, rows: list[tuple], header=("user", "item", "stars", "when", "name")) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@dataclass
class TinyModel:
    hf_dir: Path
    gguf: Path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> TinyModel:
    """A 2-layer Llama with a tokenizer trained here, as an HF directory and as a GGUF (built once per run)."""
    from bench.tiny_model import build_tiny_model, convert_to_gguf

    folder = tmp_path_factory.mktemp("tiny-model")
    hf_dir = build_tiny_model(folder / "hf")
    return TinyModel(hf_dir=hf_dir, gguf=convert_to_gguf(hf_dir, folder / "tiny.gguf"))


@pytest.fixture
def split_store(lettingo, tmp_path):
    """A store with a small MovieLens-format dataset and its split (15 users: 5 test, 10 train)."""
    folder = write_ml100k(tmp_path / "ml", n_users=15, per_user=25)
    assert lettingo("ingest", "movielens", folder).exit_code == 0
    assert lettingo("split", "--test-users", "5").exit_code == 0
    return lettingo


@pytest.fixture
def po_store(lettingo, tmp_path):
    """MovieLens-format data (15 users: 5 test, 10 train) split without recent history (the profile-only
    protocol), 2 targets per user: split `po`."""
    folder = write_ml100k(tmp_path / "ml", n_users=15, per_user=25)
    assert lettingo("ingest", "movielens", folder).exit_code == 0
    made = lettingo("split", "--test-users", "5", "--recent", "0", "--targets", "2", "--name", "po")
    assert made.exit_code == 0, made.stderr
    return lettingo


def process_tree(pid: int) -> list[int]:
    """A process and every process it started, however deep (a launcher's workers run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def kill_at_first_checkpoint(command: list[str], store_path: Path, wait_s: float = 300) -> None:
    """Start a training command, kill -9 it and every process it started (a launcher's workers too) as soon as the
    store holds a checkpoint of its pending adapter."""
    import os
    import sqlite3

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and process.poll() is None:
        conn = sqlite3.connect(store_path, timeout=30)
        saved = conn.execute("SELECT COUNT(*) FROM artifact_files WHERE path LIKE 'checkpoints/%'").fetchone()[0]
        conn.close()
        if saved:
            break
        time.sleep(0.01)
    assert process.poll() is None, "training finished before it could be killed"
    tree = process_tree(process.pid)
    for pid in tree:  # all at once, as a machine that dies takes every process with it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served_gguf(path: Path, alias: str = "tiny"):
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 serving one GGUF; yields its /v1 address."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            alias,
            "--n_ctx",
            "2048",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail("llama_cpp.server exited at start")
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def openai_server(tiny_model):
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1, serving the tiny GGUF."""
    with served_gguf(tiny_model.gguf) as url:
        yield url


def run_experiment(script: str, tmp_path: Path, tiny_model, name: str, n_users: int, **knobs: str):
    """experiments/SCRIPT on a MovieLens-format fixture of n_users users with the tiny model: the knobs every such
    test shares (data, store, results, 6 train users with profiles, 4 test users, 2 targets, 3 profiles per train
    user and 2 per test user, 12-token profiles, the tiny model as BASE, 2 DPO steps) plus
    the test's own. Returns (the finished process, the results folder, the store's path); the run must succeed."""
    data = write_ml100k(tmp_path / "ml", n_users=n_users, n_items=60, per_user=45)
    results, store = tmp_path / "results", tmp_path / "store" / "lettingo.db"
    env = {
        **os.environ,
        "DATA": str(data),
        "STORE": str(store),
        "NAME": name,
        "RESULTS": str(results),
        "USERS": "6",
        "TEST_USERS": "4",
        "TARGETS": "2",
        "N": "3",
        "N_TEST": "2",
        "MAX_TOKENS": "12",
        "BASE": str(tiny_model.hf_dir),
        "DPO_ARGS": "--max-steps 2 --lora-r 4 --lr 1e-3 --max-length 4096",
        **knobs,
    }
    command = ["bash", str(Path(__file__).resolve().parents[1] / "experiments" / script)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, results, store


def experiment_refs(results: Path, tag: str) -> dict[str, str]:
    """ROLE -> reference of every artifact an experiment's report read (its TAG.refs file)."""
    return dict(line.split("=", 1) for line in (results / f"{tag}.refs").read_text().splitlines() if "=" in line)
