"""Ingest through the real CLI into a real store, from fixtures written in each supported format."""

from __future__ import annotations

import gzip
import json
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lettingo_cli.store import Store
from tests.conftest import write_amazon, write_ml100k, write_ml_csv, write_ratings_csv


def store_rows(store_path, sql):
    conn = sqlite3.connect(store_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_movielens_100k(lettingo, store_path, tmp_path):
    folder = write_ml100k(tmp_path / "ml-tiny", n_users=12, n_items=40, per_user=25)
    result = lettingo("ingest", "movielens", folder)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "dataset:ml-tiny@v1\n"  # named after its folder; stdout carries only the ref
    artifact = Store(store_path).resolve("ml-tiny")
    assert artifact.counts["users"] == 12 and artifact.counts["items"] == 40
    assert artifact.counts["interactions"] == 300
    title, text, attributes = store_rows(store_path, "SELECT title, text, attributes FROM items WHERE item_id = '3'")[0]
    assert title == "Café Société (1995)"  # u.item is latin-1
    assert text == "Café Société (1995) | Children's"
    assert json.loads(attributes) == {"genres": ["Children's"], "year": 1995}
    (attributes,) = store_rows(store_path, "SELECT attributes FROM users WHERE user_id = '2'")[0]
    assert json.loads(attributes)["age"] == 22
    # seq orders each user's interactions by time
    times = [row[0] for row in store_rows(store_path, "SELECT ts FROM interactions WHERE user_id = '5' ORDER BY seq")]
    assert times == sorted(times) and len(times) == 25


def test_movielens_csv_release(lettingo, store_path, tmp_path):
    folder = write_ml_csv(tmp_path / "ml-latest-tiny")
    result = lettingo("ingest", "movielens", folder, "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert {key: payload[key] for key in ("kind", "name", "version", "count")} == {
        "kind": "dataset",
        "name": "ml-latest-tiny",
        "version": 1,
        "count": 3,
    }
    assert payload["counts"]["items"] == 3  # an unrated movie is still an item
    rows = store_rows(store_path, "SELECT item_id, title, text FROM items ORDER BY item_id")
    assert rows[1] == ("2", "American President, The (1995)", "American President, The (1995) | Comedy, Drama, Romance")
    assert rows[2][2] == "Unrated Film (2001)"
    assert store_rows(store_path, "SELECT rating FROM interactions WHERE user_id='2'") == [(0.5,)]


def test_amazon_dedups_and_describes_html_titles(lettingo, store_path, tmp_path):
    reviews, meta = write_amazon(tmp_path)
    result = lettingo("ingest", "amazon", reviews, "--meta", meta)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "dataset:Tiny_Category_5@v1"
    assert "dropped 1 exact duplicate reviews" in result.stderr
    assert store_rows(store_path, "SELECT COUNT(*) FROM interactions") == [(4,)]
    items = dict(store_rows(store_path, "SELECT item_id, text FROM items"))
    assert items["A1"] == "Clean Title & More"
    assert items["A2"] == (
        "Reason Foundation | Economics & Economic Theory | REASON is edited for people interested in economic issues."
    )
    assert items["A3"] == "item A3"  # no metadata for it


def test_generic_csv_and_jsonl(lettingo, store_path, tmp_path):
    csv_path = write_ratings_csv(
        tmp_path / "shop.csv",
        [("alice", "x1", "5", "2024-01-02T03:04:05", "Blue Kettle"), ("bob", "x1", "2", "1704164645", "Blue Kettle")],
    )
    result = lettingo(
        "ingest",
        "csv",
        csv_path,
        "--user",
        "user",
        "--item",
        "item",
        "--rating",
        "stars",
        "--time",
        "when",
        "--title",
        "name",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "dataset:shop@v1"
    assert store_rows(store_path, "SELECT ts FROM interactions ORDER BY user_id") == [(1704164645,), (1704164645,)]
    assert store_rows(store_path, "SELECT title FROM items") == [("Blue Kettle",)]

    jsonl = tmp_path / "events.jsonl.gz"
    with gzip.open(jsonl, "wt") as handle:
        handle.write(json.dumps({"u": 1, "i": "b", "r": 4, "t": 10, "desc": "A book"}) + "\n")
        handle.write(json.dumps({"u": 2, "i": "b", "r": 1.5, "t": 11, "desc": "A book"}) + "\n")
    result = lettingo(
        "ingest", "jsonl", jsonl, "--user", "u", "--item", "i", "--rating", "r", "--time", "t", "--text", "desc"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "dataset:events@v1"


def test_reingest_is_cached_and_identical_content_keeps_its_version(lettingo, tmp_path):
    folder = write_ml100k(tmp_path / "ml")
    first = lettingo("ingest", "movielens", folder)
    cached = lettingo("ingest", "movielens", folder)
    forced = lettingo("ingest", "movielens", folder, "--force")
    assert first.stdout == cached.stdout == forced.stdout == "dataset:ml@v1\n"
    assert "already ingested" in cached.stderr


def assert_one_clear_line(result, *fragments):
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lettingo: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_inputs_name_file_and_line_and_leave_the_store_unchanged(lettingo, store_path, tmp_path):
    good = write_ml100k(tmp_path / "good")
    assert lettingo("ingest", "movielens", good).exit_code == 0
    before = (
        store_rows(store_path, "SELECT COUNT(*) FROM artifacts")[0][0],
        store_rows(store_path, "SELECT COUNT(*) FROM interactions"),
    )

    bad = write_ml100k(tmp_path / "bad")
    data = (bad / "u.data").read_text().splitlines()
    cases = []
    (bad / "u.data").write_text("\n".join(data[:3] + ["7\t3\tfive\t880000000"] + data[3:]) + "\n")
    cases.append((["movielens", bad], ("u.data:4", "rating 'five' is not a number")))
    wrong_columns = tmp_path / "cols"
    write_ml100k(wrong_columns)
    (wrong_columns / "u.data").write_text("1\t2\t3\t880000000\n1\t2\t3\n")
    cases.append((["movielens", wrong_columns], ("u.data:2", "expected 4 tab-separated columns")))
    encoding = tmp_path / "enc.csv"
    encoding.write_bytes(b"user,item,stars,when\nu1,i1,4,100\nu\xe9,i2,3,200\n")
    cases.append(
        (
            ["csv", encoding, "--user", "user", "--item", "item", "--rating", "stars", "--time", "when"],
            ("enc.csv:3", "bad encoding"),
        )
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases.append(
        (
            ["csv", empty, "--user", "user", "--item", "item", "--rating", "stars", "--time", "when"],
            ("empty.csv", "file is empty"),
        )
    )
    cases.append(
        (
            ["csv", tmp_path / "nope.csv", "--user", "u", "--item", "i", "--rating", "r", "--time", "t"],
            ("nope.csv", "no such file"),
        )
    )
    short_row = tmp_path / "short.csv"
    short_row.write_text("user,item,stars,when\nu1,i1,4,100\nu2,i2\n")
    cases.append(
        (
            ["csv", short_row, "--user", "user", "--item", "item", "--rating", "stars", "--time", "when"],
            ("short.csv:3", "expected 4 columns, found 2"),
        )
    )
    no_column = tmp_path / "nocol.csv"
    no_column.write_text("user,item,when\nu1,i1,100\n")
    cases.append(
        (
            ["csv", no_column, "--user", "user", "--item", "item", "--rating", "stars", "--time", "when"],
            ("nocol.csv:1", "missing column(s) stars"),
        )
    )
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"u": 1, "i": 2, "r": 3, "t": 4}\n{"u": 1, "i":\n')
    cases.append(
        (
            ["jsonl", bad_json, "--user", "u", "--item", "i", "--rating", "r", "--time", "t"],
            ("bad.jsonl:2", "invalid JSON"),
        )
    )
    for args, fragments in cases:
        assert_one_clear_line(lettingo("ingest", *args), *fragments)
    after = (
        store_rows(store_path, "SELECT COUNT(*) FROM artifacts")[0][0],
        store_rows(store_path, "SELECT COUNT(*) FROM interactions"),
    )
    assert after == before
    assert Store(store_path).verify()["ok"]


VALID_CSV = "user,item,stars,when\nu1,i1,4,100\nu1,i2,3.5,200\nu2,i1,1,300\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    position=st.integers(min_value=0, max_value=len(VALID_CSV)),
    junk=st.binary(min_size=0, max_size=12),
    cut=st.integers(min_value=0, max_value=len(VALID_CSV)),
)
def test_ingest_never_writes_a_partial_artifact(tmp_path_factory, position, junk, cut):
    """Any mangling of a valid file either ingests every row or changes nothing."""
    from lettingo_cli.errors import LettingoError
    from lettingo_cli.ingest import read_table, write_dataset

    folder = tmp_path_factory.mktemp("prop")
    raw = VALID_CSV.encode()
    mangled = (raw[:position] + junk + raw[position:])[: max(cut, 1) + len(junk)]
    path = folder / "ratings.csv"
    path.write_bytes(mangled)
    store = Store(folder / "lettingo.db")
    try:
        parsed = read_table(path, "csv", "user", "item", "stars", "when")
        artifact = write_dataset(store, parsed, "prop", {})
    except LettingoError:
        assert store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == 0
        assert store.db.execute("SELECT COUNT(*) FROM interactions").fetchone()[0] == 0
        assert store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    else:
        assert artifact.counts["interactions"] == len(parsed.interactions) > 0
        assert store.db.execute("SELECT COUNT(*) FROM interactions").fetchone()[0] == len(parsed.interactions)
        assert store.db.execute("SELECT COUNT(*) FROM artifacts WHERE status = 'pending'").fetchone()[0] == 0
    assert store.verify()["ok"]
    store.close()


def test_without_a_time_column_the_file_order_is_the_time_order(lettingo, store_path, tmp_path):
    """A data set with no time column: --time is optional, the row order is the order, and the store says so."""
    path = tmp_path / "plays.csv"
    rows = [("u1", "z", "3"), ("u2", "a", "5"), ("u1", "a", "4"), ("u1", "m", "1")]
    path.write_text("user,item,plays\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows), encoding="utf-8")
    result = lettingo("ingest", "csv", path, "--user", "user", "--item", "item", "--rating", "plays")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "dataset:plays@v1"
    assert "plays.csv: no --time column, so the file order is the time order" in result.stderr
    # u1's interactions keep the file's order (z, a, m), not the item ids' order
    assert store_rows(store_path, "SELECT item_id FROM interactions WHERE user_id = 'u1' ORDER BY seq") == [
        ("z",),
        ("a",),
        ("m",),
    ]
    dataset = Store(store_path).resolve("dataset:plays")
    assert dataset.params["time_order"] == "file order (no time column)" and dataset.params["columns"]["time"] is None
