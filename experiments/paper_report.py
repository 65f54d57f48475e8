"""Assemble the results of experiments/paper.sh from the store: every arm's metrics with 95% intervals, the paired
differences a reviewer asks for (aligned - base, each control and the reference against base and aligned, the
second predictor's verdict, the second round), profile lengths and the share cut at --max-tokens, each arm's
answer distribution against the truth, accuracy within profile-length buckets, label words in the profiles, the
pairs' lengths, DPO's last logged rewards, and each stage's seconds.

Writes <RESULTS>/<TAG>.json (top level `aligned_minus_base`: accuracy, macro_f1 and weighted_f1, each with
value, ci_low and ci_high, plus users and length_ratio = aligned/base mean profile tokens) and <TAG>.md.
Called by paper.sh as: paper_report.py --tag T --times FILE --refs FILE (ROLE=REF lines).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

# the results go where the benchmarks' go (bench/results), written by the same helper (machine facts included)
from bench._common import RESULTS, last_steps, paired_difference, stage_seconds, write_result
from experiments import recipes
from lettingo_cli.eval import METRICS, compare_evals
from lettingo_cli.sentiments import SENTIMENTS
from lettingo_cli.store import Store

# the arms, in the report's order: eval role -> (profiles role, label)
ARMS = {
    "eval_10h": (None, "10H (no profile)"),  # with RECENT=0: the reference line, the 10H split's same users and targets
    "eval_none": (None, "no profile (item only)"),
    "eval_history_full": ("history_full_profiles", "control: own whole profile history as text"),
    "eval_stats": ("stats_profiles", "control: stats template (rating level, genres)"),
    "eval_base": ("base_profiles", "base generator"),
    "eval_aligned": ("aligned_profiles", "aligned generator"),
    "eval_history": ("history_profiles", "control (a): own history as text, base length"),
    "eval_swapped": ("swapped_profiles", "control (b): another user's aligned profiles"),
    "eval_reference": ("reference_profiles", "reference writer (first users only)"),
    "eval_r2": ("r2_profiles", "aligned, second round"),
    "eval_swapped_r2": ("swapped_r2_profiles", "control: another user's second-round profiles"),
    "eval_grpo": ("grpo_profiles", "grpo generator (online route)"),
}
# paired comparisons: (A, B) -> A - B on the users both have
COMPARISONS = [
    ("eval_aligned", "eval_base"),
    ("eval_base", "eval_none"),
    ("eval_aligned", "eval_none"),
    ("eval_history_full", "eval_none"),
    ("eval_stats", "eval_none"),
    ("eval_aligned", "eval_history_full"),
    ("eval_aligned", "eval_stats"),
    ("eval_base", "eval_10h"),
    ("eval_aligned", "eval_10h"),
    ("eval_history", "eval_base"),
    ("eval_aligned", "eval_history"),
    ("eval_aligned", "eval_swapped"),
    ("eval_reference", "eval_base"),
    ("eval_aligned", "eval_base", "reference users"),  # aligned - base on the reference's users only
    ("eval_r2", "eval_aligned"),
    ("eval_r2", "eval_base"),
    ("eval_r2", "eval_swapped_r2"),
    ("second_aligned", "second_base"),
    ("second_r2", "second_base"),
    ("second_grpo", "second_base"),
    ("second_history", "second_none"),  # the second judge's power: does it read content at all?
    ("second_history_full", "second_none"),
    ("eval_grpo", "eval_base"),
    ("eval_grpo", "eval_aligned"),
    ("eval_grpo", "eval_none"),
]
# words aimed at the predictor rather than describing the user
LABEL_WORDS = {
    "will like/enjoy/love": r"\bwill (?:likely |probably |definitely )?(?:like|enjoy|love)\b",
    "will dislike/hate": r"\bwill (?:likely |probably )?(?:dislike|hate|not like|not enjoy)\b",
    "likes/loves everything": r"\b(?:likes|loves|enjoys) (?:everything|all (?:movies|films))\b",
    "dislikes/hates everything": r"\b(?:dislikes|hates) (?:everything|all (?:movies|films))\b",
    "the word neutral": r"\bneutral\b",
    "the word dislike(s/d)": r"\bdislik(?:e|es|ed)\b",
}
LENGTH_BUCKETS = ((0, 40), (40, 80), (80, 119), (119, 10**9))  # n_tokens in [low, high); the last: cut at 120


def figures_of(report: dict) -> dict:
    out = {"users": report["users"], "predictions": report["n"]}
    for metric in METRICS:
        low, high = report["ci95"][metric]
        out[metric] = round(report[metric], 4)
        out[f"{metric}_ci"] = [round(low, 4), round(high, 4)]
    return out


def profile_facts(store: Store, profiles, max_tokens: int) -> dict:
    rows = list(store.rows(profiles, "profiles"))
    tokens = [row["n_tokens"] or 0 for row in rows]
    flags: Counter = Counter()
    for row in rows:
        flags.update(json.loads(row["flags"]))
    words = {
        label: round(sum(bool(re.search(pattern, row["text"], re.I)) for row in rows) / len(rows), 4)
        for label, pattern in LABEL_WORDS.items()
    }
    return {
        "profiles": len(rows),
        "mean_tokens": round(statistics.mean(tokens), 1) if tokens else 0,
        "share_at_max_tokens": round(sum(t >= max_tokens for t in tokens) / len(tokens), 4) if tokens else 0,
        "flags": dict(sorted(flags.items())),
        "label_words": words,
    }


def answers_and_buckets(store: Store, scores, profiles) -> dict:
    """The answer distribution against the truth, and accuracy within profile-length buckets."""
    rows = list(store.rows(scores, "scores"))
    answers = {
        "predicted": {label: sum(r["predicted"] == label for r in rows) for label in SENTIMENTS},
        "truth": {label: sum(r["truth"] == label for r in rows) for label in SENTIMENTS},
    }
    if profiles is None:
        return {"answers": answers}
    length = {(r["user_id"], r["generator"], r["sample_index"]): r["n_tokens"] or 0
              for r in store.rows(profiles, "profiles")}  # fmt: skip
    buckets = {}
    for low, high in LENGTH_BUCKETS:
        chosen = [r for r in rows if low <= length.get((r["user_id"], r["generator"], r["sample_index"]), -1) < high]
        name = f"{low}-{high - 1}" if high < 10**9 else f">={low}"
        buckets[name] = {
            "predictions": len(chosen),
            "accuracy": round(sum(r["correct"] for r in chosen) / len(chosen), 4) if chosen else None,
        }
    return {"answers": answers, "length_buckets": buckets}


def reward_signal(store: Store, scores) -> dict:
    """How much the frozen predictor's verdict on a train user's profiles varies between the profiles: the
    users whose profiles all got the same number of targets right, and the best-minus-worst gap in mean P(true)."""
    per_profile: dict[tuple, list[dict]] = {}
    for row in store.rows(scores, "scores"):
        per_profile.setdefault((row["user_id"], row["generator"], row["sample_index"]), []).append(row)
    per_user: dict[str, list[tuple[float, int]]] = {}
    for (user, _, _), rows in per_profile.items():
        mean_p = statistics.mean(r["p_true"] for r in rows)
        per_user.setdefault(user, []).append((mean_p, sum(r["correct"] for r in rows)))
    gaps = sorted(max(p for p, _ in v) - min(p for p, _ in v) for v in per_user.values())
    same = sum(len({right for _, right in v}) == 1 for v in per_user.values())
    return {
        "users": len(per_user),
        "users_whose_profiles_all_got_the_same_number_right": same,
        "p_true_best_minus_worst_median": round(statistics.median(gaps), 4) if gaps else None,
        "p_true_best_minus_worst_max": round(gaps[-1], 4) if gaps else None,
    }


def recent_tokens(store: Store, found: dict) -> float | None:
    """The mean tokens (default tokenizer) of the test users' 10 recent ratings as a 10H prompt writes them: what a
    profile would replace. From the 10H split of a RECENT=0 run, or the run's own split in 10H."""
    from lettingo_cli.backends.written import TokenCounter
    from lettingo_cli.prompts import history_text
    from lettingo_cli.split_data import load_recent_and_targets, select_users

    split = found.get("split_10h", found["split"])
    if split.params.get("recent", 10) == 0:
        return None
    users = select_users(store, split, "test")
    recent, _ = load_recent_and_targets(store, split, users, 0)
    counter = TokenCounter()
    counts = [counter.count(history_text(rows)) for rows in recent.values() if rows]
    return round(statistics.mean(counts), 1) if counts else None


