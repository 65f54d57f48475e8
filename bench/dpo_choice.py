"""Choose the paper run's DPO settings on train users, never on test users.

The profile-only paper run (experiments/paper.sh with RECENT=0) trains on the pairs of its first USERS train users.
This script takes that run's store, its pairs and its split, trains one adapter per candidate setting on those
pairs (the same `lettingo dpo` command paper.sh runs, so a rerun of paper.sh with the chosen DPO_ARGS finds it in
the cache), exports it, and lets each exported generator write profiles for VALIDATION train users: the next
--validation-users train users by id after the pairs' users, who gave no pairs. The frozen judge scores them on
their targets; train users are judged by the reader's network that never saw them (its out-of-fold networks), so
these figures are as clean as a test user's. Each candidate is reported against the base generator on the same
users and targets (paired bootstrap intervals), with its stated-value share, its mean tokens and DPO's last steps.

    python3 -m bench.dpo_choice --candidate "lr5e-5=--lr 5e-5 --epochs 1" --candidate "lr2e-4x2=--lr 2e-4 --epochs 2"
    python3 -m bench.dpo_choice --tag dpo_choice_temperature --temperature 0.7 --temperature 0.4   # the base's sampling
    python3 -m bench.dpo_choice --tag dpo_choice_round2 --generator "round2=gguf:export:paper-po-r2@v1?quant=q8_0"

Writes bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import time
from pathlib import Path

from profile_only import difference, figures, lettingo

from bench._common import RESULTS, write_result
from lettingo_cli.eval import compare_evals
from lettingo_cli.split_data import select_users
from lettingo_cli.stated import StatedValues, stated_values
from lettingo_cli.store import Store


def profile_facts(store: Store, profiles_ref: str, stated: StatedValues) -> dict:
    """The share of profiles that state at least one value the way the reader reads them ("4/5"), their mean
    tokens, and the shares gen flagged empty or degenerate (repeating itself)."""
    rows = list(store.rows(store.resolve(profiles_ref, "profiles"), "profiles"))
    flags = [json.loads(r["flags"]) for r in rows]
    return {
        "profiles": len(rows),
        "stating_a_rating": round(sum(bool(stated.lines(r["text"])) for r in rows) / len(rows), 3),
        "mean_tokens": round(statistics.fmean(r["n_tokens"] or 0 for r in rows), 1),
        "empty": round(sum("empty" in f for f in flags) / len(rows), 3),
        "degenerate": round(sum("degenerate" in f for f in flags) / len(rows), 3),
    }


def pair_facts(store: Store, pairs_ref: str, stated: StatedValues) -> dict:
    """How many of the pairs' chosen and rejected profiles state a value the way the reader reads them."""
    rows = list(store.rows(store.resolve(pairs_ref, "pairs"), "pairs"))
    return {
        "pairs": len(rows),
        "chosen_stating_a_rating": sum(bool(stated.lines(r["chosen"])) for r in rows),
        "rejected_stating_a_rating": sum(bool(stated.lines(r["rejected"])) for r in rows),
    }


def last_steps(store: Store, adapter_ref: str, count: int = 10) -> dict:
    """DPO's mean loss, margin and reward accuracy over its last `count` steps, and its reward accuracy over the
    first epoch (pairs the model had not trained on yet)."""
    steps = store.training_steps(store.resolve(adapter_ref, "adapter").run_id)
    rows = steps[-count:]
    columns = {"loss": "loss", "margin": "rewards_margins", "accuracy": "rewards_accuracies"}
    unseen = [r["rewards_accuracies"] for r in steps if r["epoch"] is not None and r["epoch"] <= 1]
    return {
        "steps": len(rows),
        **{k: round(statistics.fmean(r[c] for r in rows), 3) for k, c in columns.items()},
        # in the first epoch every step's pairs are new to the model: how often it already preferred the chosen
        "first_epoch_accuracy": round(statistics.fmean(unseen), 3) if unseen else None,
    }


