"""A baseline for what a profile can add in the profile-only protocol: a reader that is handed the user's profile
history as exact numbers, not as text. (Not a ceiling: the paper runs' history-as-text arms beat it.)

A profile is written from the user's profile history (the 30 ratings before the targets). Whatever a profile
says, a predictor that reads it can at best know what those ratings hold. This benchmark gives a plain
multinomial logistic regression, fitted on the train users' targets, the target item's figures (its mean rating
over the split's non-target rows, shrunk as reader:bow shrinks it, and its popularity) and then, arm by arm,
figures computed exactly from the user's profile history:

  item only        no user at all (what "no profile" can reach)
  + user mean      the user's mean rating (what `reader:bow?user_mean=1` is given)
  + rating level   mean, spread and the share of each rating 1..5
  + taste          + the user's mean rating on the target's genres relative to their own mean, and how often
                   they rated those genres
  + newest 10      + the rating-level figures of the newest 10 of those ratings (recency)

Each arm minus "item only" on the same test users and targets, with the paired bootstrap interval `lettingo
eval` uses, is the most a perfect reader of a perfect profile could add. The arms are fixed in advance (not chosen
on the test users); the train users' 5-fold out-of-fold figures are reported beside them.

    python3 -m bench.profile_ceiling                                   # MovieLens 100K, --targets 4
    python3 -m bench.profile_ceiling --data ../shared/data/movielens-latest-small --tag profile_ceiling_latest_small
    python3 -m bench.profile_ceiling --targets 8 --test-share 0.4 --tag profile_ceiling_k8  # more test targets

Writes bench/results/<tag>.json and .md. Needs scikit-learn (installed with sentence-transformers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench._common import RESULTS, write_result
from lettingo_cli.eval import paired, with_interval
from lettingo_cli.split import SplitOptions, split_dataset
from lettingo_cli.split_data import item_ratings, load_histories, load_recent_and_targets, select_users
from lettingo_cli.store import Store

HERE = Path(__file__).resolve().parent
ITEM_PRIOR_RATINGS = 5  # as reader:bow
ARMS = ("item only", "+ user mean", "+ rating level", "+ taste", "+ newest 10")


def attributes(item_text: str) -> set[str]:
    """The item's genres or categories (the text after the title, as reader:bow reads it)."""
    _, _, rest = item_text.partition(" | ")
    return {part.strip() for part in rest.replace("|", ",").split(",") if part.strip()}


def level(ratings: list[float]) -> list[float]:
    mean = statistics.fmean(ratings)
    return [mean, statistics.pstdev(ratings), *(sum(r == k for r in ratings) / len(ratings) for k in range(1, 6))]


def features(arm: str, history: list[dict], item_text: str, items) -> list[float]:
    row = [items.mean(item_text, ITEM_PRIOR_RATINGS), items.popularity(item_text)]
    if arm == "item only":
        return row
    ratings = [h["rating"] for h in history]
    if arm == "+ user mean":
        return row + [statistics.fmean(ratings)]
    row += level(ratings)
    if arm in ("+ taste", "+ newest 10"):
        wanted = attributes(item_text)
        relative = [h["rating"] - row[2] for h in history if attributes(h["text"]) & wanted]
        row += [statistics.fmean(relative) if relative else 0.0, len(relative) / len(ratings)]
    if arm == "+ newest 10":
        row += level(ratings[-10:])
    return row