def within_user_length(store: Store, evaluation, profiles) -> dict:
    """Length within users: for each user with profiles of different lengths, the accuracy of their longest
    profile minus that of their shortest (length buckets mix users; this does not), with a bootstrap interval."""
    import random

    length = {(r["user_id"], r["sample_index"]): r["n_tokens"] or 0 for r in store.rows(profiles, "profiles")}
    right: dict[tuple[str, int], list[int]] = {}
    for row in store.rows(store.get(evaluation.params["scores"]), "scores"):
        right.setdefault((row["user_id"], row["sample_index"]), []).append(row["correct"])
    by_user: dict[str, list[tuple[int, float]]] = {}
    for (user, sample), marks in right.items():
        by_user.setdefault(user, []).append((length.get((user, sample), 0), sum(marks) / len(marks)))
    gaps = []
    for entries in by_user.values():
        entries.sort()
        if entries[-1][0] > entries[0][0]:
            gaps.append(entries[-1][1] - entries[0][1])
    if not gaps:
        return {"users": 0}
    rng = random.Random(0)
    draws = sorted(statistics.mean(rng.choices(gaps, k=len(gaps))) for _ in range(1000))
    return {
        "users": len(gaps),
        "longest_minus_shortest_accuracy": round(statistics.mean(gaps), 4),
        "ci95": [round(draws[25], 4), round(draws[974], 4)],
    }


