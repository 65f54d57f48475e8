"""The trivial baselines every predictor must beat, on the same users and targets (eval reports them):

    always-majority   the majority label of the split's train targets, for everyone (both protocols)
    recent-mean       the mean of the user's recent ratings, rounded half up, mapped with the split's thresholds
                      (10H + profile: what the recent history alone says)
    item-mean         the target item's mean rating over the split's non-target rows, mapped the same way
                      (profile only: what the item alone says)
    history-mean      the mean of the user's profile-history ratings, mapped the same way (profile only: what
                      any profile could at least state)

On MovieLens 100K (default split, 189 test users) always-majority and recent-mean score 0.519 and 0.582
accuracy: a predictor below them is not measuring profiles.
"""

from __future__ import annotations

import math
from collections import Counter

from lettingo_cli.sentiments import SENTIMENTS, sentiment
from lettingo_cli.split_data import ItemRatings, Target, profile_only
from lettingo_cli.store import Artifact

TEN_H_BASELINES = ("always_majority", "recent_mean")
PROFILE_ONLY_BASELINES = ("always_majority", "item_mean", "history_mean")


def baselines_for(split: Artifact) -> tuple[str, ...]:
    """The baselines that fit the split's protocol."""
    return PROFILE_ONLY_BASELINES if profile_only(split) else TEN_H_BASELINES


def majority_label(split: Artifact) -> str:
    """The most frequent label of the split's train targets (ties: like before neutral before dislike)."""
    train = split.report["class_balance"]["train"]
    return max(SENTIMENTS, key=lambda label: (train.get(label, 0), -SENTIMENTS.index(label)))


def _most_frequent(labels: list[str]) -> str:
    counts = Counter(labels)
    return max(SENTIMENTS, key=lambda label: (counts[label], -SENTIMENTS.index(label)))


def _mapped(mean: float, split: Artifact) -> str:
    return sentiment(math.floor(mean + 0.5), split.params["dislike_max"], split.params["like_min"])


def mean_label(rows: list[dict], split: Artifact) -> str:
    """The mean rating of `rows` (recent or profile-history rows), rounded half up (3.5 -> 4), as a label with the
    split's thresholds; in a per-user-quantile split (no thresholds), their most frequent label."""
    if not rows:
        return majority_label(split)
    if split.params.get("sentiment") == "per-user-quantile":
        return _most_frequent([row["sentiment"] for row in rows])
    return _mapped(sum(row["rating"] for row in rows) / len(rows), split)


def item_mean_label(target: Target, items: ItemRatings, split: Artifact) -> str:
    """The target item's mean rating over non-target rows, mapped (an item nobody rated: the global mean); in a
    per-user-quantile split, where values of different users do not compare, the majority label."""
    if split.params.get("sentiment") == "per-user-quantile":
        return majority_label(split)
    return _mapped(items.mean(target.text), split)


def baseline_answers(
    split: Artifact,
    users: list[str],
    recent: dict[str, list[dict]],
    histories: dict[str, list[dict]],
    targets: dict[str, list[Target]],
    items: ItemRatings | None,
) -> dict[str, dict[tuple[str, int], str]]:
    """{baseline: {(user, target position): label}}: each of the split's baselines' answer for each target."""
    majority = majority_label(split)
    answers: dict[str, dict[tuple[str, int], str]] = {name: {} for name in baselines_for(split)}
    for user in users:
        per_user = {  # the baselines that answer the same for all of a user's targets
            "always_majority": majority,
            "recent_mean": mean_label(recent.get(user, []), split),
            "history_mean": mean_label(histories.get(user, []), split),
        }
        for target in targets[user]:
            for name in answers:
                label = item_mean_label(target, items, split) if name == "item_mean" else per_user[name]
                answers[name][(user, target.position)] = label
    return answers
