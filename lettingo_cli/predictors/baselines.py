"""The trivial baselines every predictor must beat, on the same users and targets (eval reports both):

    always-majority   the majority label of the split's train targets, for everyone
    recent-mean       the mean of the user's recent ratings, rounded half up, mapped with the split's thresholds

On MovieLens 100K (default split, 189 test users) they score 0.519 and 0.582 accuracy: a predictor below them
is not measuring profiles.
"""

from __future__ import annotations

import math

from lettingo_cli.split import SENTIMENTS, sentiment
from lettingo_cli.store import Artifact

BASELINES = ("always_majority", "recent_mean")


def majority_label(split: Artifact) -> str:
    """The most frequent label of the split's train targets (ties: like before neutral before dislike)."""
    train = split.report["class_balance"]["train"]
    return max(SENTIMENTS, key=lambda label: (train.get(label, 0), -SENTIMENTS.index(label)))


def recent_mean_label(recent: list[dict], split: Artifact) -> str:
    """The user's mean recent rating, rounded half up (3.5 -> 4), as a label with the split's thresholds; in a
    per-user-quantile split (no thresholds), the most frequent recent label."""
    if not recent:
        return majority_label(split)
    if split.params.get("sentiment") == "per-user-quantile":
        counts = {label: sum(row["sentiment"] == label for row in recent) for label in SENTIMENTS}
        return max(SENTIMENTS, key=lambda label: (counts[label], -SENTIMENTS.index(label)))
    mean = sum(row["rating"] for row in recent) / len(recent)
    return sentiment(math.floor(mean + 0.5), split.params["dislike_max"], split.params["like_min"])


def baseline_labels(split: Artifact, recent_by_user: dict[str, list[dict]]) -> dict[str, dict[str, str]]:
    """{baseline: {user: label}}: each baseline's answer for each user (the same for all of a user's targets)."""
    majority = majority_label(split)
    return {
        "always_majority": dict.fromkeys(recent_by_user, majority),
        "recent_mean": {user: recent_mean_label(rows, split) for user, rows in recent_by_user.items()},
    }
