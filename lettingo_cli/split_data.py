"""What the stages read of a split (stage `split` writes it): the users and their partitions, each user's profile
history, recent history and held-out targets, how a split shows a value in prompts, and the items' rating
statistics over the rows no target is among."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lettingo_cli.errors import UsageError
from lettingo_cli.prompts import clean_field
from lettingo_cli.store import Artifact, Store

# split options added later, with their defaults (a split made before an option existed used its default)
LATER_OPTIONS = {"sentiment": "thresholds", "value_words": None, "order": None}
STARS = "{value}/5"  # how a rating is shown when a split does not say (value_words None)


@dataclass(frozen=True)
class Target:
    """A held-out interaction: its position among the user's targets, the item's text and the true label."""

    position: int
    text: str
    sentiment: str


def select_users(store: Store, split: Artifact, selector: str, listed: list[str] | None = None) -> list[str]:
    """all | train | test | N (the first N users of the split by id) | train:N, test:N (the first N of that
    partition by id) | train:A:B, test:A:B (that partition's users A to B-1 by id, e.g. validation users after
    the first A) | id,id,... | - (ids given in `listed`)."""
    partitions = {row["user_id"]: row["partition"] for row in store.rows(split, "split_users")}
    part, colon, count = selector.partition(":")
    start, _, stop = count.partition(":")
    if colon and part in ("all", "train", "test") and start.isdigit() and (stop.isdigit() or not stop):
        users = select_users(store, split, part)
        chosen = users[int(start) : int(stop)] if stop else users[: int(start)]
        if not chosen:
            raise UsageError(f"--users {selector} selects no user of {split.ref}")
        return chosen
    if selector in ("all", "train", "test"):
        users = [u for u, p in partitions.items() if selector == "all" or p == selector]
    elif selector.isdigit():
        users = sorted(partitions)[: int(selector)]
    else:
        wanted = listed if selector == "-" else [u.strip() for u in selector.split(",") if u.strip()]
        unknown = [u for u in wanted if u not in partitions]
        if unknown:
            raise UsageError(f"user(s) not in {split.ref}: {', '.join(unknown[:5])}")
        users = list(dict.fromkeys(wanted))
    if not users:
        raise UsageError(f"--users {selector} selects no user of {split.ref}")
    return sorted(users)


PARTITION_PARAMS = ("dataset", "seed", "test_users", "train_users", "sentiment", "dislike_max", "like_min", "order")


def profiles_fit_split(profile_split: Artifact, split: Artifact) -> bool:
    """Whether profiles written from `profile_split`'s profile history may be judged on `split`'s targets without
    having seen any of them: both splits choose and partition the same users, and that history ends
    `recent + targets` interactions before each user's last one, so no later than `split`'s first target. (A
    split with 1 target and 10 recent ratings lends its profiles to splits of up to 11 targets.)"""
    if profile_split.id == split.id:
        return True

    def needed(params: dict) -> int:  # split_dataset's eligibility rule
        return max(params["min_interactions"], params["targets"] + params["recent"] + 1)

    def param(params: dict, key: str):  # a split made before an option existed used its default
        return params.get(key, LATER_OPTIONS.get(key))

    return (
        all(param(profile_split.params, k) == param(split.params, k) for k in PARTITION_PARAMS)
        and needed(profile_split.params) == needed(split.params)
        and profile_split.params["recent"] + profile_split.params["targets"] >= split.params["targets"]
    )


def value_words(split: Artifact) -> str:
    """The split's template for showing a value in prompts (splits made before --value-words show stars)."""
    return split.params.get("value_words") or STARS


def in_words(value: float, words: str = STARS) -> str:
    """A rating or count as prompts show it: 4 -> "4/5", 4.5 -> "4.5/5"; with "{value} plays", 1234 -> "1,234 plays"."""
    number = f"{int(value):,}" if float(value).is_integer() else f"{value:,.4g}"
    return words.replace("{value}", number)


def load_histories(store: Store, split: Artifact, users: list[str], history: int) -> dict[str, list[dict]]:
    """Each user's profile history (never the recent history or the targets), the most recent `history`
    rows, oldest first, with the item text from the split's dataset and the value in words ("shown")."""
    words = value_words(split)
    rows: dict[str, list[dict]] = {u: [] for u in users}
    for row in store.split_interactions(split, ("history",)):
        if row["user_id"] in rows:
            rows[row["user_id"]].append({**row, "shown": in_words(row["rating"], words)})
    return {user: events[-history:] for user, events in rows.items()}


def profile_only(split: Artifact) -> bool:
    """Whether the split gives the predictor no recent history: the profile is the user's whole representation
    (RLPF, DUET, LettinGo's released GRPO code), not the paper's 10H + profile."""
    return split.params.get("recent", 10) == 0


@dataclass(frozen=True)
class ItemRatings:
    """Each item's rating count and sum over a split's history and recent rows (targets never count), by item text."""

    counts: dict[str, tuple[int, float]]
    global_mean: float

    def mean(self, item_text: str, prior_ratings: float = 0.0) -> float:
        """The item's mean rating, shrunk towards the global mean as if it had `prior_ratings` more such ratings;
        an item nobody rated outside the targets gets the global mean."""
        n, total = self.counts.get(item_text, (0, 0.0))
        if n + prior_ratings == 0:
            return self.global_mean
        return (total + prior_ratings * self.global_mean) / (n + prior_ratings)

    def popularity(self, item_text: str) -> float:
        return math.log1p(self.counts.get(item_text, (0, 0.0))[0])


def item_ratings(store: Store, split: Artifact) -> ItemRatings:
    counts: dict[str, tuple[int, float]] = {}
    total, count = 0.0, 0
    for row in store.split_interactions(split, ("history", "recent")):
        text = clean_field(row["text"])  # as targets show it
        n, s = counts.get(text, (0, 0.0))
        counts[text] = (n + 1, s + row["rating"])
        total, count = total + row["rating"], count + 1
    return ItemRatings(counts, total / count if count else 3.0)


def train_users(store: Store, split: Artifact) -> list[str]:
    """The split's train users, by id."""
    return sorted(row["user_id"] for row in store.rows(split, "split_users", partition="train"))


def load_recent_and_targets(
    store: Store, split: Artifact, users: list[str], targets: int
) -> tuple[dict[str, list[dict]], dict[str, list[Target]]]:
    """Recent-history rows (text, sentiment, rating, shown) and the first `targets` held-out targets of each user."""
    words = value_words(split)
    recent: dict[str, list[dict]] = {u: [] for u in users}
    held_out: dict[str, list[Target]] = {u: [] for u in users}
    for row in store.split_interactions(split, ("recent", "target")):
        user = row["user_id"]
        if user not in recent:
            continue
        if row["role"] == "recent":
            recent[user].append(
                {**{k: row[k] for k in ("text", "sentiment", "rating")}, "shown": in_words(row["rating"], words)}
            )
        elif len(held_out[user]) < targets:
            held_out[user].append(Target(row["position"], clean_field(row["text"]), row["sentiment"]))
    return recent, held_out