def interval(arm: dict, metric: str) -> str:
    """The arm's difference from the base generator on `metric` with its interval, or '' for the base itself."""
    if "minus_base" not in arm:
        return ""
    d = arm["minus_base"][metric]
    return f"{d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=RESULTS / "paper-po-store" / "lettingo.db")
    parser.add_argument("--name", default="paper-po", help="the paper run's NAME")
    parser.add_argument("--tag", default="dpo_choice")
    parser.add_argument("--users", type=int, default=100, help="the paper run's USERS (the pairs' train users)")
    parser.add_argument("--validation-users", type=int, default=50)
    parser.add_argument("--n", type=int, default=2, help="profiles per validation user and generator")
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--predictor", default="reader:bow")
    parser.add_argument("--base", default="gemma-3-270m")
    parser.add_argument("--common", default="--beta 0.1 --max-length 1280", help="dpo flags of every candidate")
    parser.add_argument("--candidate", action="append", default=[], help="LABEL=dpo flags (repeat)")
    parser.add_argument(
        "--generator",
        action="append",
        default=[],
        help="LABEL=SPEC: also a generator trained already (e.g. paper.sh's second round), judged the same way",
    )
    parser.add_argument(
        "--temperature",
        action="append",
        type=float,
        default=[],
        help="also the base generator sampling at this temperature (repeat; the base arm samples at gen's 1.0)",
    )
    parser.add_argument(
        "--pair-args",
        default="--rule best-worst --max-per-user 1",
        help="pair flags (paper.sh's RULE, MAX_PAIRS, LENGTH_RATIO, STATED_ERROR): the pairs every candidate trains on",
    )
    args = parser.parse_args()

    store_path = args.store
    store = Store(store_path, create=False)
    split_ref = f"split:{args.name}"
    split = store.resolve(split_ref, "split")
    stated = stated_values(store, split)
    train = select_users(store, split, "train")  # sorted by id
    first = set(select_users(store, split, f"train:{args.users}"))
    validation = [u for u in train if u not in first][: args.validation_users]
    ids = "\n".join(validation) + "\n"
    seconds: dict[str, float] = {}

    def run(key: str, *call: str, stdin: str | None = None) -> str:
        started = time.perf_counter()
        out = lettingo(store_path, *call, stdin=stdin)
        seconds[key] = round(seconds.get(key, 0) + time.perf_counter() - started, 1)
        return out

    def write_and_judge(label: str, generator: str, *sampling: str) -> tuple[str, str]:
        profiles = run(f"gen_{label}", "gen", "--split", split_ref, "--users", "-", "--generator", generator,
                       "--n", str(args.n), "--max-tokens", str(args.max_tokens), *sampling,
                       "--name", f"{args.name}-val-{label}", stdin=ids)  # fmt: skip
        evaluated = run(f"eval_{label}", "eval", profiles, "--users", "train", "--predictor", args.predictor,
                        "--targets", str(args.targets), "--name", f"{args.name}-val-{label}")  # fmt: skip
        return profiles, evaluated

    # the pairs, made by the command paper.sh runs (a cache hit when it has made them already)
    pairs_ref = run("pair", "pair", f"scores:{args.name}-train", *shlex.split(args.pair_args))
    none = run("eval_none", "eval", "--no-profile", "--split", split_ref, "--users", "-", "--predictor",
               args.predictor, "--targets", str(args.targets), "--name", f"{args.name}-val-none",
               stdin=ids)  # fmt: skip
    base_profiles, base_eval = write_and_judge("base", args.base)
    arms = {"none": {"eval": none}, "base": {"eval": base_eval, **profile_facts(store, base_profiles, stated)}}
    for temperature in args.temperature:
        label = f"base-t{temperature:g}"
        profiles, evaluated = write_and_judge(label, args.base, "--temperature", str(temperature))
        arms[label] = {"flags": f"gen --temperature {temperature:g}", "eval": evaluated,
                       **profile_facts(store, profiles, stated)}  # fmt: skip
    for given in args.generator:
        label, _, spec = given.partition("=")
        profiles, evaluated = write_and_judge(label, spec)
        arms[label] = {"flags": spec, "eval": evaluated, **profile_facts(store, profiles, stated)}
    for given in args.candidate:
        label, _, flags = given.partition("=")
        adapter = run(f"dpo_{label}", "dpo", pairs_ref, "--base", args.base, *shlex.split(args.common),
                      *shlex.split(flags), "--name", args.name)  # fmt: skip
        exported = run(f"export_{label}", "export", adapter, "--quant", "q8_0,q4_k_m", "--name", args.name)
        profiles, evaluated = write_and_judge(label, f"gguf:{exported}?quant=q8_0")
        arms[label] = {"flags": flags, "adapter": adapter, "export": exported, "eval": evaluated,
                       "dpo_last_steps": last_steps(store, adapter),
                       **profile_facts(store, profiles, stated)}  # fmt: skip

    store = Store(store_path, create=False)  # a fresh connection sees what the commands wrote
    users = set(validation)
    for label, arm in arms.items():
        arm["figures"] = figures(store.resolve(arm["eval"], "eval"))
        if label != "none":
            for other in ("none", "base") if label != "base" else ("none",):
                result = compare_evals(store, store.resolve(arm["eval"], "eval"),
                                       store.resolve(arms[other]["eval"], "eval"), users)  # fmt: skip
                arm[f"minus_{other}"] = difference(result)
    result = {
        "what": "DPO settings chosen on validation train users (no pairs from them; judged out of fold)",
        "store": str(store_path),
        "pairs": pairs_ref,
        "pair_args": args.pair_args,
        "pair_facts": pair_facts(store, pairs_ref, stated),
        "validation_users": len(validation),
        "n": args.n,
        "targets": args.targets,
        "predictor": args.predictor,
        "common_flags": args.common,
        "arms": arms,
        "seconds": seconds,
    }
    write_result(args.tag, result)
    lines = [
        f"# DPO settings on {len(validation)} validation train users x {args.n} profiles x {args.targets} targets",
        "",
        "| arm | flags | accuracy | macro F1 | - base (acc) | - base (F1) | states a rating | tokens "
        "| empty, degenerate | last-10 loss, margin |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, arm in arms.items():
        fig, steps = arm["figures"], arm.get("dpo_last_steps")
        lines.append(
            f"| {label} | {arm.get('flags', '')} | {fig['accuracy']:.3f} | {fig['macro_f1']:.3f} | "
            f"{interval(arm, 'accuracy')} | {interval(arm, 'macro_f1')} | "
            f"{arm.get('stating_a_rating', '')} | {arm.get('mean_tokens', '')} | "
            + (f"{arm['empty']}, {arm['degenerate']} | " if "empty" in arm else " | ")
            + (f"{steps['loss']:.3f}, {steps['margin']:+.3f} |" if steps else " |")
        )
    lines += ["", f"Seconds: {json.dumps(seconds)}", ""]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
