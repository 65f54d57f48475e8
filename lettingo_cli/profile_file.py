"""`lettingo profile HISTORY_FILE`: profiles of the users of a plain CSV or JSON-lines history file, without a store.

For the person who has the aligned generator and histories of their own users: the file is read by the same
reader as `ingest csv|jsonl` (so bad input gets the same one-line errors), each user's newest `history` rows
are rendered by the same prompt template, sampled with the same per-profile seeds and cleaned and flagged the
same way as `gen` does; nothing is written anywhere. A store is opened only to resolve `gguf:export:NAME`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lettingo_cli.backends.base import Request, SamplingOptions
from lettingo_cli.console import stage_progress
from lettingo_cli.errors import UsageError
from lettingo_cli.gen import GenOptions, clean_profile, profile_flags, profile_seed
from lettingo_cli.ingest import ParsedDataset
from lettingo_cli.prompts import COMPLETION_STOPS, Template, builtin_template, load_template, render
from lettingo_cli.split import STARS, in_words, sentiment

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class Thresholds:
    """How ratings become the prompt's sentiment words: the split's default thresholds and value words."""

    dislike_max: int = 2
    like_min: int = 4
    value_words: str = STARS

    def __post_init__(self) -> None:
        if self.dislike_max >= self.like_min:
            raise UsageError("--dislike-max must be below --like-min")
        if "{value}" not in self.value_words:
            raise UsageError("--value-words needs a {value} placeholder")


def file_format(path: Path, given: str | None) -> str:
    if given:
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: cannot tell the format from {suffix or 'no suffix'!r}; pass --format csv|jsonl")
    return FORMATS[suffix]


def histories(parsed: ParsedDataset, history: int, thresholds: Thresholds) -> dict[str, list[dict]]:
    """Each user's newest `history` interactions, oldest first, as prompt rows (item text, sentiment, shown value).
    Users keep the order they first appear in the file."""
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
                "shown": in_words(event.rating, thresholds.value_words),
                "rating": event.rating,
            }
            for _, _, event in events[-history:]
        ]
    return rows


def write_profiles(
    backend, rows: dict[str, list[dict]], options: GenOptions, prompt_file: Path | None = None, words: str = STARS
) -> Iterator[dict]:
    """{user, sample, profile, tokens, flags} for every user and sample, in the file's user order (`words`: how
    the model-free writers show a rating, as the prompts do)."""
    from lettingo_cli.written import WrittenGenerator

    template: Template = load_template(prompt_file) if prompt_file else builtin_template(backend.chat)
    users = list(rows)
    results: dict[tuple[str, int], dict] = {}
    with stage_progress(f"profile {len(users)} users", len(users) * options.n, "profiles") as advance:
        if isinstance(backend, WrittenGenerator):
            for user in users:
                for sample, (text, n_tokens) in enumerate(backend.write(user, rows[user], words)):
                    results[(user, sample)] = _record(user, sample, text, n_tokens, True)
                advance(options.n)
        else:
            stops = () if backend.chat else COMPLETION_STOPS
            sampling = SamplingOptions(options.max_tokens, options.temperature, stops)
            slots = [(user, sample) for user in users for sample in range(options.n)]
            prompts = {user: render(template, rows[user], backend.chat) for user in users}
            requests = [Request(prompts[u], profile_seed(options.seed, u, backend.label, s)) for u, s in slots]
            for index, generation in backend.generate(requests, sampling):
                user, sample = slots[index]
                text = clean_profile(generation.text)
                results[(user, sample)] = _record(user, sample, text, generation.n_tokens, generation.finished)
                advance(1, generation.n_tokens)
    order = {user: position for position, user in enumerate(users)}
    for key in sorted(results, key=lambda key: (order[key[0]], key[1])):
        yield results[key]


def _record(user: str, sample: int, text: str, tokens: int, finished: bool) -> dict:
    return {"user": user, "sample": sample, "profile": text, "tokens": tokens, "flags": profile_flags(text, finished)}


def load_generator(spec: str | None, store_path: Path):
    """The backend (or model-free writer) a generator spec names; the store is opened only if it exists, for
    gguf:export:NAME."""
    from lettingo_cli.backends import load_backend
    from lettingo_cli.written import is_written, load_written

    store = None
    if store_path.exists():
        from lettingo_cli.store import Store

        store = Store(store_path, create=False)
    if is_written(spec):
        if spec.startswith("swap:"):
            raise UsageError("swap:REF gives users another user's profiles from a store; it needs `lettingo gen`")
        return load_written(spec, store)
    return load_backend(spec, store=store)
