"""The sentiment labels every stage predicts and reports: what they are, and how a value becomes one."""

from __future__ import annotations

import bisect
import math

SENTIMENTS = ("like", "neutral", "dislike")  # the three labels, in the order every table and matrix uses


def sentiment(rating: float, dislike_max: int = 2, like_min: int = 4) -> str:
    """1-5 ratings: <= 2 dislike, 3 neutral, >= 4 like; half stars round down (3.5 is neutral)."""
    stars = math.floor(rating)
    if stars <= dislike_max:
        return "dislike"
    if stars >= like_min:
        return "like"
    return "neutral"


def quantile_sentiments(values: list[float]) -> list[str]:
    """Each value's label among one user's values: its mid-rank share r (ties share their rank) is like when
    r >= 2/3, dislike when r < 1/3, neutral between."""
    ordered = sorted(values)
    labels = []
    for value in values:
        below = bisect.bisect_left(ordered, value)
        equal = bisect.bisect_right(ordered, value) - below
        share = (below + equal / 2) / len(values)
        labels.append("like" if share >= 2 / 3 else "dislike" if share < 1 / 3 else "neutral")
    return labels
