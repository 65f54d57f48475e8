"""Stage `split`: the LettinGo data protocol (docs/method.md) over a dataset artifact. (What the later stages
read of a split is in split_data.py, the sentiment labels in sentiments.py.)

Per user, interactions sorted by (time, item id): the last `targets` are held out, the `recent` before
them are the raw recent history the predictor sees, and up to `history` before those are the older
history profiles are written from. Users are split into disjoint train and test sets by a seeded shuffle.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from lettingo_cli.console import log
from lettingo_cli.errors import UsageError
from lettingo_cli.items import item_order
from lettingo_cli.options import option, stable_key
from lettingo_cli.sentiments import SENTIMENTS, quantile_sentiments, sentiment
from lettingo_cli.split_data import LATER_OPTIONS
from lettingo_cli.store import Artifact, Store, Verbs

VERBS = Verbs("split", "split")

SENTIMENT_MODES = ("thresholds", "per-user-quantile")
ORDERS = ("time", "file", "shuffle")
SORTED_SHARE = 0.5  # more of the users than this have rows sorted by item id or value in file order: warn
SORTED_MIN_ROWS = 5  # a user needs this many rows for their order to say anything
IMBALANCE_SHARE = 0.9  # one label holding more of the targets than this leaves little to predict: warn


@dataclass(frozen=True)
class SplitOptions:
    """The options of `lettingo split` (each field is also its flag and a key of its --config YAML)."""

    targets: int = option(1, "Held-out target interactions per user (the last K).")
    recent: int = option(10, "Recent interactions before the targets (the predictor's 10H; 0: profile only).")
    history: int = option(30, "Most older interactions profiles are written from.")
    min_interactions: int = option(20, "Users with fewer interactions are left out (71 = paper).")
    test_users: float = option(0.2, "Test users: a fraction (< 1) or a count.")
    train_users: int | None = option(None, "At most this many train users (default: all the rest).")
    seed: int = option(0, "Seed of the user shuffle.")
    dislike_max: int = option(2, "Ratings (rounded down) at or below this are 'dislike'.")
    like_min: int = option(4, "Ratings (rounded down) at or above this are 'like'.")
    sentiment: str = option(
        "thresholds",
        "thresholds (ratings: --dislike-max / --like-min) | per-user-quantile (counts, clicks: each user's top "
        "third of values is like, bottom third dislike, by mid-rank).",
    )
    value_words: str | None = option(
        None,
        'How prompts show a value; "{value}" is the number, e.g. "played {value} times" (default: "{value}/5", '
        'or "{value} <rating column>" with per-user-quantile).',
    )
    order: str | None = option(
        None,
        "time (data with a time column) | file (the file's row order: the default without one) | shuffle (a "
        "seeded random order per user: the targets are a random sample of the user's items).",
    )

    def __post_init__(self) -> None:
        if self.order is not None and self.order not in ORDERS:
            raise UsageError(f"--order must be one of {', '.join(ORDERS)}")
        if self.value_words is not None and "{value}" not in self.value_words:
            raise UsageError('--value-words must contain "{value}", e.g. "played {value} times"')
        if self.sentiment not in SENTIMENT_MODES:
            raise UsageError(f"--sentiment must be one of {', '.join(SENTIMENT_MODES)}")
        if self.targets < 1 or self.recent < 0 or self.history < 1:
            raise UsageError("--targets and --history must be >= 1 and --recent >= 0")
        if self.test_users < 0 or (self.train_users is not None and self.train_users < 0):
            raise UsageError("--test-users and --train-users must be >= 0")
        if self.dislike_max >= self.like_min:
            raise UsageError("--dislike-max must be below --like-min")


def imbalance_warnings(balance: dict, options: SplitOptions | None = None, order: str = "time") -> list[str]:
    """A warning per partition whose targets are more than IMBALANCE_SHARE one label, naming the remedies not
    tried yet."""
    options = options or SplitOptions()
    remedies = []
    if order == "file":
        remedies.append("without a time column the file order decides the targets: try --order shuffle")
    if options.sentiment != "per-user-quantile":
        remedies.append("for play counts, clicks or other implicit values use --sentiment per-user-quantile")
        remedies.append("for ratings on another scale set --dislike-max / --like-min")
    warnings = []
    for part, counts in balance.items():
        total = sum(counts.values())
        label, top = max(counts.items(), key=lambda item: item[1]) if total else ("", 0)
        if total and top / total > IMBALANCE_SHARE:
            warnings.append(
                f"warning: {top / total:.0%} of the {part} targets are {label!r}: a predictor that always says "
                f"{label!r} is right that often" + (". " + "; ".join(remedies) if remedies else "")
            )
    return warnings


def _sorted_by(values: list) -> bool:
    """Sorted either way, and not merely all equal (a user who gave every item the same value says nothing)."""
    ascending = all(a <= b for a, b in zip(values, values[1:]))
    return len(set(values)) > 1 and (ascending or all(a >= b for a, b in zip(values, values[1:])))


def order_warning(by_user: dict[str, list[dict]]) -> str | None:
    """Without a time column, whether most users' rows in file order are sorted by item id or by value (an
    exported table's order, not the order the user met the items): then the targets would be the highest ids or
    values, not the latest interactions."""
    users = [events for events in by_user.values() if len(events) >= SORTED_MIN_ROWS]
    by_item = sum(_sorted_by([item_order(e["item_id"]) for e in events]) for events in users)
    by_value = sum(_sorted_by([e["rating"] for e in events]) for events in users)
    column, count = max((("item id", by_item), ("value", by_value)), key=lambda entry: entry[1])
    if users and count / len(users) > SORTED_SHARE:
        return (
            f"warning: the data has no time column, so each user's file order is taken as time order, but "
            f"{count / len(users):.0%} of the users' rows are sorted by {column}: the held-out targets would be the "
            "rows at one end of that sort, not the latest interactions. Use --order shuffle (targets: a random "
            "sample of each user's items)"
        )
    return None


def split_dataset(store: Store, dataset: Artifact, name: str, options: SplitOptions, force: bool = False) -> Artifact:
    params = {"dataset": dataset.id, **asdict(options)}
    if options.value_words is None and options.sentiment == "per-user-quantile":
        column = dataset.params.get("columns", {}).get("rating") or "value"
        params["value_words"] = "{value} " + column  # "1,234 plays"
    key = stable_key(params, LATER_OPTIONS, name)
    run = store.stage(
        "split", "split", name, params, {"dataset": dataset.id}, key_params=key, force=force, atomic=True, verbs=VERBS
    )
    if run.cached:
        return run.cached

    has_time = (dataset.params.get("columns") or {}).get("time", "time") is not None
    order = options.order or ("time" if has_time else "file")
    if has_time and order != "time":
        raise UsageError(f"{dataset.ref} has a time column: --order time is the only order it takes")
    if not has_time and order == "time":
        raise UsageError(f"{dataset.ref} has no time column: use --order file or --order shuffle")
    by_user: dict[str, list[dict]] = {}
    for row in store.rows(dataset, "interactions"):
        by_user.setdefault(row["user_id"], []).append(row)
    if order == "file" and (warning := order_warning(by_user)):
        log(warning)
    if order == "shuffle":  # each user's own seeded order, the same whatever other users the data holds
        for user_id, events in by_user.items():
            random.Random(f"{options.seed}:{user_id}").shuffle(events)
    for events in by_user.values():
        if options.sentiment == "per-user-quantile":
            labels = quantile_sentiments([event["rating"] for event in events])
        else:
            labels = [sentiment(event["rating"], options.dislike_max, options.like_min) for event in events]
        for event, label in zip(events, labels):
            event["sentiment"] = label
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
                        "sentiment": event["sentiment"],
                    }

    balance = {part: dict.fromkeys(SENTIMENTS, 0) for part in ("train", "test")}
    for user_id, part in partition.items():
        for event in by_user[user_id][-options.targets :]:
            balance[part][event["sentiment"]] += 1
    for warning in imbalance_warnings(balance, options, order):
        log(warning)

    with run:
        users = ({"user_id": u, "partition": p} for u, p in sorted(partition.items()))
        store.insert_rows(run.artifact, "split_users", users)
        store.insert_rows(run.artifact, "split_interactions", interaction_rows())
        counts = {
            "users": len(partition),
            "train_users": len(train),
            "test_users": len(test),
            "targets": len(partition) * options.targets,
            "skipped_users": len(by_user) - len(eligible),
        }
        return run.finish(counts=counts, report={"class_balance": balance, "order": order})


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