def dpo_curve(store: Store, adapter) -> list[dict]:
    return [{k: row[k] for k in ("step", "loss", "rewards_margins")} for row in store.training_steps(adapter.run_id)]


def picture(path: Path, payload: dict) -> None:
    """The report's picture: each arm's accuracy with its interval, the paired differences, DPO's loss and margin
    over steps. Needs matplotlib (the dev extra); without it, says so and draws nothing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[dev]'): no picture", file=sys.stderr)
        return
    online = payload.get("grpo", {}).get("curve")
    panels = plt.subplots(1, 4 if online else 3, figsize=(22 if online else 17, 5.5))[1]
    figure = panels[0].figure
    arms_axis, differences_axis, dpo_axis = panels[:3]
    names = [role.removeprefix("eval_").removeprefix("second_") for role in payload["arms"]]
    names = [n if not role.startswith("second_") else f"2nd judge: {n}" for n, role in zip(names, payload["arms"])]
    values = [f["accuracy"] for f in payload["arms"].values()]
    errors = [[v - f["accuracy_ci"][0] for v, f in zip(values, payload["arms"].values())],
              [f["accuracy_ci"][1] - v for v, f in zip(values, payload["arms"].values())]]  # fmt: skip
    arms_axis.barh(names, values, xerr=errors, color="#4c72b0", capsize=3)
    for name, figures in payload["baselines"].items():
        arms_axis.axvline(figures["accuracy"], linestyle=":", color="grey")
        arms_axis.text(figures["accuracy"], -0.9, name.replace("_", "-"), rotation=90, fontsize=7, va="bottom")
    arms_axis.set_xlim(0.3, 0.8)
    arms_axis.set_xlabel("accuracy (95% interval); dotted: baselines")
    arms_axis.invert_yaxis()
    shown = {k: d for k, d in payload["differences"].items() if d.get("users")}
    values = [d["accuracy"]["value"] for d in shown.values()]
    errors = [[d["accuracy"]["value"] - d["accuracy"]["ci_low"] for d in shown.values()],
              [d["accuracy"]["ci_high"] - d["accuracy"]["value"] for d in shown.values()]]  # fmt: skip
    colours = ["#55a868" if d["accuracy"]["ci_low"] > 0 else "#c44e52" if d["accuracy"]["ci_high"] < 0 else "#8c8c8c"
               for d in shown.values()]  # fmt: skip
    differences_axis.barh(list(shown), values, xerr=errors, color=colours, capsize=3)
    differences_axis.axvline(0, color="black", linewidth=0.8)
    differences_axis.set_xlabel("accuracy difference, paired (95% interval)")
    differences_axis.invert_yaxis()
    for name, curve in payload.get("dpo_curve", {}).items():
        steps = [row["step"] for row in curve]
        dpo_axis.plot(steps, [row["loss"] for row in curve], label=f"{name} loss")
        dpo_axis.plot(steps, [row["rewards_margins"] for row in curve], linestyle="--", label=f"{name} margin")
    dpo_axis.set_xlabel("DPO step")
    dpo_axis.legend(fontsize=8)
    if online:
        grpo_axis = panels[3]
        steps = [row["step"] for row in online]
        grpo_axis.plot(steps, [row["reward"] for row in online], label="mean reward")
        grpo_axis.fill_between(steps, [row["reward"] - row["reward_std"] for row in online],
                               [row["reward"] + row["reward_std"] for row in online], alpha=0.2)  # fmt: skip
        grpo_axis.set_xlabel("GRPO step")
        grpo_axis.set_ylabel("reward (mean P(true label); -1 without a profile)")
        grpo_axis.legend(fontsize=8)
    settings = payload["settings"]
    figure.suptitle(f"{settings.get('data', '')}, recent {settings.get('recent', 10)}, judge "
                    f"{settings.get('predictor', '')}", fontsize=10)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def grpo_facts(store: Store, adapter) -> dict:
    """The online route's training: its reward per step (the curve), the last steps' mean, what it cost."""
    steps = store.training_steps(adapter.run_id)
    run = store.run(adapter.run_id)
    last = steps[-10:]
    return {
        "steps": len(steps),
        "first_reward": steps[0]["reward"] if steps else None,
        "last10_mean_reward": round(statistics.mean(s["reward"] for s in last), 4) if last else None,
        "last10_mean_completion_tokens": round(statistics.mean(s["completion_length"] for s in last), 1)
        if last
        else None,
        "seconds": run["stats"].get("seconds"),
        "profiles_judged": run["stats"].get("profiles_judged"),
        "curve": [{k: s[k] for k in ("step", "reward", "reward_std", "loss", "completion_length")} for s in steps],
    }


def route_cost(store: Store, found: dict, times: dict, settings: dict) -> dict:
    """Each route's predictor calls (profile x target judgements) and wall time, from the train profiles to the
    adapter: offline = gen_train + score + pair + dpo; online = grpo."""
    targets = int(settings.get("targets", 4))
    judged_offline = store.get(found["scores"].id).counts.get("rows", 0)
    online = grpo_facts(store, found["grpo_adapter"])
    return {
        "offline_dpo": {
            "seconds": round(sum(times.get(k, 0.0) for k in ("gen_train", "score", "pair", "dpo")), 1),
            "predictor_judgements": judged_offline,
        },
        "online_grpo": {
            "seconds": times.get("grpo"),
            "predictor_judgements": (online["profiles_judged"] or 0) * targets,
        },
    }


def dpo_facts(store: Store, adapter) -> dict:
    """DPO's steps, its first loss and the mean of its last 10 logged steps (one summary of a curve everywhere)."""
    steps = store.training_steps(adapter.run_id)
    return {
        "steps": len(steps),
        "first_loss": steps[0]["loss"] if steps else None,
        "last_steps": last_steps(steps, ("loss", "rewards_margins", "rewards_accuracies")),
    }


