"""`lettingo profile HISTORY_FILE`: profiles of the users of a plain CSV or JSON-lines history file, without a store.

For the person who has the aligned generator and histories of their own users: the file is read by the same
reader as `ingest csv|jsonl` (so bad input gets the same one-line errors), each user's newest `history` rows
are rendered by the same prompt template, sampled with the same per-profile seeds and cleaned and flagged the
same way as `gen` does; nothing is written anywhere. A store is opened only to resolve `gguf:export:NAME`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lettingo_cli.console import stage_progress
from lettingo_cli.errors import UsageError
from lettingo_cli.gen import GenOptions, profile_rows
from lettingo_cli.ingest import ParsedDataset
from lettingo_cli.options import option
from lettingo_cli.prompts import template_for
from lettingo_cli.sentiments import sentiment
from lettingo_cli.split import SplitOptions
from lettingo_cli.split_data import STARS, in_words

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class ProfileOptions(GenOptions):
    """gen's options, one profile per user by default: a person profiling their own users wants one each."""

    n: int = option(1, "Profiles per user.")


def file_format(path: Path, given: str | None) -> str:
    if given:
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: cannot tell the format from {suffix or 'no suffix'!r}; pass --format csv|jsonl")
    return FORMATS[suffix]


def histories(parsed: ParsedDataset, history: int, thresholds: SplitOptions) -> dict[str, list[dict]]:
    """Each user's newest `history` interactions, oldest first, as prompt rows (item text, sentiment, shown value),
    with a split's thresholds and value words. Users keep the order they first appear in the file."""
    by_user: dict[str, list] = {}
    for position, event in enumerate(parsed.interactions):
        by_user.setdefault(event.user_id, []).append((event.ts, position, event))
    rows = {}
    for user, events in by_user.items():
        events.sort(key=lambda entry: entry[:2])  # time, then file order
        rows[user] = [
            {
                "text": parsed.items[event.item_id].text,
                "sentiment": sentiment(event.rating, thresholds.dislike_max, thresholds.like_min),
                "shown": in_words(event.rating, thresholds.value_words or STARS),
                "rating": event.rating,
            }
            for _, _, event in events[-history:]
        ]
    return rows


def write_profiles(
    backend, rows: dict[str, list[dict]], options: GenOptions, prompt: str | None = None, words: str = STARS
) -> Iterator[dict]:
    """{user, sample, profile, tokens, flags} for every user and sample, in the file's user order: gen's own rows
    (`gen.profile_rows`), printed instead of stored."""
    template = template_for(prompt, backend.chat)
    users = list(rows)
    produced = []
    with stage_progress(f"profile {len(users)} users", len(users) * options.n, "profiles") as advance:
        for chunk in profile_rows(backend, template, [users], rows, options, words, advance):
            produced.extend(chunk)
    order = {user: position for position, user in enumerate(users)}
    for row in sorted(produced, key=lambda row: (order[row["user_id"]], row["sample_index"])):
        yield {
            "user": row["user_id"],
            "sample": row["sample_index"],
            "profile": row["text"],
            "tokens": row["n_tokens"],
            "flags": json.loads(row["flags"]),
        }


def load_generator(spec: str | None, store_path: Path):
    """The backend (or model-free writer) a generator spec names; the store is opened only if it exists, for
    gguf:export:NAME."""
    from lettingo_cli.backends import load_backend

    if spec is not None and spec.startswith("swap:"):
        raise UsageError("swap:REF gives users another user's profiles from a store; it needs `lettingo gen`")
    store = None
    if store_path.exists():
        from lettingo_cli.store import Store

        store = Store(store_path, create=False)
    return load_backend(spec, store=store)
