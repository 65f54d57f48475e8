"""`lettingo ingest movielens|amazon|csv|jsonl`: the command group that reads data sets (lettingo_cli/ingest.py
does the reading; api.ingest the writing)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from lettingo_cli.cli_common import (
    DEFAULT_STORE,
    ForceOption,
    JsonOption,
    NameOption,
    StoreOption,
    emit,
    log,
    open_store,
)
from lettingo_cli.ingest import CsvColumns, JsonColumns
from lettingo_cli.options import command_options

ingest_app = typer.Typer(help="Read a ratings data set into the store as a dataset artifact.", no_args_is_help=True)


def _ingest(store_path: Path, source_format: str, source: Optional[Path], as_json: bool, **options) -> None:
    from lettingo_cli import api

    artifact = api.ingest(open_store(store_path), source_format, source, **options)
    counts = artifact.counts
    log(
        f"{artifact.ref}: {counts.get('users', 0):,} users, {counts.get('items', 0):,} items, "
        f"{counts.get('interactions', 0):,} interactions"
    )
    emit(artifact, as_json)


@ingest_app.command("movielens")
def ingest_movielens(
    folder: Annotated[
        Optional[Path],
        typer.Argument(help="A MovieLens folder: 100K (u.data, u.item) or CSV (ratings.csv, movies.csv)."),
    ] = None,
    download: Annotated[
        Optional[str],
        typer.Option(
            "--download",
            help="Fetch a GroupLens release once into $LETTINGO_CACHE/data, check its sha256s, ingest it: "
            "ml-100k or ml-latest-small.",
        ),
    ] = None,
    url: Annotated[
        Optional[str], typer.Option("--url", help="Fetch --download's zip from this address (a mirror).")
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """MovieLens 100K or a CSV release (latest-small, 25M, ...); genres and year go into the item text."""
    _ingest(store_path, "movielens", folder, as_json, download=download, url=url, name=name, force=force)


@ingest_app.command("amazon")
def ingest_amazon(
    reviews: Annotated[Path, typer.Argument(help="Amazon Review Data 2018 reviews (JSON lines, .json.gz).")],
    meta: Annotated[
        Optional[Path], typer.Option("--meta", help="The category's metadata file (meta_*.json.gz).")
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Amazon 2018 5-core reviews: exact duplicates dropped; item text from title or brand + category + description."""
    _ingest(store_path, "amazon", reviews, as_json, meta=meta, name=name, force=force)


def _columns(options: JsonColumns) -> dict:
    return {**asdict(options), "text": tuple(options.text or ())}


@ingest_app.command("csv")
@command_options(CsvColumns)
def ingest_csv(
    options: CsvColumns,
    file: Annotated[Path, typer.Argument(help="A CSV file with a header row.")],
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Any CSV of (user, item, rating[, time]) rows."""
    _ingest(store_path, "csv", file, as_json, name=name, force=force, **_columns(options))


@ingest_app.command("jsonl")
@command_options(JsonColumns)
def ingest_jsonl(
    options: JsonColumns,
    file: Annotated[Path, typer.Argument(help="A JSON-lines file (.jsonl or .jsonl.gz), one object per line.")],
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Any JSON-lines file of (user, item, rating[, time]) records."""
    _ingest(store_path, "jsonl", file, as_json, name=name, force=force, **_columns(options))