SECOND_ARMS = ("second_none", "second_history", "second_history_full", "second_base", "second_aligned", "second_r2",
               "second_grpo")  # fmt: skip


def second_judge(settings: dict, comparisons: dict) -> dict | None:
    """The second judge's verdicts beside its power to see content (history as text - no profile, same users)."""
    if "second_aligned - second_base" not in comparisons:
        return None
    power = comparisons.get("second_history - second_none")
    return {
        "predictor": settings.get("second"),
        "targets": settings.get("second_targets"),
        "history_minus_none": power,
        "history_full_minus_none": comparisons.get("second_history_full - second_none"),
        "sees_content": None if power is None else power["accuracy"]["ci_low"] > 0,
        "aligned_minus_base": comparisons["second_aligned - second_base"],
        **{
            f"{arm}_minus_base": comparisons[f"second_{arm} - second_base"]
            for arm in ("r2", "grpo")
            if f"second_{arm} - second_base" in comparisons
        },
    }


def against_the_bar(comparisons: dict, profiles: dict, arm: str, swapped: str) -> tuple[dict, dict]:
    """ARM - base with its length ratio (ARM / base mean profile tokens), and the issue's bar: +0.03 accuracy with
    the interval above zero, the macro F1 interval above zero, the length ratio within [0.85, 1.15], and ARM minus
    another user's ARM profiles with its interval above zero (when that control ran)."""
    headline = dict(comparisons[f"{arm} - base"])
    base_tokens = profiles["base_profiles"]["mean_tokens"]
    arm_tokens = profiles[f"{arm}_profiles"]["mean_tokens"]
    headline["length_ratio"] = round(arm_tokens / base_tokens, 3) if base_tokens else None
    control = comparisons.get(f"{arm} - {swapped}")
    met = {
        "accuracy_plus_0.03_interval_above_zero": headline["accuracy"]["value"] >= 0.03
        and headline["accuracy"]["ci_low"] > 0,
        "macro_f1_interval_above_zero": headline["macro_f1"]["ci_low"] > 0,
        "length_ratio_within_0.85_1.15": headline["length_ratio"] is not None
        and 0.85 <= headline["length_ratio"] <= 1.15,
        "minus_another_users_interval_above_zero": control is not None and control["accuracy"]["ci_low"] > 0,
    }
    return headline, {**met, "met": all(met.values())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="paper")
    parser.add_argument("--times", type=Path, required=True)
    parser.add_argument("--refs", type=Path, required=True)
    parser.add_argument("--setting", action="append", default=[], help="KEY=VALUE, recorded as given")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    store = Store(Path(os.environ.get("LETTINGO_STORE", "lettingo.db")))
    refs = dict(line.split("=", 1) for line in args.refs.read_text().splitlines() if "=" in line)
    choices = {role: refs.pop(role) for role in recipes.CHOICES if role in refs}  # recipe labels, not artifacts
    found = {role: store.resolve(ref) for role, ref in refs.items()}
    settings = dict(item.split("=", 1) for item in args.setting)
    max_tokens = int(settings.get("max_tokens", 120))

    times = stage_seconds(args.times)

    arms, profiles, behaviour = {}, {}, {}
    for role, (profiles_role, _) in ARMS.items():
        if role not in found:
            continue
        evaluation = found[role]
        arms[role] = figures_of(evaluation.report)
        profile_set = found.get(profiles_role)
        if profile_set is not None:
            profiles[profiles_role] = profile_facts(store, profile_set, max_tokens)
        behaviour[role] = answers_and_buckets(store, store.get(evaluation.params["scores"]), profile_set)
    for role in SECOND_ARMS:
        if role in found:
            arms[role] = figures_of(found[role].report)
    baselines = {
        name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items() if k in (*METRICS, "label")}
        | {f"{m}_ci": [round(x, 4) for x in figures["ci95"][m]] for m in METRICS}
        for name, figures in found.get("eval_none", found["eval_10h"]).report["baselines"].items()
    }

    comparisons = {}
    for entry in COMPARISONS:
        a, b = entry[:2]
        if a not in found or b not in found:
            continue
        if len(entry) == 3:  # restricted to the reference arm's users
            if "eval_reference" not in found:
                continue
            users = set(found["reference_profiles"].params["users"])
            compared = compare_evals(store, found[a], found[b], users)
            comparisons[f"{a[5:]} - {b[5:]} ({entry[2]})"] = paired_difference(compared, METRICS)
            continue
        label = f"{a.removeprefix('eval_')} - {b.removeprefix('eval_')}"
        comparisons[label] = paired_difference(compare_evals(store, found[a], found[b]), METRICS)

    headline, met = against_the_bar(comparisons, profiles, "aligned", "swapped")
    round2 = against_the_bar(comparisons, profiles, "r2", "swapped_r2") if "eval_r2" in found else None
    second = comparisons.get("second_aligned - second_base")
    kept = None  # a share of a gain only means something when there is one (its interval above zero)
    if second and headline["accuracy"]["ci_low"] > 0:
        kept = round(second["accuracy"]["value"] / headline["accuracy"]["value"], 3)

    payload = {
        "settings": settings,
        "aligned_minus_base": headline,
        "bar": met,
        **({"round2_minus_base": round2[0], "round2_bar": round2[1]} if round2 else {}),
        "arms": arms,
        "baselines": baselines,
        "differences": comparisons,
        "second_predictor_keeps_share_of_accuracy_gain": kept,
        "second_judge": second_judge(settings, comparisons),
        "profiles": profiles,
        "answers_and_length_buckets": behaviour,
        "ten_recent_ratings_mean_tokens": recent_tokens(store, found),
        "within_user_length": {
            role: within_user_length(store, found[role], found[profiles_role])
            for role, profiles_role in (("eval_base", "base_profiles"), ("eval_aligned", "aligned_profiles"))
            if role in found and profiles_role in found
        },
        "reward_signal": {"round1": reward_signal(store, found["scores"])}
        | ({"round2": reward_signal(store, found["scores2"])} if "scores2" in found else {}),
        "pairs": {"round1": found["pairs"].report | {"pairs": found["pairs"].count}}
        | ({"round2": found["pairs2"].report | {"pairs": found["pairs2"].count}} if "pairs2" in found else {}),
        "dpo": {"round1": dpo_facts(store, found["adapter"])}
        | ({"round2": dpo_facts(store, found["adapter2"])} if "adapter2" in found else {}),
        "export": {
            q: {
                k: f.get(k)
                for k in (
                    "mb",
                    "agreement",
                    "decided_agreement",
                    "near_ties",
                    "mean_abs_logprob_diff",
                    "tokenizer_parity",
                )
            }
            for q, f in found["export"].report.get("files", {}).items()
        },
        "stage_seconds": times,
        "total_seconds": round(sum(times.values()), 1),
        "artifacts": {role: {"id": a.id, "ref": a.ref} for role, a in found.items()},
    }
    payload["dpo_curve"] = {"round1": dpo_curve(store, found["adapter"])} | (
        {"round2": dpo_curve(store, found["adapter2"])} if "adapter2" in found else {}
    )
    if choices:
        payload |= recipes.report(store, found, choices, settings, payload["total_seconds"])
    if "grpo_adapter" in found:
        payload["grpo"] = grpo_facts(store, found["grpo_adapter"])
        payload["route_cost"] = route_cost(store, found, times, settings)
    path = write_result(args.tag, payload, args.results)
    picture(args.results / f"{args.tag}.png", payload)
    markdown = args.results / f"{args.tag}.md"
    text = render(args.tag, payload)
    markdown.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {path} and {markdown}")


