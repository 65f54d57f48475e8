"""Stage `eval`: accuracy, macro F1 and weighted F1 of a scored profile set (or of the no-profile 10H
baseline), with 95% bootstrap intervals over users, the confusion matrix, paired comparisons, and the trivial
baselines of the split's protocol (10H + profile: always-majority, recent-mean; profile only: always-majority,
item-mean, history-mean) on the same users and targets, each with the predictor's paired difference from it.

Every (user, profile, target) prediction counts once; users are the resampling unit, since one user's
profiles and targets are not independent.
"""

from __future__ import annotations

import random

from lettingo_cli.metrics import METRICS, metrics
from lettingo_cli.predictors.baselines import baseline_answers, majority_label
from lettingo_cli.sentiments import SENTIMENTS
from lettingo_cli.split_data import Target, item_ratings, load_histories, load_recent_and_targets, profile_only
from lettingo_cli.stated import TITLE_MATCH, faithfulness
from lettingo_cli.store import Artifact, Store, Verbs, check_name

VERBS = Verbs("evaluate", "evaluated")

BOOTSTRAP_SAMPLES = 1000  # resamples of the users for each 95% interval
BOOTSTRAP_SEED = 0


def _by_user(store: Store, scores: Artifact) -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for row in store.rows(scores, "scores"):
        grouped.setdefault(row["user_id"], []).append((row["truth"], row["predicted"]))
    return grouped


