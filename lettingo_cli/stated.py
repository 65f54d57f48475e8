"""What a profile states, read back: the values ("4/5", "1,234 plays") as numbers the way the split's prompts write
them (what the reader, predictors/reader.py, feeds on, and what pair's and sft's faithfulness checks compare with
the history), and the titles it names, looked up in the user's history (a profile that invents films is a defect)."""

from __future__ import annotations

import math
import re

from lettingo_cli.split_data import item_ratings, load_histories, value_words
from lettingo_cli.store import Artifact, Store

NEWEST = 10  # the stated values counted as the newest: the last ones in the text
VALUE_FEATURES = 7


class StatedValues:
    """Reads the values a text states the way the split's prompts write them ("4/5", "1,234 plays") as numbers."""

    def __init__(self, words: str, split_params: dict, global_mean: float):
        """`words`: the split's template ("{value}/5"); `split_params`: its sentiment rule and thresholds."""
        before, _, after = words.partition("{value}")
        number = r"(\d[\d,]*(?:\.\d+)?)"
        self.pattern = re.compile(re.escape(before) + number + re.escape(after))
        self.ratings = split_params.get("sentiment", "thresholds") == "thresholds"  # else counts: on a log scale
        self.dislike_max = split_params.get("dislike_max", 2)
        self.like_min = split_params.get("like_min", 4)
        self.centre = self._scaled(global_mean)

    def _scaled(self, value: float) -> float:
        return value if self.ratings else math.log1p(value)

    def lines(self, text: str) -> list[tuple[str, float]]:
        """(line, value) for each stated value, in the order of the text."""
        found = []
        for line in text.splitlines():
            for match in self.pattern.finditer(line):
                try:
                    found.append((line.lower(), float(match.group(1).replace(",", ""))))
                except ValueError:
                    continue
        return found

    def level_error(self, text: str, values: list[float]) -> float | None:
        """How far the mean of the values `text` states lies from the mean of `values` (e.g. the ratings the
        profile was written from), on the reader's scale (stars, or log counts); None when it states none."""
        stated = [self._scaled(v) for _, v in self.lines(text)]
        if not stated or not values:
            return None
        return abs(sum(stated) / len(stated) - sum(self._scaled(v) for v in values) / len(values))

    def features(self, text: str, item_attributes: list[str]) -> list[float]:
        stated = self.lines(text)
        if not stated:
            return [0.0] * VALUE_FEATURES
        values = [v for _, v in stated]
        scaled = [self._scaled(v) for v in values]
        mean = sum(scaled) / len(scaled)
        spread = math.sqrt(sum((v - mean) ** 2 for v in scaled) / len(scaled))
        newest = scaled[-NEWEST:]
        matching = [self._scaled(v) for line, v in stated if any(a in line for a in item_attributes)]
        liked = disliked = 0.0
        if self.ratings:
            liked = sum(v >= self.like_min for v in values) / len(values)
            disliked = sum(v <= self.dislike_max for v in values) / len(values)
        return [
            math.log1p(len(values)) / 5,
            mean - self.centre,
            spread,
            liked,
            disliked,
            sum(newest) / len(newest) - self.centre,
            (sum(matching) / len(matching) - mean) if matching else 0.0,
        ]


def stated_values(store: Store, split: Artifact) -> StatedValues:
    """How stated values ("4/5") of this split are read (the reader's way)."""
    return StatedValues(value_words(split), split.params, item_ratings(store, split).global_mean)


# A named title: quoted text ('"Heat (1995) | Action": liked', the prompts' own line format), or a run of capitalised
# words (with the small words titles have) right before a year in parentheses ("loved Star Wars (1977)").
SMALL = {"of", "the", "and", "a", "an", "in", "on", "to", "for", "with", "from", "at", "by", "de", "la", "le"}
QUOTED = re.compile(r'["\u201c]([^"\u201c\u201d\n]{2,160})["\u201d]')
SMALL_WORDS = "(?:" + "|".join(sorted(SMALL)) + ")"
WITH_YEAR = re.compile(rf"([A-Z0-9][^\s(]*(?:\s+(?:[A-Z0-9][^\s(]*|{SMALL_WORDS}))*)\s*\((?:19|20)\d\d\)")
# Articles a title may begin with, or carry at its end the way MovieLens files them ("Godfather, The (1972)",
# "Postino, Il (1994)"): "The Godfather", "Godfather, The" and "Godfather" are one title.
ARTICLES = {"the", "a", "an", "il", "la", "le", "les", "l", "el", "los", "las", "das", "der", "die", "den", "det"}
VALUE = re.compile(r"\d\s*/\s*\d")  # a quoted "4/5" or "5/5 and" is a stated value, not a film
TITLE_MATCH = 2  # the matcher's version (sft records it: 1 had no articles, alternate titles or value fragments)