def render(tag: str, payload: dict) -> str:
    settings = payload["settings"]

    def cells(figures: dict) -> str:
        return " | ".join(
            f"{figures[m]:.3f} [{figures[m + '_ci'][0]:.3f}, {figures[m + '_ci'][1]:.3f}]" for m in METRICS
        )

    def signed(d: dict, metric: str) -> str:
        v = d[metric]
        return f"{v['value']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"

    lines = [
        f"# {tag}: {settings.get('generator', '')} on {settings.get('data', '')}, predictor "
        f"{settings.get('predictor', '')}, {settings.get('targets', '')} targets per user",
        "",
        "| arm | users | accuracy [95% CI] | macro F1 [95% CI] | weighted F1 [95% CI] | mean tokens |",
        "|---|---|---|---|---|---|",
    ]
    for name, figures in payload["baselines"].items():
        lines.append(f"| {name.replace('_', '-')} | | {cells(figures)} | |")
    for role, figures in payload["arms"].items():
        label = ARMS[role][1] if role in ARMS else f"second judge: {role[7:]}"
        if role == "eval_10h" and settings.get("recent") == "0":
            label = "10H reference (head:minilm on the 10 recent ratings, no profile; same users and targets)"
        profiles_role = ARMS[role][0] if role in ARMS else f"{role[7:]}_profiles"
        tokens = payload["profiles"].get(profiles_role, {}).get("mean_tokens", "")
        lines.append(f"| {label} | {figures['users']} | {cells(figures)} | {tokens} |")
    lines += ["", "| paired difference | users | accuracy [95% CI] | macro F1 [95% CI] |", "|---|---|---|---|"]
    for label, d in payload["differences"].items():
        if d.get("users"):
            lines.append(f"| {label} | {d['users']} | {signed(d, 'accuracy')} | {signed(d, 'macro_f1')} |")
    head = payload["aligned_minus_base"]
    bar = payload["bar"]
    lines += [
        "",
        f"aligned - base: accuracy {signed(head, 'accuracy')}, macro F1 {signed(head, 'macro_f1')}, length ratio "
        f"{head['length_ratio']}. The bar (+0.03 accuracy with the interval above zero, macro F1 interval above "
        f"zero, length ratio in [0.85, 1.15], aligned - another user's aligned above zero): "
        f"{'met' if bar['met'] else 'NOT met'}.",
    ]
    judge = payload.get("second_judge")
    if judge:  # every second-judge verdict beside its power to see content at all
        power = judge["history_minus_none"]
        sees = (
            "not measured"
            if power is None
            else f"history as text - no profile {signed(power, 'accuracy')}: "
            + ("it reads content" if judge["sees_content"] else "no power shown")
        )
        verdicts = "; ".join(
            f"{key.removesuffix('_minus_base')} - base {signed(judge[key], 'accuracy')}"
            for key in ("aligned_minus_base", "r2_minus_base", "grpo_minus_base")
            if key in judge
        )
        lines += ["", f"Second judge `{judge['predictor']}` ({judge['targets']} targets; {sees}): {verdicts}."]
    if "round2_minus_base" in payload:  # the second, on-policy round against the same bar
        r2, r2_bar = payload["round2_minus_base"], payload["round2_bar"]
        failed = ", ".join(k for k, ok in r2_bar.items() if k != "met" and not ok)
        lines += [
            "",
            f"round 2 - base: accuracy {signed(r2, 'accuracy')}, macro F1 {signed(r2, 'macro_f1')}, length ratio "
            f"{r2['length_ratio']}. The same bar: {'met' if r2_bar['met'] else 'NOT met (' + failed + ')'}.",
        ]
    lines += [
        "",
        "| profiles | mean tokens | share at max tokens | " + " | ".join(LABEL_WORDS) + " |",
        "|---|---|---|" + "---|" * len(LABEL_WORDS),
    ]
    for role, facts in payload["profiles"].items():
        words = " | ".join(f"{facts['label_words'][w]:.2f}" for w in LABEL_WORDS)
        lines.append(f"| {role} | {facts['mean_tokens']} | {facts['share_at_max_tokens']:.2f} | {words} |")
    lines += ["", "| arm | answers like/neutral/dislike (truth) | accuracy by profile tokens |", "|---|---|---|"]
    for role, facts in payload["answers_and_length_buckets"].items():
        answers = facts["answers"]
        said = "/".join(str(answers["predicted"][s]) for s in SENTIMENTS)
        truth = "/".join(str(answers["truth"][s]) for s in SENTIMENTS)
        buckets = ", ".join(
            f"{name}: {b['accuracy']:.3f} (n={b['predictions']})"
            for name, b in facts.get("length_buckets", {}).items()
            if b["predictions"]
        )
        lines.append(f"| {role.removeprefix('eval_')} | {said} ({truth}) | {buckets} |")
    lines += ["", "| round | pairs | chosen/rejected tokens | dpo steps | last-10 loss | margin | reward acc |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for name, pairs in payload["pairs"].items():
        dpo = payload["dpo"].get(name, {})
        tokens = f"{pairs.get('chosen_mean_tokens')}/{pairs.get('rejected_mean_tokens')} ({pairs.get('length_ratio')})"
        last = dpo.get("last_steps", {})
        trained = " | ".join(str(x) for x in (dpo.get("steps"), last.get("loss"), last.get("rewards_margins")))
        lines.append(f"| {name} | {pairs['pairs']} | {tokens} | {trained} | {last.get('rewards_accuracies')} |")
    if payload.get("ten_recent_ratings_mean_tokens"):
        tokens = payload["ten_recent_ratings_mean_tokens"]
        lines.append(f"\nThe 10 recent ratings as a 10H prompt writes them: {tokens} tokens on average.")
    for role, facts in payload.get("within_user_length", {}).items():
        if facts.get("users"):
            lines.append(
                f"\nWithin users ({role.removeprefix('eval_')}): the longest profile's accuracy minus the shortest's, "
                f"{facts['longest_minus_shortest_accuracy']:+.3f} [{facts['ci95'][0]:+.3f}, {facts['ci95'][1]:+.3f}] "
                f"over {facts['users']} users."
            )
    for name, signal in payload["reward_signal"].items():
        lines.append(
            f"\n{name}: {signal['users_whose_profiles_all_got_the_same_number_right']} of {signal['users']} train "
            f"users' profiles all got the same number of targets right; best - worst mean P(true) per user: median "
            f"{signal['p_true_best_minus_worst_median']}, largest {signal['p_true_best_minus_worst_max']}."
        )
    if "grpo" in payload:
        online = payload["grpo"]
        lines.append(
            f"\ngrpo: {online['steps']} steps in {online['seconds']} s; reward {online['first_reward']} at the first "
            f"step, {online['last10_mean_reward']} over the last 10 (their completions "
            f"{online['last10_mean_completion_tokens']} tokens); {online['profiles_judged']} profiles judged."
        )
        for route, cost in payload["route_cost"].items():
            lines.append(f"\n{route}: {cost['seconds']} s, {cost['predictor_judgements']} predictor judgements.")
    if "best_recipe" in payload:
        lines += recipes.markdown(payload)
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds} |" for name, seconds in payload["stage_seconds"].items()]
    lines.append(f"| total | {payload['total_seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