def fitted_answers(arm, train, test, histories, targets, items) -> tuple[dict, dict]:
    """{user: [(truth, predicted)]} on the test users (fitted on all train users) and on the train users (out of
    fold, 5 folds by user)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def rows(users):
        return [(u, t) for u in users for t in targets[u]]

    def fit(users):
        examples = rows(users)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit([features(arm, histories[u], t.text, items) for u, t in examples], [t.sentiment for _, t in examples])
        return model

    def answer(model, users):
        examples = rows(users)
        predicted = model.predict([features(arm, histories[u], t.text, items) for u, t in examples])
        grouped: dict[str, list[tuple[str, str]]] = {}
        for (user, target), label in zip(examples, predicted, strict=True):
            grouped.setdefault(user, []).append((target.sentiment, str(label)))
        return grouped

    on_test = answer(fit(train), test)
    out_of_fold: dict = {}
    for fold in range(5):
        held = [u for i, u in enumerate(train) if i % 5 == fold]
        out_of_fold.update(answer(fit([u for i, u in enumerate(train) if i % 5 != fold]), held))
    return on_test, out_of_fold


def figures(report: dict) -> dict:
    return {
        m: {"value": round(report[m], 4), "ci95": [round(x, 4) for x in report["ci95"][m]]}
        for m in ("accuracy", "macro_f1")
    }


def difference(result: dict) -> dict:
    return {
        m: {
            "value": round(result["difference"][m], 4),
            "ci_low": round(result["ci95"][m][0], 4),
            "ci_high": round(result["ci95"][m][1], 4),
        }
        for m in ("accuracy", "macro_f1")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "movielens-100k")
    parser.add_argument("--tag", default="profile_ceiling")
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--history", type=int, default=30)
    parser.add_argument("--test-share", type=float, default=0.2)
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data} is not present: this benchmark needs it")
    from lettingo_cli.ingest import read_movielens, write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "lettingo.db")
        dataset = write_dataset(store, read_movielens(args.data), args.data.name, {})
        options = SplitOptions(recent=0, targets=args.targets, history=args.history, test_users=args.test_share)
        split = split_dataset(store, dataset, "po", options)
        train, test = select_users(store, split, "train"), select_users(store, split, "test")
        histories = load_histories(store, split, train + test, args.history)
        _, targets = load_recent_and_targets(store, split, train + test, args.targets)
        items = item_ratings(store, split)

    answers = {arm: fitted_answers(arm, train, test, histories, targets, items) for arm in ARMS}
    test_reports = {arm: with_interval(answers[arm][0]) for arm in ARMS}
    oof_reports = {arm: with_interval(answers[arm][1]) for arm in ARMS}
    payload = {
        "data": args.data.name,
        "split": {"recent": 0, "targets": args.targets, "history": args.history, "test_share": args.test_share},
        "test_users": len(test),
        "train_users": len(train),
        "test": {arm: figures(r) for arm, r in test_reports.items()},
        "train_out_of_fold": {arm: figures(r) for arm, r in oof_reports.items()},
        "test_minus_item_only": {arm: difference(paired(answers[arm][0], answers["item only"][0])) for arm in ARMS[1:]},
        "train_out_of_fold_minus_item_only": {
            arm: difference(paired(answers[arm][1], answers["item only"][1])) for arm in ARMS[1:]
        },
    }
    RESULTS.mkdir(exist_ok=True)
    write_result(args.tag, payload)
    lines = [
        f"# What a perfect reader of the profile history could add: {args.data.name}, profile-only split "
        f"({len(test)} test users x {args.targets} targets, {args.history}-rating profile history; "
        f"logistic regression fitted on {len(train)} train users)",
        "",
        "| features | test accuracy [95% CI] | test macro F1 | minus item only, accuracy | minus item only, "
        "macro F1 | train out of fold: accuracy, minus item only |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        t, o = payload["test"][arm], payload["train_out_of_fold"][arm]
        acc = f"{t['accuracy']['value']:.3f} [{t['accuracy']['ci95'][0]:.3f}, {t['accuracy']['ci95'][1]:.3f}]"
        if arm == "item only":
            lines.append(f"| {arm} | {acc} | {t['macro_f1']['value']:.3f} | | | {o['accuracy']['value']:.3f} |")
            continue
        d, od = payload["test_minus_item_only"][arm], payload["train_out_of_fold_minus_item_only"][arm]
        cell = "{value:+.3f} [{ci_low:+.3f}, {ci_high:+.3f}]".format
        lines.append(
            f"| {arm} | {acc} | {t['macro_f1']['value']:.3f} | {cell(**d['accuracy'])} | {cell(**d['macro_f1'])} | "
            f"{o['accuracy']['value']:.3f}, {cell(**od['accuracy'])} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{args.tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