def _interval(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[int(0.025 * len(ordered))], ordered[min(int(0.975 * len(ordered)), len(ordered) - 1)]


def with_interval(grouped: dict[str, list[tuple[str, str]]]) -> dict:
    users = sorted(grouped)
    result = metrics([p for u in users for p in grouped[u]])
    rng = random.Random(BOOTSTRAP_SEED)
    samples = {name: [] for name in METRICS}
    for _ in range(BOOTSTRAP_SAMPLES):
        drawn = [p for u in rng.choices(users, k=len(users)) for p in grouped[u]]
        figures = metrics(drawn)
        for name in samples:
            samples[name].append(figures[name])
    result["ci95"] = {name: _interval(values) for name, values in samples.items()}
    result["users"] = len(users)
    return result


def baseline_predictions(
    store: Store, split: Artifact, targets: dict[str, list[Target]]
) -> dict[str, dict[tuple[str, int], str]]:
    """{baseline: {(user, target position): the baseline's answer}} for the users' targets, for the baselines that
    fit the split's protocol (see predictors/baselines.py)."""
    users = sorted(targets)
    recent, _ = load_recent_and_targets(store, split, users, 0)
    histories = load_histories(store, split, users, split.params["history"])
    items = item_ratings(store, split) if profile_only(split) else None
    return baseline_answers(split, users, recent, histories, targets, items)


def evaluate_baselines(store: Store, scores: Artifact) -> dict:
    """`baselines`: each baseline's figures on the same (user, profile, target) rows as the scores; and
    `minus_baselines`: predictor minus baseline, paired, with intervals."""
    grouped = _by_user(store, scores)
    split = store.get(scores.params["split"])
    _, targets = load_recent_and_targets(store, split, sorted(grouped), scores.params["targets"])
    figures, differences = {}, {}
    for baseline, labels in baseline_predictions(store, split, targets).items():
        answered: dict[str, list[tuple[str, str]]] = {}
        for row in store.rows(scores, "scores"):  # the order _by_user reads them in
            answer = labels[(row["user_id"], row["target_position"])]
            answered.setdefault(row["user_id"], []).append((row["truth"], answer))
        figures[baseline] = {"label": majority_label(split)} if baseline == "always_majority" else {}
        figures[baseline].update({k: v for k, v in with_interval(answered).items() if k not in ("f1", "users")})
        differences[baseline] = paired(grouped, answered)
    return {"baselines": figures, "minus_baselines": differences}


def evaluate(store: Store, scores: Artifact) -> dict:
    return with_interval(_by_user(store, scores))


def paired(first: dict[str, list[tuple[str, str]]], second: dict[str, list[tuple[str, str]]]) -> dict:
    """first minus second on the users both have: each metric's difference with its paired bootstrap interval."""
    users = sorted(set(first) & set(second))
    if not users:
        return {"users": 0}

    def figures(chosen):
        left = metrics([p for u in chosen for p in first[u]])
        right = metrics([p for u in chosen for p in second[u]])
        return {name: left[name] - right[name] for name in METRICS}

    rng = random.Random(BOOTSTRAP_SEED)
    draws = [figures(rng.choices(users, k=len(users))) for _ in range(BOOTSTRAP_SAMPLES)]
    difference = figures(users)
    return {
        "users": len(users),
        "difference": difference,
        "ci95": {name: _interval([d[name] for d in draws]) for name in difference},
    }


def compare(store: Store, a: Artifact, b: Artifact, users: set[str] | None = None) -> dict:
    """a minus b on the users both scored (and in `users`, if given): the difference of each metric with its
    paired bootstrap interval."""
    first, second = _by_user(store, a), _by_user(store, b)
    if users is not None:
        first = {u: rows for u, rows in first.items() if u in users}
    return paired(first, second)


def below_baselines(report: dict) -> list[str]:
    """The baselines an eval's accuracy or macro F1 falls below (for a warning)."""
    return [
        f"{baseline.replace('_', '-')} ({metric} {report['baselines'][baseline][metric]:.3f})"
        for baseline in report["baselines"]
        for metric in ("accuracy", "macro_f1")
        if report[metric] < report["baselines"][baseline][metric]
    ]


def default_name(split: Artifact, profiles: Artifact | None, selector: str) -> str:
    """The profiles' name (with the selector unless it is test), or `<split>-10h|none-<selector>` without one."""
    selector = selector if selector in ("all", "train", "test") else "users"
    if profiles is None:
        return check_name(f"{split.name}-{'none' if profile_only(split) else '10h'}-{selector}")
    return check_name(profiles.name if selector == "test" else f"{profiles.name}-{selector}")


def evaluate_scores(store: Store, scores: Artifact, name: str, selector: str, force: bool = False) -> Artifact:
    """The stage: an eval artifact of what `score` wrote (its input is that scores artifact): the figures with
    their intervals, the confusion matrix and the protocol's baselines on the same rows."""
    selector = selector if selector in ("all", "train", "test") else "users"
    params = {"scores": scores.id, "users": selector}
    key_params = {"name": name, "bootstrap": BOOTSTRAP_SAMPLES}
    if scores.params.get("profiles"):  # the report's faithfulness: a better title matcher makes a new run
        key_params["title_match"] = TITLE_MATCH
    run = store.stage(
        "eval",
        "eval",
        name,
        params,
        {"scores": scores.id},
        key_params=key_params,
        force=force,
        atomic=True,
        verbs=VERBS,
    )
    if run.cached:
        return run.cached
    report = {**evaluate(store, scores), **evaluate_baselines(store, scores)}
    if scores.params.get("profiles"):  # what the judged profiles state, against the histories they were written from
        users = {row["user_id"] for row in store.rows(scores, "scores")}
        report["faithfulness"] = faithfulness(store, store.get(scores.params["profiles"]), users)
    with run:
        return run.finish(counts={"users": report["users"], "rows": report["n"]}, report=report)


def compare_evals(store: Store, a: Artifact, b: Artifact, users: set[str] | None = None) -> dict:
    """A - B of two evals on the users both scored (see `compare`)."""
    return compare(store, store.get(a.params["scores"]), store.get(b.params["scores"]), users)


# --- what eval says on stderr -----------------------------------------------------------------------------------


def _ci(report: dict, metric: str) -> str:
    low, high = report["ci95"][metric]
    return f"[95% CI {low:.3f}, {high:.3f}]"


def report_lines(artifact: Artifact) -> list[str]:
    """An eval's figures as the lines `lettingo eval` writes: metrics, confusion matrix, the protocol's baselines."""
    report = artifact.report
    lines = [f"{artifact.ref} ({report['users']} users, {report['n']} predictions)"]
    lines += [f"  {metric:12s} {report[metric]:.3f} {_ci(report, metric)}" for metric in METRICS]
    lines.append("  confusion (rows: truth, columns: predicted like / neutral / dislike)")
    for truth in SENTIMENTS:  # the JSON report's keys are sorted; the table keeps the labels' own order
        row = report["confusion"][truth]
        lines.append(f"    {truth:8s} " + " ".join(f"{row[p]:5d}" for p in SENTIMENTS))
    for baseline, figures in report["baselines"].items():
        difference = report["minus_baselines"][baseline]
        low, high = difference["ci95"]["accuracy"]
        gap = f"{difference['difference']['accuracy']:+.3f} [{low:+.3f}, {high:+.3f}]"
        lines.append(
            f"  {baseline.replace('_', '-'):16s} accuracy {figures['accuracy']:.3f}, "
            f"macro F1 {figures['macro_f1']:.3f}; predictor - it: accuracy {gap}"
        )
    if faithful := report.get("faithfulness"):
        share = faithful["titles_in_history"]
        error = faithful["stated_value_error"]
        lines.append(
            f"  faithfulness: {faithful['stating_a_value']:.0%} of {faithful['profiles']} profiles state a value; "
            f"{faithful['titles_named']} titles named, "
            + (f"{share:.0%} of them in the user's history" if share is not None else "none in the history")
            + (f"; stated values off the true ones by {error:.2f} on average ({faithful['stated_values_checked']} "
               "checked)" if error is not None else "")
        )  # fmt: skip
    return lines


def comparison_lines(first: Artifact, second: Artifact, result: dict) -> list[str]:
    """`eval --compare A --compare B`: A's and B's figures, then A - B per metric with its paired interval."""
    lines = []
    for label, artifact in (("A", first), ("B", second)):
        report = artifact.report
        lines.append(
            f"{label} {artifact.ref}: accuracy {report['accuracy']:.3f} {_ci(report, 'accuracy')}, "
            f"macro F1 {report['macro_f1']:.3f}, weighted F1 {report['weighted_f1']:.3f}"
        )
    for metric, value in result.get("difference", {}).items():
        low, high = result["ci95"][metric]
        lines.append(f"A - B {metric}: {value:+.3f} [{low:+.3f}, {high:+.3f}] on {result['users']} users")
    return lines
