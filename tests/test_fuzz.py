"""Fuzzed inputs and broken stores.

Every reader is fed valid files that hypothesis mangles (truncated, bad bytes, wrong column counts, NaN/inf and
huge numbers, duplicated, deleted or garbage lines, other line endings, empty files). Each run of `lettingo
ingest` must either read what is valid (exit 0, a dataset that `store verify` accepts) or end with exactly one
stderr line that names the file or folder (exit 1) and leave the store as it was. No traceback, no "internal
error", no half-written artifact.

A store file that is not a lettingo store, a truncated store, a read-only store and a vanished blob folder each
give one clear line and the documented exit code.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lettingo_cli.cli import app
from lettingo_cli.errors import IntegrityError
from lettingo_cli.store import Store
from tests.conftest import write_amazon, write_ml100k, write_ml_csv, write_ratings_csv

EXAMPLES = 120  # mangled inputs per reader (README, "Robustness", quotes this figure)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI stays reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ODD_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e400", "9" * 40, "", " ", "1e-320", "0x10",
               "None", "null", "½", "4,5", "-0"]  # fmt: skip
ODD_JSON_VALUES = [float("nan"), float("inf"), -float("inf"), 10**40, -1, None, "", "x", [], {}, True, 1e-320]


def cli(store: Path, *args) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"LETTINGO_STORE": str(store)})
    return result.exit_code, result.stdout, result.stderr


def snapshot(store: Path) -> tuple:
    """What a failed ingest must not change: every artifact row and every blob file."""
    with sqlite3.connect(store) as conn:
        rows = conn.execute(
            "SELECT id, kind, name, version, status, content_hash FROM artifacts ORDER BY id"
        ).fetchall()
    blobs = store.with_name(store.stem + ".blobs")
    files = sorted(str(p.relative_to(blobs)) for p in blobs.rglob("*")) if blobs.exists() else []
    return rows, files


# --- mangling ----------------------------------------------------------------------------------------------


@st.composite
def mangled_lines(draw, data: bytes, delimiter: bytes) -> bytes:
    """`data` with one or two line-level or byte-level faults."""
    for _ in range(draw(st.integers(1, 2))):
        lines = data.split(b"\n")
        kind = draw(
            st.sampled_from(
                [
                    "truncate",
                    "bad_bytes",
                    "drop_field",
                    "extra_field",
                    "odd_number",
                    "duplicate",
                    "drop_line",
                    "garbage",
                    "line_endings",
                    "empty",
                    "huge_line",
                ]
            )  # fmt: skip
        )
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if kind == "truncate":
            data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
        elif kind == "bad_bytes":
            at = draw(st.integers(0, len(data)))
            data = (
                data[:at]
                + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x80\x80", b"\x00", b"\xed\xa0\x80"]))
                + data[at:]
            )
        elif kind in ("drop_field", "extra_field", "odd_number"):
            fields = lines[i].split(delimiter)
            j = draw(st.integers(0, max(len(fields) - 1, 0)))
            if kind == "drop_field":
                del fields[j]
            elif kind == "extra_field":
                fields.insert(j, b"extra")
            else:
                fields[j] = draw(st.sampled_from(ODD_NUMBERS)).encode()
            lines[i] = delimiter.join(fields)
            data = b"\n".join(lines)
        elif kind == "duplicate":
            data = b"\n".join(lines[: i + 1] + [lines[i]] * draw(st.integers(1, 3)) + lines[i + 1 :])
        elif kind == "drop_line":
            data = b"\n".join(lines[:i] + lines[i + 1 :])
        elif kind == "garbage":
            lines[i] = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
            data = b"\n".join(lines)
        elif kind == "line_endings":
            data = data.replace(b"\n", draw(st.sampled_from([b"\r\n", b"\r"])))
        elif kind == "empty":
            data = b""
        else:  # huge_line: one field a megabyte long
            lines[i] = lines[i] + b"9" * 1_000_000
            data = b"\n".join(lines)
    return data


@st.composite
def mangled_json_lines(draw, data: bytes) -> bytes:
    """JSON lines with a record-level fault (a key dropped, an odd value, NaN/Infinity tokens) or a line fault."""
    if draw(st.booleans()):
        return draw(mangled_lines(data, b","))
    lines = data.split(b"\n")
    records = [i for i, line in enumerate(lines) if line.strip()]
    i = draw(st.sampled_from(records))
    record = json.loads(lines[i])
    key = draw(st.sampled_from(sorted(record)))
    if draw(st.booleans()):
        del record[key]
    else:
        record[key] = draw(st.sampled_from(ODD_JSON_VALUES))
    lines[i] = json.dumps(record).encode()  # NaN and Infinity as JavaScript tokens, as some writers do
    return b"\n".join(lines)


def write_mangled(path: Path, original: bytes, mangled: bytes, compressed: bool, raw_fault: bool) -> None:
    """The mangled content, gzipped for a .gz file; or, with raw_fault, the valid gzip's bytes cut short."""
    if not compressed:
        path.write_bytes(mangled)
    elif raw_fault:
        packed = gzip.compress(original)
        path.write_bytes(packed[: len(packed) * len(mangled) // max(len(original), 1) // 2])
    else:
        path.write_bytes(gzip.compress(mangled))


def check_outcome(store: Path, before: tuple, code: int, stdout: str, stderr: str, names: list[str]) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    if code == 0:
        assert stdout.startswith("dataset:"), stdout
        verify = cli(store, "store", "verify")
        assert verify[0] == 0, verify
        return
    assert code == 1, (code, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lettingo: error: "), stderr
    assert any(name in lines[0] for name in names), (names, lines[0])
    assert stdout == ""
    assert snapshot(store) == before  # nothing written, nothing left pending


@pytest.fixture
def fuzz_store(tmp_path: Path) -> Path:
    """A store that already holds a dataset, so "unchanged" means something."""
    store = tmp_path / "lettingo.db"
    assert cli(store, "ingest", "movielens", write_ml100k(tmp_path / "movielens-base", n_users=3))[0] == 0
    return store


# --- one test per reader -------------------------------------------------------------------------------


def fuzz_files(
    store, files: dict[Path, bytes], command: list, data, mangle=lambda content: mangled_lines(content, b",")
):
    """Mangle one of `files` (`mangle`: original bytes -> a strategy; the others restored), run `command`, check
    the outcome."""
    for path, content in files.items():
        write_mangled(path, content, content, path.suffix == ".gz", False)
    target = data.draw(st.sampled_from(sorted(files)))
    original = files[target]
    mangled = data.draw(mangle(original))
    raw_fault = target.suffix == ".gz" and data.draw(st.integers(0, 4)) == 0
    write_mangled(target, original, mangled, target.suffix == ".gz", raw_fault)
    before = snapshot(store)
    code, stdout, stderr = cli(store, *command)
    check_outcome(store, before, code, stdout, stderr, [target.name, target.parent.name])


@FUZZ
@given(data=st.data())
def test_fuzz_movielens_100k(tmp_path, fuzz_store, data):
    originals, folder = (write_ml100k(tmp_path / name, n_users=4, per_user=6) for name in ("ml100k-orig", "ml100k"))
    files = {folder / n: (originals / n).read_bytes() for n in ("u.data", "u.item", "u.user")}
    separator = data.draw(st.sampled_from([b"\t", b"|"]))
    fuzz_files(
        fuzz_store, files, ["ingest", "movielens", folder], data, lambda content: mangled_lines(content, separator)
    )


@FUZZ
@given(data=st.data())
def test_fuzz_movielens_csv(tmp_path, fuzz_store, data):
    folder = tmp_path / "ml-csv"
    write_ml_csv(tmp_path / "ml-csv-orig")
    files = {folder / n: (tmp_path / "ml-csv-orig" / n).read_bytes() for n in ("ratings.csv", "movies.csv")}
    folder.mkdir(exist_ok=True)
    fuzz_files(fuzz_store, files, ["ingest", "movielens", folder], data)


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "plain"])
@FUZZ
@given(data=st.data())
def test_fuzz_amazon(tmp_path, fuzz_store, compressed, data):
    reviews_gz, meta_gz = write_amazon(tmp_path / "amazon-orig")
    folder = tmp_path / "amazon"
    folder.mkdir(exist_ok=True)
    suffix = ".json.gz" if compressed else ".json"
    reviews = folder / ("Tiny_Category_5" + suffix)
    meta = folder / ("meta_Tiny_Category" + suffix)
    files = {reviews: gzip.decompress(reviews_gz.read_bytes()), meta: gzip.decompress(meta_gz.read_bytes())}
    fuzz_files(fuzz_store, files, ["ingest", "amazon", reviews, "--meta", meta], data, mangled_json_lines)


def ratings_rows() -> list[tuple]:
    return [(f"u{u}", f"i{(u * 7 + k) % 9}", str(1 + (u + k) % 5), str(1_600_000_000 + 60 * k), f"Item {k}")
            for u in range(3) for k in range(5)]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_fuzz_csv(tmp_path, fuzz_store, data):
    path = write_ratings_csv(tmp_path / "orig.csv", ratings_rows())
    target = tmp_path / "ratings.csv"
    command = ["ingest", "csv", target, "--user", "user", "--item", "item", "--rating", "stars", "--time", "when",
               "--title", "name"]  # fmt: skip
    fuzz_files(fuzz_store, {target: path.read_bytes()}, command, data)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@FUZZ
@given(data=st.data())
def test_fuzz_jsonl(tmp_path, fuzz_store, compressed, data):
    records = [dict(zip(("user", "item", "stars", "when", "name"), row)) for row in ratings_rows()]
    for record in records:
        record["stars"] = float(record["stars"])
        record["when"] = int(record["when"])
    content = "".join(json.dumps(r) + "\n" for r in records).encode()
    target = tmp_path / ("ratings.jsonl" + (".gz" if compressed else ""))
    command = ["ingest", "jsonl", target, "--user", "user", "--item", "item", "--rating", "stars", "--time", "when",
               "--title", "name"]  # fmt: skip
    fuzz_files(fuzz_store, {target: content}, command, data, mangled_json_lines)


# --- broken stores -------------------------------------------------------------------------------------


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lettingo: error: "), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    return lines[0]


def test_a_file_that_is_not_a_store(tmp_path):
    junk = tmp_path / "notes.db"
    junk.write_bytes(b"these are my notes, not a database\n" * 100)
    code, _, stderr = cli(junk, "store", "ls")
    assert code == 4 and "notes.db" in one_line(stderr) and "not a lettingo store" in stderr
    assert junk.read_bytes() == b"these are my notes, not a database\n" * 100


def test_another_programs_sqlite_database_is_left_alone(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    before = other.read_bytes()
    code, _, stderr = cli(other, "ingest", "movielens", write_ml100k(tmp_path / "ml"))
    assert code == 4 and "other.db" in one_line(stderr) and "not a lettingo store" in stderr
    assert other.read_bytes() == before  # no lettingo tables added to someone else's database


def test_a_truncated_store(tmp_path):
    store = tmp_path / "lettingo.db"
    assert cli(store, "ingest", "movielens", write_ml100k(tmp_path / "ml"))[0] == 0
    with sqlite3.connect(store) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = store.stat().st_size
    with open(store, "r+b") as handle:
        handle.truncate(size // 3)
    code, _, stderr = cli(store, "store", "ls")
    line = one_line(stderr)
    assert code == 4 and "lettingo.db" in line and ("damaged" in line or "truncated" in line), line


@contextmanager
def read_only(*paths: Path):
    """Make files and folders really read-only for this process: permissions for a normal user; for root, who
    ignores permissions, the immutable attribute (chattr +i), or skip where the file system lacks it."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *paths], capture_output=True).returncode:
        pytest.skip("running as root on a file system without chattr +i: cannot make a file read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *paths], check=True)


def test_a_read_only_store_reads_but_does_not_write(tmp_path):
    folder = tmp_path / "shelf"
    folder.mkdir()
    store = folder / "lettingo.db"
    assert cli(store, "ingest", "movielens", write_ml100k(tmp_path / "ml"))[0] == 0
    Store(store).db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):  # as a copied store arrives: no WAL files beside it
        Path(str(store) + suffix).unlink(missing_ok=True)
    before = store.read_bytes()
    with read_only(store, folder):
        assert not os.access(store, os.W_OK)
        code, stdout, stderr = cli(store, "store", "ls")
        assert code == 0 and stdout.strip() == "dataset:ml@v1", (code, stdout, stderr)
        assert cli(store, "store", "verify")[0] == 0
        code, stdout, stderr = cli(store, "split")
        assert code == 1 and stdout == "" and "lettingo.db is read-only" in one_line(stderr)
    assert store.read_bytes() == before


def test_a_vanished_blob_folder(tmp_path):
    store_path = tmp_path / "lettingo.db"
    store = Store(store_path)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00\x01" * 100)
    adapter = store.begin("adapter", "a", {}, None)
    store.add_file(adapter, weights)
    adapter = store.finalize(adapter)
    shutil.rmtree(store.blob_dir)

    code, _, stderr = cli(store_path, "store", "verify")
    problems = stderr.strip().splitlines()
    assert code == 4 and len(problems) == 2, stderr  # the problem, then the one error line
    assert "lettingo.blobs is missing" in problems[0] and problems[1].startswith("lettingo: error: 1 problem(s)")
    with pytest.raises(IntegrityError, match="adapter:a@v1: cannot read its file weights.bin: the blob folder"):
        Store(store_path).materialize(adapter, tmp_path / "out")
