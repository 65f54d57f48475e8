"""Profiles written without an LLM: generators of `gen` like any backend, found by the same registry (so the controls
of an experiment are cached, versioned and evaluated like any profiles), that write from the history instead of
sampling a model:

    history-text[?tokens=N]  the profile history written out as the prompts' rating lines ("- "Heat (1995) |
                             Action": liked (5/5)"); with tokens=N, the newest whole lines that fit N tokens of
                             the default model's tokenizer (or the newest line's first N tokens)
    stats-text               a template profile from the profile history: rating level and spread, share
                             liked and disliked, the genres (or, without genres, the items) rated highest and
                             lowest, in plain sentences
    swap:PROFILES_REF        each user gets ANOTHER user's profiles from that artifact: its users in id order
                             (numeric ids numerically), each taking the next one's (the last takes the first's)

They are deterministic: one profile per user (sample 0) whatever `--n`, except swap, which copies every
profile of the donor.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from lettingo_cli.errors import UsageError, require
from lettingo_cli.items import item_genres
from lettingo_cli.prompts import history_line, history_text
from lettingo_cli.specs import Kind, Spec
from lettingo_cli.split_data import STARS, in_words

STATS_GENRE_MIN_ITEMS = 2  # a genre is named once the user rated at least this many of its items
STATS_TOP = 3  # genres (or items) named as rated highest
STATS_BOTTOM = 2  # ... and lowest
GENEROUS_SHARE = 0.6  # liked at least this share: "a generous rater"
HARSH_SHARE = 0.3  # disliked at least this share: "a harsh rater"


@dataclass
class WrittenGenerator:
    """A generator of `gen` that writes each user's profile from their history (no backend, no sampling)."""

    spec: str
    name: str  # the stable name stored with every profile
    details: dict = field(default_factory=dict)
    chat: bool = False
    write: object = None  # (user, history rows, the split's value words) -> [(text, n_tokens)]

    def close(self) -> None:
        pass


def load_text(spec: Spec, store=None) -> WrittenGenerator:
    """history-text[?tokens=N] and stats-text (the registry's kind `written`, named by these bare names)."""
    if spec.target == "history-text":
        unknown = set(spec.options) - {"tokens"}
        tokens = spec.options.get("tokens")
        if unknown or (tokens is not None and (not tokens.isdigit() or int(tokens) < 1)):
            raise UsageError(f"bad generator {spec.text!r}: use history-text or history-text?tokens=N (N >= 1)")
        counter = TokenCounter()
        budget = int(tokens) if tokens else None
        return WrittenGenerator(
            spec.text,
            "history-text" + (f"?tokens={budget}" if budget else ""),
            {"tokenizer": counter.name, "tokens": budget},
            write=lambda user, history, words: [history_profile(history, counter, budget)],
        )
    if spec.target == "stats-text":
        if spec.options:
            raise UsageError(f"bad generator {spec.text!r}: stats-text takes no options")
        counter = TokenCounter()
        return WrittenGenerator(
            spec.text,
            "stats-text",
            {"tokenizer": counter.name},
            write=lambda user, history, words: [(text := stats_profile(history, words), counter.count(text))],
        )
    raise UsageError(f"bad generator {spec.text!r}: use history-text[?tokens=N] or stats-text")


def load_swap(spec: Spec, store=None) -> WrittenGenerator:
    """swap:PROFILES_REF: each user gets another user's profiles of that artifact (a store's)."""
    if spec.options:
        raise UsageError(f"bad generator {spec.text!r}: swap:PROFILES_REF takes no options")
    if store is None:
        raise UsageError("swap:REF gives users another user's profiles from a store; it needs `lettingo gen`")
    source = store.resolve(spec.target, kind="profiles")
    donors = swap_donors(store, source)
    return WrittenGenerator(
        spec.text,
        f"swap:{source.name}@v{source.version}",
        {"profiles": source.id, "donor": "the next user of the artifact by id"},
        write=lambda user, history, words: _donated(donors, user, source),
    )


def _donated(donors: dict[str, list[tuple[str, int]]], user: str, source) -> list[tuple[str, int]]:
    if user not in donors:
        raise UsageError(f"swap:{source.ref} has no profiles of user {user}: swap within the users it has")
    return donors[user]


# --- the writers ---------------------------------------------------------------------------------------------


class TokenCounter:
    """Counts tokens with the default model's tokenizer (its GGUF's vocabulary through llama.cpp, no weights)."""

    name = "gemma-3-270m"

    def __init__(self):
        llama_cpp = require("llama_cpp", "llama-cpp-python")
        from lettingo_cli.gguf_files import quiet_llama_cpp
        from lettingo_cli.models import default_gguf

        quiet_llama_cpp(llama_cpp)
        self.model = llama_cpp.Llama(model_path=str(default_gguf()), vocab_only=True, verbose=False)

    def ids(self, text: str) -> list[int]:
        return self.model.tokenize(text.encode(), add_bos=False, special=False) if text else []

    def count(self, text: str) -> int:
        return len(self.ids(text))

    def cut(self, text: str, budget: int) -> str:
        return self.model.detokenize(self.ids(text)[:budget]).decode(errors="ignore")


