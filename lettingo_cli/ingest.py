"""Stage `ingest`: read a ratings data set into a dataset artifact (users, items, interactions).

Each reader parses its files completely before the store is touched, and the artifact is written in one
transaction: a bad file (named with its line) or a crash leaves the store exactly as it was.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import InputError, UsageError
from lettingo_cli.items import item_order
from lettingo_cli.options import option, required
from lettingo_cli.store import Artifact, Store, Verbs, check_name
from lettingo_cli.store.digest import canonical_json, sha256_file

VERBS = Verbs("ingest", "ingested")

# MovieLens 100K's u.genre, used when the folder has no u.genre file.
ML100K_GENRES = (
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
)
DESCRIPTION_CHARS = 200
_HTML_TAG = re.compile(r"<[^>]*>?")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class JsonColumns:
    """The columns of `lettingo ingest jsonl` (each field is also its flag and a key of its --config YAML)."""

    user: str = required("Column with the user id.")
    item: str = required("Column with the item id.")
    rating: str = required("Column with the numeric rating.")
    time: str | None = option(
        None, "Column with the time: unix seconds or ISO 8601 (default: the file order is the time order)."
    )
    title: str | None = option(None, "Column with the item title.")
    text: list[str] | None = option(None, "Extra item-text column (repeatable).")


@dataclass(frozen=True)
class CsvColumns(JsonColumns):
    """The columns of `lettingo ingest csv`, and its field separator."""

    delimiter: str = option(",", "Field separator.")


@dataclass
class Item:
    title: str
    text: str
    attributes: dict = field(default_factory=dict)


@dataclass
class Interaction:
    user_id: str
    item_id: str
    rating: float
    ts: int


@dataclass
class ParsedDataset:
    """What a reader found, before anything is written."""

    source_format: str
    sources: list[Path]
    interactions: list[Interaction]
    items: dict[str, Item]
    users: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- reading text files with errors that name the file and line -------------------------------------------


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text; a missing, empty or badly encoded file raises InputError naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not a file")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(path, f"not a valid gzip file ({exc})") from exc
    if not raw.strip():
        raise InputError(path, "file is empty")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(path, f"bad encoding: byte 0x{raw[exc.start]:02x} is not valid {encoding}", line) from exc


def parse_rating(value: str, path: Path, line: int) -> float:
    if isinstance(value, bool | list | dict):  # JSON's true, [..], {..}: float(True) would say 1.0
        raise InputError(path, f"rating {json.dumps(value)} is not a number", line)
    try:
        rating = float(value)
    except (TypeError, ValueError):
        raise InputError(path, f"rating {_shown(value)} is not a number", line) from None
    if not math.isfinite(rating):
        raise InputError(path, f"rating {_shown(value)} is not a finite number", line)
    return rating


EARLIEST_TIME, LATEST_TIME = -62_135_596_800, 253_402_300_799  # 0001-01-01 and 9999-12-31 in unix seconds


def parse_time(value: str, path: Path, line: int) -> int:
    """Unix seconds, or an ISO 8601 date/time (UTC when it has no zone)."""
    text = str(value).strip()
    try:
        seconds = float(text)
        if not math.isfinite(seconds):
            raise ValueError
    except ValueError:
        seconds = None
    if seconds is not None:
        if not EARLIEST_TIME <= seconds <= LATEST_TIME:
            raise InputError(path, f"time {_shown(value)} is outside years 1-9999 in unix seconds", line)
        return int(seconds)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(path, f"time {_shown(value)} is neither unix seconds nor an ISO 8601 date", line) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _shown(value, limit: int = 40) -> str:
    """A value for an error line: repr, cut to `limit` characters (a megabyte-long field stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _field_value(value, path: Path, line: int, column: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(path, f"missing value for column {column!r}", line)
    if isinstance(value, list | dict):
        raise InputError(path, f"column {column!r} holds {json.dumps(value)[:40]}, not a string or number", line)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


# --- MovieLens ---------------------------------------------------------------------------------------------


def read_movielens(folder: Path) -> ParsedDataset:
    """MovieLens 100K (u.data, u.item, u.user) or a CSV release (ratings.csv, movies.csv)."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "no such folder")
    if (folder / "u.data").exists():
        return _read_movielens_100k(folder)
    if (folder / "ratings.csv").exists():
        return _read_movielens_csv(folder)
    raise InputError(folder, "not a MovieLens folder: expected u.data + u.item (100K) or ratings.csv + movies.csv")


def _read_movielens_100k(folder: Path) -> ParsedDataset:
    genres = ML100K_GENRES
    if (folder / "u.genre").exists():
        genre_text = read_text(folder / "u.genre", "latin-1")
        genres = tuple(line.split("|")[0] for line in genre_text.splitlines() if line.strip())

    items: dict[str, Item] = {}
    item_path = folder / "u.item"
    for number, line in enumerate(read_text(item_path, "latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.split("|")
        if len(columns) != 5 + len(genres):
            raise InputError(
                item_path, f"expected {5 + len(genres)} '|'-separated columns, found {len(columns)}", number
            )
        item_id, title, release_date = columns[0].strip(), columns[1].strip(), columns[2].strip()
        flags = columns[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise InputError(item_path, "genre flags must be 0 or 1", number)
        item_genres = [genre for genre, flag in zip(genres, flags) if flag == "1" and genre != "unknown"]
        year = _year(title, release_date)
        items[item_id] = _movie(title, year, item_genres)

    users: dict[str, dict] = {}
    user_path = folder / "u.user"
    if user_path.exists():
        for number, line in enumerate(read_text(user_path, "latin-1").splitlines(), start=1):
            if not line.strip():
                continue
            columns = line.split("|")
            if len(columns) != 5:
                raise InputError(user_path, f"expected 5 '|'-separated columns, found {len(columns)}", number)
            user_id, age, gender, occupation, zip_code = (c.strip() for c in columns)
            if not age.isdigit():
                raise InputError(user_path, f"age {age!r} is not a number", number)
            users[user_id] = {"age": int(age), "gender": gender, "occupation": occupation, "zip": zip_code}

    data_path = folder / "u.data"
    interactions = []
    for number, line in enumerate(read_text(data_path, "utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 4:
            raise InputError(
                data_path, f"expected 4 tab-separated columns (user item rating time), found {len(columns)}", number
            )
        user_id, item_id = columns[0].strip(), columns[1].strip()
        interactions.append(
            Interaction(
                user_id, item_id, parse_rating(columns[2], data_path, number), parse_time(columns[3], data_path, number)
            )
        )
    return ParsedDataset(
        "movielens-100k", [data_path, item_path] + ([user_path] if users else []), interactions, items, users
    )


def _read_movielens_csv(folder: Path) -> ParsedDataset:
    movies_path = folder / "movies.csv"
    items: dict[str, Item] = {}
    for _line, row in _csv_rows(movies_path, ("movieId", "title", "genres")):
        title = row["title"].strip()
        genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
        items[row["movieId"].strip()] = _movie(title, _year(title, ""), genres)
    ratings_path = folder / "ratings.csv"
    interactions = [
        Interaction(
            _field_value(row["userId"], ratings_path, number, "userId"),
            _field_value(row["movieId"], ratings_path, number, "movieId"),
            parse_rating(row["rating"], ratings_path, number),
            parse_time(row["timestamp"], ratings_path, number),
        )
        for number, row in _csv_rows(ratings_path, ("userId", "movieId", "rating", "timestamp"))
    ]
    return ParsedDataset("movielens-csv", [ratings_path, movies_path], interactions, items)


def _year(title: str, release_date: str) -> int | None:
    if match := _YEAR_IN_TITLE.search(title):
        return int(match.group(1))
    if match := re.search(r"(\d{4})$", release_date):
        return int(match.group(1))
    return None


def _movie(title: str, year: int | None, genres: list[str]) -> Item:
    text = title if year is None or str(year) in title else f"{title} ({year})"
    if genres:
        text += " | " + ", ".join(genres)
    return Item(title=title, text=text, attributes={"year": year, "genres": genres})


# --- CSV and JSON lines --------------------------------------------------------------------------------------


def _csv_rows(path: Path, required: tuple[str, ...], delimiter: str = ","):
    """(line number, row dict) for each data row; checks the header and each row's column count."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [name.strip() for name in next(reader)]
        missing = [name for name in required if name not in header]
        if missing:
            raise InputError(path, f"missing column(s) {', '.join(missing)}; the header has {', '.join(header)}", 1)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise InputError(path, f"expected {len(header)} columns, found {len(row)}", reader.line_num)
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV ({exc})", reader.line_num) from exc


def _jsonl_rows(path: Path):
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"invalid JSON ({exc.msg})", number) from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts (4,300)
            raise InputError(path, f"invalid JSON ({exc})", number) from None
        if not isinstance(record, dict):
            raise InputError(path, "each line must be a JSON object", number)
        yield number, record


def read_table(
    path: Path,
    file_format: str,
    user: str,
    item: str,
    rating: str,
    time: str | None,
    title: str | None = None,
    text_columns: tuple[str, ...] = (),
    delimiter: str = ",",
) -> ParsedDataset:
    """Any CSV or JSON-lines file of (user, item, rating[, time]) rows, item text from optional columns. Without
    a time column the file order is the time order (each row's time is its position in the file)."""
    path = Path(path)
    required = (user, item, rating) + ((time,) if time else ())
    if file_format == "csv":
        rows = _csv_rows(path, required, delimiter)
    else:
        rows = _jsonl_rows(path)
    interactions, items = [], {}
    for number, row in rows:
        if file_format == "jsonl":
            missing = [column for column in required if column not in row]
            if missing:
                raise InputError(path, f"missing field(s) {', '.join(missing)}", number)
        item_id = _field_value(row[item], path, number, item)
        interactions.append(
            Interaction(
                _field_value(row[user], path, number, user),
                item_id,
                parse_rating(row[rating], path, number),
                parse_time(row[time], path, number) if time else len(interactions),
            )
        )
        if item_id not in items:
            item_title = str(row.get(title) or "").strip() if title else ""
            extra = [str(row.get(column) or "").strip() for column in text_columns]
            text = " | ".join(part for part in [item_title, *extra] if part) or f"item {item_id}"
            items[item_id] = Item(title=item_title or f"item {item_id}", text=text)
    notes = [] if time else [f"{path.name}: no --time column, so the file order is the time order"]
    return ParsedDataset(file_format, [path], interactions, items, notes=notes)


# --- Amazon Review Data 2018 -----------------------------------------------------------------------------------


def strip_html(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(_HTML_TAG.sub(" ", text))).strip()


def is_html_fragment(text: str) -> bool:
    return bool(re.search(r"<\s*/?\s*[A-Za-z!]", text))


def _as_list(value) -> list:
    """A metadata field that should be a list: as is; missing: empty; a lone value (a string, a number): alone."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def amazon_item(asin: str, meta: dict | None) -> Item:
    """Title, or when the title is missing or an HTML fragment, brand + category + start of description."""
    if not meta:
        return Item(title=asin, text=f"item {asin}", attributes={"metadata": False})
    title = str(meta.get("title") or "").strip()
    brand = strip_html(str(meta.get("brand") or ""))
    categories = [strip_html(str(c)) for c in _as_list(meta.get("category")) if str(c).strip()]
    description = _as_list(meta.get("description"))
    description_text = strip_html(" ".join(str(part) for part in description))
    attributes = {"brand": brand, "categories": categories, "metadata": True}
    if title and not is_html_fragment(title):
        clean = strip_html(title)
        return Item(title=clean, text=clean, attributes=attributes)
    specific = categories[1:] or categories
    parts = [brand, " > ".join(specific)]
    if description_text:
        start = description_text[:DESCRIPTION_CHARS]
        parts.append(start + ("..." if len(description_text) > DESCRIPTION_CHARS else ""))
    text = " | ".join(part for part in parts if part) or f"item {asin}"
    return Item(title=brand or (specific[-1] if specific else asin), text=text, attributes=attributes)


def read_amazon(reviews_path: Path, meta_path: Path | None = None) -> ParsedDataset:
    reviews_path = Path(reviews_path)
    seen, interactions, duplicates = set(), [], 0
    for number, record in _jsonl_rows(reviews_path):
        for column in ("reviewerID", "asin", "overall", "unixReviewTime"):
            if column not in record:
                raise InputError(reviews_path, f"review has no {column!r}", number)
        key = canonical_json(record)
        if key in seen:  # the 2018 release repeats some reviews byte for byte
            duplicates += 1
            continue
        seen.add(key)
        interactions.append(
            Interaction(
                _field_value(record["reviewerID"], reviews_path, number, "reviewerID"),
                _field_value(record["asin"], reviews_path, number, "asin"),
                parse_rating(record["overall"], reviews_path, number),
                parse_time(record["unixReviewTime"], reviews_path, number),
            )
        )
    metadata: dict[str, dict] = {}
    sources = [reviews_path]
    if meta_path is not None:
        meta_path = Path(meta_path)
        sources.append(meta_path)
        for number, record in _jsonl_rows(meta_path):
            asin = record.get("asin")
            if not asin:
                raise InputError(meta_path, "metadata record has no 'asin'", number)
            metadata.setdefault(str(asin), record)
    asins = sorted({interaction.item_id for interaction in interactions})
    items = {asin: amazon_item(asin, metadata.get(asin)) for asin in asins}
    notes = [f"dropped {duplicates:,} exact duplicate reviews"]
    without_meta = sum(1 for asin in asins if asin not in metadata)
    if without_meta:
        notes.append(f"{without_meta:,} of {len(asins):,} items have no metadata: their text is their ASIN")
    return ParsedDataset("amazon-2018", sources, interactions, items, notes=notes)


# --- writing the artifact -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What `ingest` reads: a format and a file or folder, or (MovieLens) a release to download."""

    format: str  # movielens | amazon | csv | jsonl
    path: Path | None = None
    download: str | None = None  # ml-100k | ml-latest-small
    url: str | None = None  # a mirror of the release's zip
    meta: Path | None = None  # Amazon: the metadata file


def ingest_source(
    store: Store, source: Source, columns: dict, delimiter: str = ",", name: str | None = None, force: bool = False
) -> Artifact:
    """The stage: read `source` with its format's reader and write the dataset artifact. `columns` (user, item,
    rating, time, title, text) name a CSV / JSON-lines file's columns."""
    path, options = source.path, {}
    if source.format == "movielens":
        if (path is None) == (source.download is None):
            raise UsageError("give a MovieLens FOLDER or --download RELEASE (ml-100k, ml-latest-small), one of them")
        if source.url and not source.download:
            raise UsageError("--url goes with --download")
        if source.download:
            from lettingo_cli.download import fetch, release

            path = fetch(release(source.download), source.url)
        parsed = read_movielens(path)
    elif source.format not in ("amazon", "csv", "jsonl"):
        raise UsageError(f"unknown format {source.format!r}: movielens, amazon, csv or jsonl")
    elif path is None:
        raise UsageError(f"ingest {source.format} needs a FILE")
    elif source.format == "amazon":
        parsed = read_amazon(path, source.meta)
        options = {"meta": bool(source.meta)}
    else:
        user, item, rating, time, title = (columns[k] for k in ("user", "item", "rating", "time", "title"))
        text = tuple(columns["text"])
        parsed = read_table(path, source.format, user, item, rating, time, title, text, delimiter)
        options = table_options(source.format, user, item, rating, time, title, list(text), delimiter)
    return write_dataset(store, parsed, check_name(name or default_name(path)), options, force=force)


def default_name(source: Path) -> str:
    """`../movielens-100k/` -> `movielens-100k`; `All_Beauty_5.json.gz` -> `All_Beauty_5`."""
    source = Path(source)
    stem = source.name
    for suffix in (".gz", ".json", ".jsonl", ".csv", ".tsv"):
        stem = stem.removesuffix(suffix)
    return safe_name(stem)


def table_options(file_format: str, user, item, rating, time, title, text, delimiter: str) -> dict:
    """The options of a CSV / JSON-lines ingest, as recorded in the dataset's params (and its run key)."""
    columns = {"user": user, "item": item, "rating": rating, "time": time, "title": title, "text": text or []}
    order = {} if time else {"time_order": "file order (no time column)"}
    return {"columns": columns, **order, **({"delimiter": delimiter} if file_format == "csv" else {})}


def safe_name(text: str) -> str:
    """Turn a file or folder name into a valid artifact name (`All Beauty 5` -> `All-Beauty-5`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return cleaned or "dataset"


def write_dataset(store: Store, parsed: ParsedDataset, name: str, options: dict, force: bool = False) -> Artifact:
    """Write a parsed data set as one dataset artifact, in one transaction (all or nothing).

    The same files with the same options return the artifact already ingested (unless `force`); identical
    content under the same name returns the existing version either way."""
    if not parsed.interactions:
        raise InputError(parsed.sources[0], "no interactions found")
    # each source file hashed once: its sha256 names the content in the run key and is recorded in the params
    sources = [{"path": str(Path(p).resolve()), "sha256": sha256_file(Path(p))} for p in parsed.sources]
    key_sources = [{"file": Path(source["path"]).name, "sha256": source["sha256"]} for source in sources]
    params = {"format": parsed.source_format, "sources": sources, **options}
    key_params = {"name": name, "sources": key_sources, **options}
    run = store.stage(
        "ingest", "dataset", name, params, {}, key_params=key_params, force=force, atomic=True, verbs=VERBS
    )
    if run.cached:
        return run.cached
    for note in parsed.notes:
        log(note)

    by_user: dict[str, list[tuple[int, Interaction]]] = {}
    for order, interaction in enumerate(parsed.interactions):
        by_user.setdefault(interaction.user_id, []).append((order, interaction))
    unknown_items = {i.item_id for i in parsed.interactions} - parsed.items.keys()
    items = dict(parsed.items)
    for item_id in unknown_items:  # rated but absent from the item file: keep the rating, note the gap
        items[item_id] = Item(title=f"item {item_id}", text=f"item {item_id}", attributes={"metadata": False})
    if unknown_items:
        log(f"{len(unknown_items):,} rated items are missing from the item file; named by id")
    users = {user_id: parsed.users.get(user_id, {}) for user_id in by_user}
    for user_id, attributes in parsed.users.items():  # users listed without ratings are kept too
        users.setdefault(user_id, attributes)

    def interaction_rows():
        for user_id, events in by_user.items():
            events.sort(key=lambda pair: (pair[1].ts, item_order(pair[1].item_id), pair[0]))
            for seq, (_, event) in enumerate(events):
                yield {"user_id": user_id, "seq": seq, "item_id": event.item_id, "rating": event.rating, "ts": event.ts}

    with run:
        artifact = run.artifact
        store.insert_rows(
            artifact, "users", ({"user_id": u, "attributes": canonical_json(a)} for u, a in users.items())
        )
        store.insert_rows(
            artifact,
            "items",
            (
                {"item_id": i, "title": item.title, "text": item.text, "attributes": canonical_json(item.attributes)}
                for i, item in items.items()
            ),
        )
        store.insert_rows(artifact, "interactions", interaction_rows())
        return run.finish()
