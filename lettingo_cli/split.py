"""Stage `split`: the LettinGo data protocol (docs/method.md) over a dataset artifact, and the readers of a
split that the later stages share.

Per user, interactions sorted by (time, item id): the last `targets` are held out, the `recent` before
them are the raw recent history the predictor sees, and up to `history` before those are the older
history profiles are written from. Users are split into disjoint train and test sets by a seeded shuffle.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import asdict, dataclass

from lettingo_cli.console import log
from lettingo_cli.errors import UsageError
from lettingo_cli.options import option, stable_key
from lettingo_cli.prompts import clean_field
from lettingo_cli.store import Artifact, Store

SENTIMENTS = ("like", "neutral", "dislike")  # the three labels, in the order every table and matrix uses
SENTIMENT_MODES = ("thresholds", "per-user-quantile")
ORDERS = ("time", "file", "shuffle")
# split options added later, with their defaults
LATER_OPTIONS = {"sentiment": "thresholds", "value_words": None, "order": None}
SORTED_SHARE = 0.5  # more of the users than this have rows sorted by item id or value in file order: warn
SORTED_MIN_ROWS = 5  # a user needs this many rows for their order to say anything
STARS = "{value}/5"  # how a rating is shown when a split does not say (value_words None)
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
    from lettingo_cli.ingest import item_order

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
    run = store.stage("split", "split", name, params, {"dataset": dataset.id}, key_params=key, force=force, atomic=True)
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


# --- reading a split: the users, the profile history, the recent history and the targets -------------------


@dataclass(frozen=True)
class Target:
    """A held-out interaction: its position among the user's targets, the item's text and the true label."""

    position: int
    text: str
    sentiment: str


def select_users(store: Store, split: Artifact, selector: str, listed: list[str] | None = None) -> list[str]:
    """all | train | test | N (the first N users of the split by id) | train:N, test:N (the first N of that
    partition by id) | id,id,... | - (ids given in `listed`)."""
    partitions = {row["user_id"]: row["partition"] for row in store.rows(split, "split_users")}
    part, colon, count = selector.partition(":")
    if colon and part in ("all", "train", "test") and count.isdigit():
        return select_users(store, split, part)[: int(count)]
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
