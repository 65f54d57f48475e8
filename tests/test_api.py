"""The README's Python API example, run verbatim on a data file the test writes, and the API and the command line
finding each other's runs."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import lettingo_cli as lg
from lettingo_cli.errors import ArtifactNotFound, UsageError
from tests.conftest import write_ratings_csv

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("### Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def ratings(users: int = 24, per_user: int = 26, seed: int = 3) -> list[tuple]:
    """Users with a taste: each likes one genre and dislikes another, so a profile has something to say."""
    rng = random.Random(seed)
    genres = ["Comedy", "Drama", "Horror", "Western"]
    rows = []
    for user in range(users):
        loves, hates = rng.sample(genres, 2)
        for n, item in enumerate(rng.sample(range(80), per_user)):
            genre = genres[item % 4]
            stars = 5 if genre == loves else 1 if genre == hates else rng.choice([2, 3, 4])
            rows.append((f"u{user}", str(item), stars, 1000 + n, f"Film {item} | {genre}"))
    return rows


def test_the_readme_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_ratings_csv(tmp_path / "ratings.csv", ratings())
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("eval:") and len(printed) == 1 + 6  # the eval, then the 6 test users' profiles
    store = lg.open_store(tmp_path / "lettingo.db", create=False)
    evaluation = store.resolve(printed[0].split()[0])
    rows = list(store.rows(store.get(evaluation.params["scores"]), "scores"))  # the predictions, counted here
    assert evaluation.report["users"] == 6 and evaluation.report["n"] == len(rows) == 6 * 4
    assert evaluation.report["accuracy"] == sum(row["predicted"] == row["truth"] for row in rows) / len(rows)
    assert printed[0].split()[1] == str(round(evaluation.report["accuracy"], 3))  # what the example printed
    assert store.list(kind="predictor")  # fitted once, kept for the next score or eval


def test_the_api_and_the_cli_find_each_others_runs(lettingo, store_path, tmp_path):
    write_ratings_csv(tmp_path / "ratings.csv", ratings())
    store = lg.open_store(store_path)
    dataset = lg.ingest(store, "csv", tmp_path / "ratings.csv", rating="stars", time="when", title="name")
    assert dataset.ref == "dataset:ratings@v1" and dataset.counts["users"] == 24
    split = lg.split(store, recent=0, targets=4, test_users=0.25)  # None: the latest dataset
    again = lettingo("split", "--recent", "0", "--targets", "4", "--test-users", "0.25")
    assert again.exit_code == 0 and again.stdout == f"{split.ref}\n" and "already" in again.stderr
    profiles = lg.gen(store, split.ref, users="train", generator=["stats-text", "history-text"])
    assert {row["generator"] for row in lg.rows(store, profiles)} == {"stats-text", "history-text"}
    first = lg.gen(store, split, users="train:3", generator="stats-text")  # the first 3 train users by id
    assert sorted({row["user_id"] for row in lg.rows(store, first)}) == sorted(profiles.params["users"])[:3]
    assert len(list(lg.rows(store, split, "split_interactions"))) == 24 * 26  # 4 targets + 22 history rows a user
    with pytest.raises(UsageError, match="--n, --max-tokens and --history must be"):
        lg.gen(store, split, n=0)
    with pytest.raises(UsageError, match="tables"):
        lg.rows(store, profiles, "pairs")
    with pytest.raises(ArtifactNotFound):
        lg.pair(store)  # no scores yet
