"""Measurement: which predictor should score profiles? MovieLens 100K (default split), the test users with no
profile (10H) and with the profiles of two generators (Gemma 3 270M, the default; Qwen2.5-Coder-1.5B-Instruct),
against the trivial baselines on the same users and targets.

Per predictor: 10H and with-profile accuracy and macro F1 with 95% bootstrap intervals over users, profile - 10H
paired, the share of answers a profile changes, predictor - baseline paired, and evaluations/s. An LLM
predictor's label log-probs are read once and turned into both variants, with and without its train-fitted
label prior. Profiles come from the real CLI (`lettingo gen`, cached in the store: a rerun reuses them).

Run: python3 -m bench.predictor_accuracy [--store PATH] [--users N] [--predictors SPEC,SPEC]
Writes bench/results/predictor_accuracy.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import MOVIELENS_100K as DATA
from bench._common import RESULTS, print_table, write_result
from lettingo_cli.eval import (
    baseline_predictions,
    paired,
    with_interval,
)
from lettingo_cli.predictors import make_predictor
from lettingo_cli.predictors.base import NO_PROFILE
from lettingo_cli.predictors.llm import LLMPredictor, probabilities
from lettingo_cli.prompts import history_text
from lettingo_cli.split_data import load_histories, load_recent_and_targets, select_users
from lettingo_cli.store import Store

SPLIT = "k1"
# profile set -> gen arguments and the artifacts it is made of: (first, last) test users by position (None: all
# test users) and the artifact's name. Qwen 1.5B writes ~10 tokens/s on 2 cores: one profile each for the first
# 150 test users, made in two runs (the first 60, then the next 90).
GENERATORS = {
    "gemma-3-270m": (["--n", "4", "--max-tokens", "120"], [(None, f"{SPLIT}-test-gemma")]),
    "qwen2.5-1.5b": (
        ["--n", "1", "--max-tokens", "120", "--generator", "qwen2.5-1.5b"],
        [((0, 60), f"{SPLIT}-test60-qwen2.5"), ((60, 150), f"{SPLIT}-test61-150-qwen2.5")],
    ),
}
# head:minilm?profiles=... trains on one default-generator profile of each of the first TRAIN_USERS train users
# (a user's ~900-token prompt is read for one profile only: ~0.4 profiles/s on 2 cores)
TRAIN_USERS = 250
HISTORY_AS_TEXT = 30  # rows of the profile history in the history-as-text control (as head:minilm trains on)
TRAIN_PROFILES = ["--n", "1", "--max-tokens", "120"]
PREDICTORS = (
    "head:minilm",
    "head:minilm?profiles=k1-train250-gemma",
    "emb:minilm",
    "llm:gemma-3-270m",
    "llm:qwen2.5-1.5b",
)
DEFAULT = "head:minilm"  # the predictor this measurement chose; PREVIOUS_DEFAULT is what it replaced
PREVIOUS_DEFAULT = "llm:gemma-3-270m?prior=none"


def lettingo(store: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "LETTINGO_STORE": str(store)}
    done = subprocess.run(["lettingo", *args], env=env, input=stdin, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def prepare(store_path: Path, users: int | None) -> tuple[Store, object, list[str], dict]:
    if not store_path.exists():
        lettingo(store_path, "ingest", "movielens", str(DATA))
        lettingo(store_path, "split", "--name", SPLIT)
    store = Store(store_path)
    split = store.resolve(f"split:{SPLIT}")
    test = select_users(store, split, "test")[:users] if users else select_users(store, split, "test")
    timings, profile_sets = {}, {}
    all_test = select_users(store, split, "test")
    for label, (args, parts) in GENERATORS.items():
        started = time.perf_counter()
        profile_sets[label] = []
        for span, name in parts:
            if span is None:
                ref = lettingo(store_path, "gen", "--split", SPLIT, "--users", "test", *args, "--name", name)
            else:
                chosen = "\n".join(all_test[span[0] : span[1]])
                ref = lettingo(store_path, "gen", "--split", SPLIT, "--users", "-", *args, "--name", name, stdin=chosen)
            profile_sets[label].append(store.resolve(ref))
        timings[f"gen {label}"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    train = "\n".join(select_users(store, split, "train")[:TRAIN_USERS])
    name = f"{SPLIT}-train{TRAIN_USERS}-gemma"
    lettingo(store_path, "gen", "--split", SPLIT, "--users", "-", *TRAIN_PROFILES, "--name", name, stdin=train)
    timings["gen gemma-3-270m train users"] = round(time.perf_counter() - started, 1)
    # a control: the profile history itself written out as the profile (what the LLM profiles summarise)
    histories = load_histories(store, split, test, HISTORY_AS_TEXT)
    profile_sets["history-as-text"] = {u: [history_text(rows)] for u, rows in histories.items()}
    return store, split, test, {"profiles": profile_sets, "seconds": timings}


def answers_of(predictor, store: Store, split, users: list[str], profile_sets: dict) -> tuple[dict, dict]:
    """{variant: {set: {user: [(truth, distribution)] in target x profile order}}}, and evaluations/s per set.
    Set "10h" is the no-profile question. An LLM predictor gives two variants from one pass: with its prior and
    without."""
    recent, held_out = load_recent_and_targets(store, split, users, split.params["targets"])
    texts = {"10h": {u: [NO_PROFILE] for u in users}}
    for label, artifacts in profile_sets.items():
        texts[label] = {u: [] for u in users}
        if isinstance(artifacts, dict):  # texts made here, by user
            texts[label] = {u: artifacts.get(u, []) for u in users}
            continue
        for artifact in artifacts:
            for row in store.rows(artifact, "profiles"):
                if row["user_id"] in texts[label]:
                    texts[label][row["user_id"]].append(row["text"])
    is_llm = isinstance(predictor, LLMPredictor)
    variants = ("prior", "no prior") if is_llm else ("",)
    found = {variant: {name: {} for name in texts} for variant in variants}
    speed = {}
    for name, by_user in texts.items():
        started, evaluations = time.perf_counter(), 0
        for user in users:
            targets = held_out[user]
            if not targets or not by_user[user]:
                continue
            evaluations += len(targets) * len(by_user[user])
            if is_llm:
                raw = predictor.label_logprobs(user, recent[user], targets, by_user[user])
                for variant, shift in (("prior", predictor.prior), ("no prior", None)):
                    found[variant][name][user] = [  # raw is flat, in target x profile order
                        (targets[i // len(by_user[user])].sentiment, probabilities(r, predictor.prompt.labels, shift))
                        for i, r in enumerate(raw)
                    ]
            else:
                distributions = predictor.predict(user, recent[user], targets, by_user[user])
                found[""][name][user] = [
                    (target.sentiment, d)
                    for target, per_profile in zip(targets, distributions, strict=True)
                    for d in per_profile
                ]
        speed[name] = round(evaluations / (time.perf_counter() - started), 2)
    return found, speed


def summary(found: dict, baselines: dict[str, dict[str, str]]) -> dict:
    """Figures of one predictor variant: per set, metrics with intervals, minus each baseline and minus 10H
    (paired, on the same predictions), and the share of answers the profile changed."""
    label_of = lambda pairs: {u: [(t, max(d, key=d.get)) for t, d in rows] for u, rows in pairs.items()}  # noqa: E731
    ten_h = label_of(found["10h"])
    result = {}
    for name, answers in found.items():
        predicted = label_of(answers)
        figures = with_interval(predicted)
        entry = {k: figures[k] for k in ("n", "users", "accuracy", "macro_f1", "weighted_f1", "ci95", "confusion")}
        entry["minus_baselines"] = {
            b: paired(predicted, {u: [(t, labels[u]) for t, _ in rows] for u, rows in predicted.items()})
            for b, labels in baselines.items()
        }
        if name != "10h":
            # each row's own target's 10H answer: rows are target x profile, 10H has one row per target
            ten_h_of = {u: [ten_h[u][i * len(ten_h[u]) // len(rows)][1] for i in range(len(rows))]
                        for u, rows in predicted.items()}  # fmt: skip
            entry["minus_10h"] = paired(
                predicted, {u: [(t, a) for (t, _), a in zip(rows, ten_h_of[u])] for u, rows in predicted.items()}
            )
            changed = [p != a for u, rows in predicted.items() for (_, p), a in zip(rows, ten_h_of[u])]
            entry["answers_changed_by_profile"] = round(sum(changed) / len(changed), 4)
        result[name] = entry
    return result


def report(args, users, prepared, baseline_figures, results, speeds, seconds) -> None:
    """Print the table and write the JSON (called after every predictor, so a cut-short run keeps what it did)."""
    table = []
    for name, sets in results.items():
        for set_name, entry in sets.items():
            low, high = entry["ci95"]["accuracy"]
            gap = entry.get("minus_10h", {})
            gap_text = ""
            if gap:
                gap_low, gap_high = gap["ci95"]["accuracy"]
                gap_text = f"{gap['difference']['accuracy']:+.3f} [{gap_low:+.3f}, {gap_high:+.3f}]"
            table.append([name, set_name, entry["users"], f"{entry['accuracy']:.3f} [{low:.3f}, {high:.3f}]",
                          f"{entry['macro_f1']:.3f}", gap_text, entry.get("answers_changed_by_profile", ""),
                          speeds[name].get(set_name, "")])  # fmt: skip
    for b, figures in baseline_figures.items():
        low, high = figures["ci95"]["accuracy"]
        table.append([b, "10h", figures["users"], f"{figures['accuracy']:.3f} [{low:.3f}, {high:.3f}]",
                      f"{figures['macro_f1']:.3f}", "", "", ""])  # fmt: skip
    headers = ["predictor", "profiles", "users", "accuracy [95% CI]", "macro F1", "profile - 10H", "changed", "eval/s"]
    print_table(headers, table)
    default_speed = speeds.get(DEFAULT, {}).get("gemma-3-270m")
    previous_speed = speeds.get(PREVIOUS_DEFAULT, {}).get("gemma-3-270m")
    payload = {
        "split": args.split_ref,
        "profiles_of_split": SPLIT,
        "test_users": len(users),
        "profiles": {
            label: [a.ref for a in artifacts] if isinstance(artifacts, list) else "written here from the split"
            for label, artifacts in prepared["profiles"].items()
        },
        "baselines": {
            b: {k: figures[k] for k in ("accuracy", "macro_f1", "weighted_f1", "ci95", "n")}
            for b, figures in baseline_figures.items()
        },
        "predictors": results,
        "evaluations_per_s": speeds,
        "default": DEFAULT,
        "default_speedup_vs_previous_default": (
            round(default_speed / previous_speed, 2) if default_speed and previous_speed else None
        ),
        "seconds": seconds,
    }  # fmt: skip
    print(f"wrote {write_result(args.result, payload)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, default=RESULTS / "predictor-store" / "lettingo.db")
    parser.add_argument("--users", type=int, default=None, help="first N test users (default: all)")
    parser.add_argument("--predictors", default=",".join(PREDICTORS))
    parser.add_argument("--slow-users", type=int, default=None, help="first N test users for the LLM predictors")
    parser.add_argument("--merge", action="store_true", help="keep the other predictors' rows of the last results")
    parser.add_argument("--eval-split", default=None, help="judge on this split's targets (made if missing)")
    parser.add_argument("--targets", type=int, default=4, help="targets per user of --eval-split")
    args = parser.parse_args()
    args.store.parent.mkdir(parents=True, exist_ok=True)
    store, split, users, prepared = prepare(args.store, args.users)
    if args.eval_split:  # the profiles of SPLIT, judged on another split's targets (same users, later targets)
        lettingo(args.store, "split", "--name", args.eval_split, "--targets", str(args.targets))
        split = store.resolve(f"split:{args.eval_split}")
        if select_users(store, split, "test")[: len(users)] != users:
            sys.exit(f"split:{args.eval_split} has other test users than split:{SPLIT}")
    args.result = "predictor_accuracy" + (f"_{args.eval_split}" if args.eval_split else "")
    args.split_ref = split.ref
    recent, held_out = load_recent_and_targets(store, split, users, split.params["targets"])
    # this bench judges 10H splits, whose baselines answer the same for all of a user's targets
    by_target = baseline_predictions(store, split, held_out)
    baselines = {b: {u: labels[(u, held_out[u][0].position)] for u in users} for b, labels in by_target.items()}
    baseline_figures = {
        b: with_interval({u: [(t.sentiment, labels[u]) for t in held_out[u]] for u in users})
        for b, labels in baselines.items()
    }

    results, speeds, seconds = {}, {}, dict(prepared["seconds"])
    if args.merge and (RESULTS / f"{args.result}.json").exists():  # a run of some predictors adds to the last
        import json

        last = json.loads((RESULTS / f"{args.result}.json").read_text())
        results, speeds, seconds = last["predictors"], last["evaluations_per_s"], {**last["seconds"], **seconds}
    specs = args.predictors.split(",")
    if DEFAULT in specs and "llm:gemma-3-270m" not in specs and not args.eval_split:
        specs.append(PREVIOUS_DEFAULT)  # the default's evaluations/s against the previous default's (with llm:gemma
        # its no-prior variant is measured in the same pass)
    for spec in specs:
        started = time.perf_counter()
        predictor = make_predictor(spec, store, split)
        seconds[f"{spec}: build (fit)"] = round(time.perf_counter() - started, 1)
        chosen = users[: args.slow_users] if args.slow_users and spec.startswith("llm:") else users
        try:
            found, speed = answers_of(predictor, store, split, chosen, prepared["profiles"])
        finally:
            predictor.close()
        seconds[f"{spec}: predict"] = round(time.perf_counter() - started, 1)
        for variant, by_set in found.items():
            name = f"{spec}?prior=none" if variant == "no prior" else spec
            answered = by_set["10h"]  # the users this predictor answered (LLM predictors: the first --slow-users)
            results[name] = summary(by_set, {b: {u: a[u] for u in answered} for b, a in baselines.items()})
            speeds[name] = speed
        print(f"{spec}: done in {seconds[f'{spec}: predict']} s", file=sys.stderr)
        report(args, users, prepared, baseline_figures, results, speeds, seconds)  # after each: a partial run counts

    report(args, users, prepared, baseline_figures, results, speeds, seconds)


if __name__ == "__main__":
    main()