def history_profile(history: list[dict], counter: TokenCounter, budget: int | None) -> tuple[str, int]:
    """The history as rating lines, oldest first; with a budget, the newest whole lines that fit it."""
    if budget is None:
        text = history_text(history)
        return text, counter.count(text)
    kept: list[str] = []
    for row in reversed(history):  # newest first, whole lines
        candidate = "\n".join([history_line(row), *kept])
        if counter.count(candidate) > budget:
            break
        kept.insert(0, history_line(row))
    if not kept and history:  # not even the newest line fits: its first `budget` tokens
        kept = [counter.cut(history_line(history[-1]), budget)]
    text = "\n".join(kept)
    return text, counter.count(text)


def _rater(history: list[dict]) -> str:
    liked = sum(row["sentiment"] == "like" for row in history) / len(history)
    disliked = sum(row["sentiment"] == "dislike" for row in history) / len(history)
    if liked >= GENEROUS_SHARE:
        return "A generous rater"
    if disliked >= HARSH_SHARE:
        return "A harsh, critical rater"
    return "A moderate rater"


def stats_profile(history: list[dict], words: str = STARS) -> str:
    """Plain sentences from the history's values, e.g. "A generous rater: average 4.1/5 over 30 items (spread
    0.8); liked 70%, disliked 10%. Rates highest: drama (4.5 over 8), comedy (4.2 over 5). Rates lowest: horror
    (2.0 over 3)." `words` is the split's way of showing a value, so counts read "1,234 plays"."""
    if not history:
        return ""
    values = [row["rating"] for row in history]
    mean, spread = statistics.fmean(values), statistics.pstdev(values)
    liked = sum(row["sentiment"] == "like" for row in history) / len(history)
    disliked = sum(row["sentiment"] == "dislike" for row in history) / len(history)
    sentences = [
        f"{_rater(history)}: average {in_words(round(mean, 1), words)} over {len(history)} items "
        f"(spread {spread:.1f}); liked {liked:.0%}, disliked {disliked:.0%}."
    ]
    by_genre: dict[str, list[float]] = {}
    for row in history:
        for genre in item_genres(row["text"]):
            by_genre.setdefault(genre, []).append(row["rating"])
    ranked = sorted(
        ((statistics.fmean(v), len(v), g) for g, v in by_genre.items() if len(v) >= STATS_GENRE_MIN_ITEMS),
        key=lambda entry: (-entry[0], -entry[1], entry[2]),
    )
    if ranked:
        top = ranked[:STATS_TOP]
        bottom = [entry for entry in ranked[::-1][:STATS_BOTTOM] if entry[0] < mean and entry not in top]
        named = lambda entries: ", ".join(f"{g} ({m:.1f} over {n})" for m, n, g in entries)  # noqa: E731
        sentences.append(f"Rates highest: {named(top)}.")
        if bottom:
            sentences.append(f"Rates lowest: {named(bottom)}.")
    else:  # no genres in the item text (e.g. Amazon): name the items themselves
        ordered = sorted(history, key=lambda row: -row["rating"])
        sentences.append("Rated highest: " + "; ".join(row["text"] for row in ordered[:STATS_TOP]) + ".")
        low = [row["text"] for row in ordered[::-1][:STATS_BOTTOM] if row["rating"] < mean]
        if low:
            sentences.append("Rated lowest: " + "; ".join(low) + ".")
    return " ".join(sentences)


def swap_donors(store, source) -> dict[str, list[tuple[str, int]]]:
    """{user: the next user's (text, tokens) profiles} over the users of `source`."""
    users = sorted(source.params["users"], key=lambda u: (len(u), u))
    by_user: dict[str, list[tuple[str, int]]] = {u: [] for u in users}
    for row in store.rows(source, "profiles"):
        by_user[row["user_id"]].append((row["text"], row["n_tokens"]))
    return {user: by_user[users[(i + 1) % len(users)]] for i, user in enumerate(users)}


WRITERS = ("history-text", "stats-text")  # the bare names of the kind `written`
KINDS = (
    Kind(
        "written",
        "history-text[?tokens=N] | stats-text (no model)",
        load_text,
        aliases=WRITERS,
        rank=2,
        model_free=True,
    ),
    Kind("swap", "swap:PROFILES_REF (another user's profiles)", load_swap, rank=2, model_free=True),
)