def _without_articles(words: list[str]) -> list[str]:
    """A title's words without a leading or trailing article (a one-word title keeps its word)."""
    if len(words) > 1 and words[0] in ARTICLES:
        words = words[1:]
    if len(words) > 1 and words[-1] in ARTICLES:
        words = words[:-1]
    return words


def title_key(item_text: str, alternate: bool = False) -> str:
    """An item's title as titles are compared: the text before " | ", without its year (and, unless `alternate`,
    without any other part in parentheses: "My Life as a Dog (Mitt liv som hund) (1985)"), lowercased, words only,
    without a leading or trailing article."""
    title = re.sub(r"\((?:19|20)\d\d\)", " ", item_text.partition(" | ")[0])
    if not alternate:
        title = re.sub(r"\([^)]*\)", " ", title)
    return " ".join(_without_articles(re.findall(r"\w+", title.lower())))


def known_titles(history: list[dict]) -> dict[str, dict]:
    """The titles of a history as a profile may name them ({key: row}): each item's title with and without the
    alternate title MovieLens gives in parentheses."""
    known = {}
    for row in history:
        for alternate in (True, False):
            known.setdefault(title_key(row["text"], alternate), row)
    return known


def named_titles(text: str) -> list[str]:
    """The titles a profile names (their `title_key`s, each once, in order); a quoted value ("4/5") is none."""
    found = [match.group(1) for match in QUOTED.finditer(text)]
    found += [match.group(1) for match in WITH_YEAR.finditer(QUOTED.sub(" ", text))]
    keys = (title_key(name) for name in found if not _a_value(name))
    return list(dict.fromkeys(key for key in keys if key))


def _a_value(name: str) -> bool:
    """Whether a quoted name is a stated value ("4/5", "5/5 and"), not a title: a value, numbers and small words."""
    words = re.findall(r"\w+", name.lower())
    return bool(VALUE.search(name)) and all(word in SMALL | ARTICLES or word.isdigit() for word in words)


def titles_found(text: str, history: list[dict]) -> tuple[int, int]:
    """(how many of the titles a profile names are in the history it was written from, how many it names). A title
    read before a year counts as found when its last words are a known title ("Loved Heat (1995)": "heat")."""
    return _found(named_titles(text), known_titles(history))


def _found(named: list[str], known) -> tuple[int, int]:
    return sum(_known(key, known) is not None for key in named), len(named)


def _known(key: str, known) -> str | None:
    """The known title a named title is (itself, or its last words, with or without a leading article), or None."""
    words = key.split()
    for start in range(len(words)):
        for candidate in (words[start:], _without_articles(words[start:])):
            if " ".join(candidate) in known:
                return " ".join(candidate)
    return None


def faithfulness(store: Store, profiles: Artifact, users: set[str] | None = None) -> dict:
    """What a profiles artifact's profiles (of `users`, if given) state against the histories they were written
    from: the share that state a value, the titles they name and the share of those in the user's history, and
    the mean |stated - true| value on lines that name a title of the history and state a value."""
    split = store.get(profiles.params["split"])
    stated = stated_values(store, split)
    rows = [row for row in store.rows(profiles, "profiles") if users is None or row["user_id"] in users]
    histories = load_histories(store, split, sorted({row["user_id"] for row in rows}), profiles.params["history"])
    stating, named, found, errors = 0, 0, 0, []
    for row in rows:
        history = histories[row["user_id"]]
        known = known_titles(history)
        ratings = {key: item["rating"] for key, item in known.items()}
        hits, names = _found(named_titles(row["text"]), known)
        found, named = found + hits, named + names
        states = False
        for line in row["text"].splitlines():
            values = [value for _, value in stated.lines(line)]
            states = states or bool(values)
            titles = [match for match in (_known(key, ratings) for key in named_titles(line)) if match is not None]
            if values and titles:
                errors.append(abs(values[0] - ratings[titles[0]]))
        stating += states
    return {
        "profiles": len(rows),
        "stating_a_value": round(stating / len(rows), 4) if rows else None,
        "titles_named": named,
        "titles_in_history": round(found / named, 4) if named else None,
        "stated_value_error": round(sum(errors) / len(errors), 4) if errors else None,
        "stated_values_checked": len(errors),
    }
