"""The values a profile states ("4/5", "1,234 plays"), read as numbers the way the split's prompts write them:
what the reader (predictors/reader.py) feeds on and what pair's faithfulness check compares with the history."""

from __future__ import annotations

import math
import re

from lettingo_cli.split_data import item_ratings, value_words
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
