"""Stage `split`: the LettinGo data protocol (docs/method.md) over a dataset artifact.

Per user, interactions sorted by (time, item id): the last `targets` are held out, the `recent` before
them are the raw recent history the predictor sees, and up to `history` before those are the older
history profiles are written from. Users are split into disjoint train and test sets by a seeded shuffle.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

from lettingo_cli.errors import UsageError
from lettingo_cli.store import Artifact, Store, log

SENTIMENTS = ("like", "neutral", "dislike")


@dataclass(frozen=True)
class SplitOptions:
    targets: int = 1
    recent: int = 10
    history: int = 30
    min_interactions: int = 20
    test_users: float = 0.2  # a fraction of the eligible users when < 1, else a count
    train_users: int | None = None  # cap on train users (all the others when None)
    seed: int = 0
    dislike_max: int = 2  # rating (rounded down) <= this is a dislike
    like_min: int = 4  # rating (rounded down) >= this is a like

    def check(self) -> None:
        if self.targets < 1 or self.recent < 0 or self.history < 1:
            raise UsageError("--targets and --history must be >= 1 and --recent >= 0")
        if self.test_users < 0 or (self.train_users is not None and self.train_users < 0):
            raise UsageError("--test-users and --train-users must be >= 0")
        if self.dislike_max >= self.like_min:
            raise UsageError("--dislike-max must be below --like-min")


def sentiment(rating: float, dislike_max: int = 2, like_min: int = 4) -> str:
    """1-5 ratings: <= 2 dislike, 3 neutral, >= 4 like; half stars round down (3.5 is neutral)."""
    stars = math.floor(rating)
    if stars <= dislike_max:
        return "dislike"
    if stars >= like_min:
        return "like"
    return "neutral"


def split_dataset(store: Store, dataset: Artifact, name: str, options: SplitOptions, force: bool = False) -> Artifact:
    options.check()
    params = {"dataset": dataset.id, **asdict(options)}
    key = store.run_key("split", {"dataset": dataset.id}, {**params, "name": name})
    if not force and (cached := store.cached(key)) is not None:
        log(f"already split as {cached.ref} (use --force to split again)")
        return cached

    by_user: dict[str, list[dict]] = {}
    for row in store.rows(dataset, "interactions"):
        by_user.setdefault(row["user_id"], []).append(row)
    needed = max(options.min_interactions, options.targets + options.recent + 1)
    eligible = sorted(user for user, events in by_user.items() if len(events) >= needed)
    if not eligible:
        raise UsageError(f"no user of {dataset.ref} has >= {needed} interactions; lower --min-interactions")

    shuffled = list(eligible)
    random.Random(options.seed).shuffle(shuffled)
    if options.test_users < 1:
        n_test = round(options.test_users * len(shuffled))
    else:
        n_test = min(int(options.test_users), len(shuffled))
    test = shuffled[:n_test]
    train = shuffled[n_test:]
    if options.train_users is not None:
        train = train[: options.train_users]
    partition = {**{u: "train" for u in train}, **{u: "test" for u in test}}

    def interaction_rows():
        for user_id in sorted(partition):
            events = by_user[user_id]  # already in seq order
            targets = events[-options.targets :]
            recent = events[-options.targets - options.recent : -options.targets] if options.recent else []
            older = events[: len(events) - options.targets - options.recent]
            history = older[-options.history :]
            for role, chunk in (("history", history), ("recent", recent), ("target", targets)):
                for position, event in enumerate(chunk):
                    yield {
                        "user_id": user_id,
                        "role": role,
                        "position": position,
                        "item_id": event["item_id"],
                        "rating": event["rating"],
                        "ts": event["ts"],
                        "sentiment": sentiment(event["rating"], options.dislike_max, options.like_min),
                    }

    balance = {part: dict.fromkeys(SENTIMENTS, 0) for part in ("train", "test")}
    for user_id, part in partition.items():
        for event in by_user[user_id][-options.targets :]:
            balance[part][sentiment(event["rating"], options.dislike_max, options.like_min)] += 1

    with store.db.atomic():
        run_id = store.start_run("split", key, params, {"dataset": dataset.id})
        artifact = store.begin("split", name, params, run_id)
        store.insert_rows(
            artifact, "split_users", ({"user_id": u, "partition": p} for u, p in sorted(partition.items()))
        )
        store.insert_rows(artifact, "split_interactions", interaction_rows())
        counts = {
            "users": len(partition),
            "train_users": len(train),
            "test_users": len(test),
            "targets": len(partition) * options.targets,
            "skipped_users": len(by_user) - len(eligible),
        }
        return store.finalize(artifact, counts=counts, report={"class_balance": balance})


def format_balance(balance: dict) -> list[str]:
    """Lines of the targets' class balance per partition, for stderr."""
    lines = []
    for part, counts in balance.items():
        total = sum(counts.values())
        shares = ", ".join(
            f"{label} {counts[label]} ({counts[label] / total:.0%})" if total else f"{label} 0" for label in SENTIMENTS
        )
        lines.append(f"{part}: {total} targets: {shares}")
    return lines
