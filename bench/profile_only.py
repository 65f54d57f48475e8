"""The profile-only protocol, measured: which predictor reads the profile, and how much a profile can add when it is
the user's whole representation (no recent ratings).

Everything runs through the `lettingo` command line on one store, as a user would: a `--recent 0` split with
TARGETS held-out targets per user, base profiles from the default generator (train users for the readers that
train on them, test users for the arms), the built-in written generators for the controls (`history-text`,
`stats-text`, `swap:REF`), then per predictor `eval` of every arm on the same test users and targets. Per
predictor: accuracy and macro F1 with intervals per arm, each arm minus no profile and the swap controls,
paired; the baselines of the protocol (always-majority, item-mean, history-mean); the share of answers a profile
changes; fit seconds and evaluations/s; and on the train users (scored out of fold) how often a user's base
profiles disagree in how many targets they get right and the median best-minus-worst mean P(true label).
With --ten-h, the same arms under the 10H protocol (a `--recent 10` split, head:minilm) for the side-by-side.

    python3 -m bench.profile_only                       # MovieLens 100K, all test users
    python3 -m bench.profile_only --data ../shared/data/movielens-latest-small --tag profile_only_latest_small

Designs are chosen on train users (the out-of-fold figures in each predictor artifact), never on test users.
Writes bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._common import RESULTS, write_result
from lettingo_cli.eval import compare
from lettingo_cli.store import Store

HERE = Path(__file__).resolve().parent
ARMS = ("none", "base", "history-text", "stats-text", "swap-base", "swap-history-text")
DIFFERENCES = (
    ("base", "none"),
    ("history-text", "none"),
    ("stats-text", "none"),
    ("base", "swap-base"),
    ("history-text", "swap-history-text"),
)


def lettingo(store: Path, *args: str, stdin: str | None = None) -> str:
    """Run a lettingo command on the store; its stdout (the new artifact's reference)."""
    print("$ lettingo " + " ".join(args), file=sys.stderr, flush=True)
    env = {**os.environ, "LETTINGO_STORE": str(store)}
    done = subprocess.run([sys.executable, "-m", "lettingo_cli", *args], env=env, input=stdin, stdout=subprocess.PIPE,
                          text=True)  # fmt: skip
    if done.returncode:
        sys.exit(f"lettingo {' '.join(args)} failed ({done.returncode})")
    return done.stdout.strip()


def timed(seconds: dict, key: str, *call, stdin: str | None = None):
    started = time.perf_counter()
    result = lettingo(*call, stdin=stdin)
    seconds[key] = round(seconds.get(key, 0) + time.perf_counter() - started, 1)
    return result


def reward_density(store: Store, scores_ref: str) -> dict:
    """On the users of a scores artifact: the share whose profiles disagree in how many targets they get right, and
    the median (and largest) best-minus-worst mean P(true label) of a user's profiles."""
    scores = store.resolve(scores_ref, "scores")
    per_profile: dict[tuple[str, int], list[dict]] = {}
    for row in store.rows(scores, "scores"):
        per_profile.setdefault((row["user_id"], row["sample_index"]), []).append(row)
    by_user: dict[str, list[tuple[int, float]]] = {}
    for (user, _), rows in per_profile.items():
        right = sum(r["correct"] for r in rows)
        by_user.setdefault(user, []).append((right, statistics.fmean(r["p_true"] for r in rows)))
    users = [u for u, profiles in by_user.items() if len(profiles) > 1]
    gaps = [max(p for _, p in by_user[u]) - min(p for _, p in by_user[u]) for u in users]
    disagree = sum(len({r for r, _ in by_user[u]}) > 1 for u in users)
    return {
        "users": len(users),
        "share_disagreeing": round(disagree / len(users), 3) if users else None,
        "median_best_minus_worst": round(statistics.median(gaps), 4) if gaps else None,
        "max_best_minus_worst": round(max(gaps), 4) if gaps else None,
    }


def changed_share(store: Store, arm_eval, none_eval) -> float:
    """The share of (profile, target) answers that differ from the same target's no-profile answer."""

    def answers(artifact):
        scores = store.get(artifact.params["scores"])
        return [(r["user_id"], r["target_position"], r["predicted"]) for r in store.rows(scores, "scores")]

    none = {(u, t): p for u, t, p in answers(none_eval)}
    rows = answers(arm_eval)
    return round(sum(p != none[(u, t)] for u, t, p in rows if (u, t) in none) / len(rows), 3) if rows else 0.0


def figures(artifact) -> dict:
    report = artifact.report
    return {
        "users": report["users"],
        "n": report["n"],
        **{m: round(report[m], 4) for m in ("accuracy", "macro_f1", "weighted_f1")},
        "ci95": {m: [round(x, 4) for x in report["ci95"][m]] for m in ("accuracy", "macro_f1")},
    }


def difference(result: dict) -> dict:
    return {
        "users": result["users"],
        **{
            m: {
                "value": round(result["difference"][m], 4),
                "ci_low": round(result["ci95"][m][0], 4),
                "ci_high": round(result["ci95"][m][1], 4),
            }  # fmt: skip
            for m in ("accuracy", "macro_f1")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "movielens-100k")
    parser.add_argument("--tag", default="profile_only")
    parser.add_argument("--store", type=Path, help="default: bench/results/<tag>-store/lettingo.db")
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--train-users", type=int, default=200, help="train users with base profiles")
    parser.add_argument("--test-users", type=int, default=0, help="test users judged (0: all)")
    parser.add_argument("--n", type=int, default=2, help="base profiles per user")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument(
        "--predictors",
        default="reader:bow,reader:bow?profiles={train},reader:bow?profiles={train}&user_mean=1,"
        "head:minilm?profiles={train}",
        help="comma-separated specs; {train} is the train users' base profiles",
    )
    parser.add_argument("--ten-h", action="store_true", help="also the 10H protocol with head:minilm")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data} is not present: this benchmark needs it")
    store_path = args.store or RESULTS / f"{args.tag}-store" / "lettingo.db"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    kind = "movielens" if (args.data / "u.data").exists() or (args.data / "ratings.csv").exists() else "csv"
    dataset = timed(seconds, "ingest", store_path, "ingest", kind, str(args.data))
    split = timed(seconds, "split", store_path, "split", dataset, "--recent", "0", "--targets", str(args.targets),
                  "--name", "po")  # fmt: skip
    store = Store(store_path)
    split_artifact = store.resolve(split, "split")
    from lettingo_cli.split_data import select_users

    train = select_users(store, split_artifact, "train")[: args.train_users]
    test = select_users(store, split_artifact, "test")
    test = test[: args.test_users] if args.test_users else test
    gen = ["--split", split, "--n", str(args.n), "--max-tokens", str(args.max_tokens)]
    train_base = timed(seconds, "gen_train_base", store_path, "gen", "--users", "-", *gen, "--name", "po-train",
                       stdin="\n".join(train))  # fmt: skip
    arms = {
        "base": timed(
            seconds,
            "gen_test_base",
            store_path,
            "gen",
            "--users",
            "-",
            *gen,
            "--name",
            "po-test",
            stdin="\n".join(test),
        ),  # fmt: skip
    }
    for generator in ("history-text", "stats-text"):
        arms[generator] = timed(seconds, f"gen_{generator}", store_path, "gen", "--users", "-", "--split", split,
                                "--generator", generator, "--name", f"po-{generator}",
                                stdin="\n".join(test))  # fmt: skip
    arms["swap-base"] = lettingo(store_path, "gen", "--users", "-", "--split", split, "--generator",
                                 f"swap:{arms['base']}", "--name", "po-swap-base", stdin="\n".join(test))  # fmt: skip
    arms["swap-history-text"] = lettingo(store_path, "gen", "--users", "-", "--split", split, "--generator",
                                         f"swap:{arms['history-text']}", "--name", "po-swap-history-text",
                                         stdin="\n".join(test))  # fmt: skip
    profile_tokens = {
        arm: round(statistics.fmean(r["n_tokens"] for r in store.rows(store.resolve(ref, "profiles"), "profiles")), 1)
        for arm, ref in arms.items()
    }

    results = {}
    for template in args.predictors.split(","):
        spec = template.replace("{train}", train_base.split(":", 1)[1])
        label = template.replace("{train}", "TRAIN")
        entry: dict = {"spec": spec}
        started = time.perf_counter()
        if spec.startswith("reader:"):
            fitted = lettingo(store_path, "fit", split, "--predictor", spec)
            entry["fit_seconds"] = round(time.perf_counter() - started, 1)
            artifact = store.resolve(fitted, "predictor")
            entry["predictor"] = fitted
            entry["out_of_fold"] = artifact.report["out_of_fold"]
            entry["epochs"] = artifact.counts["epochs"]
            spec = f"predictor:{fitted.split(':', 1)[1]}"
        tag = label.replace(":", "-").replace("?", "-").replace("&", "-").replace("=", "-")
        evals = {}
        started = time.perf_counter()
        judged = ["--predictor", spec, "--targets", str(args.targets)]
        evals["none"] = lettingo(store_path, "eval", "--no-profile", "--split", split, *judged, "--users", "-",
                                 "--name", f"{tag}-none", stdin="\n".join(test))  # fmt: skip
        for arm, ref in arms.items():
            evals[arm] = lettingo(store_path, "eval", ref, "--predictor", spec, "--targets", str(args.targets),
                                  "--name", f"{tag}-{arm}")  # fmt: skip
        elapsed = time.perf_counter() - started
        artifacts = {arm: store.resolve(ref, "eval") for arm, ref in evals.items()}
        evaluations = sum(a.report["n"] for a in artifacts.values())
        entry["eval_seconds"] = round(elapsed, 1)
        entry["evaluations_per_s"] = round(evaluations / elapsed, 1)
        entry["arms"] = {arm: figures(a) for arm, a in artifacts.items()}
        entry["baselines"] = {
            name: {m: round(v[m], 4) for m in ("accuracy", "macro_f1")}
            for name, v in artifacts["none"].report["baselines"].items()
        }
        entry["arms_minus_baselines"] = {
            arm: {name: difference(d) for name, d in a.report["minus_baselines"].items()}
            for arm, a in artifacts.items()
        }
        entry["differences"] = {
            f"{a} - {b}": difference(
                compare(store, store.get(artifacts[a].params["scores"]), store.get(artifacts[b].params["scores"]))
            )
            for a, b in DIFFERENCES
        }
        entry["changed_by_profile"] = {arm: changed_share(store, artifacts[arm], artifacts["none"]) for arm in ARMS[1:]}
        train_scores = lettingo(store_path, "score", train_base, "--predictor", spec, "--targets", str(args.targets),
                                "--name", f"{tag}-train")  # fmt: skip
        entry["reward_density_train"] = reward_density(store, train_scores)
        results[label] = entry
        print(json.dumps({label: {k: entry[k] for k in ("differences", "reward_density_train")}}, indent=1),
              file=sys.stderr)  # fmt: skip

    ten_h = None
    if args.ten_h:
        ten_h = ten_h_reference(store_path, store, dataset, args, test)

    payload = {
        "data": args.data.name,
        "split": split,
        "targets_per_user": args.targets,
        "test_users": len(test),
        "train_users_with_profiles": len(train),
        "profiles_per_user": args.n,
        "arms": dict(arms),
        "mean_tokens": profile_tokens,
        "predictors": results,
        "ten_h": ten_h,
        "stage_seconds": seconds,
    }
    RESULTS.mkdir(exist_ok=True)
    write_result(args.tag, payload)
    (RESULTS / f"{args.tag}.md").write_text(markdown(payload))
    print(markdown(payload))


def ten_h_reference(store_path: Path, store: Store, dataset: str, args, test: list[str]) -> dict:
    """The 10H protocol on the same users' last TARGETS interactions: head:minilm fitted on its train users' own
    history text, no profile vs the history as text."""
    split = lettingo(store_path, "split", dataset, "--recent", "10", "--targets", str(args.targets), "--name", "tenh")
    history = lettingo(store_path, "gen", "--users", "-", "--split", split, "--generator", "history-text", "--name",
                       "tenh-history-text", stdin="\n".join(test))  # fmt: skip
    none = lettingo(store_path, "eval", "--no-profile", "--split", split, "--users", "-", "--targets",
                    str(args.targets), "--name", "tenh-none", stdin="\n".join(test))  # fmt: skip
    text = lettingo(store_path, "eval", history, "--targets", str(args.targets), "--name", "tenh-history-text")
    first, second = store.resolve(none, "eval"), store.resolve(text, "eval")
    return {
        "split": split,
        "predictor": "head:minilm",
        "none": figures(first),
        "history-text": figures(second),
        "history-text - none": difference(
            compare(store, store.get(second.params["scores"]), store.get(first.params["scores"]))
        ),  # fmt: skip
        "baselines": {
            k: {m: round(v[m], 4) for m in ("accuracy", "macro_f1")} for k, v in first.report["baselines"].items()
        },  # fmt: skip
    }


def _interval(figure: dict, metric: str) -> str:
    low, high = figure["ci95"][metric]
    return f"{figure[metric]:.3f} [{low:.3f}, {high:.3f}]"


def _diff(d: dict, metric: str) -> str:
    x = d[metric]
    return f"{x['value']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]"


def markdown(payload: dict) -> str:
    lines = [
        f"# Profile-only protocol on {payload['data']} ({payload['test_users']} test users x "
        f"{payload['targets_per_user']} targets; {payload['profiles_per_user']} base profiles per user)",
        "",
        "Mean profile tokens: " + ", ".join(f"{k} {v}" for k, v in payload["mean_tokens"].items()),
        "",
    ]
    for label, entry in payload["predictors"].items():
        lines += [f"## {label}", ""]
        if "out_of_fold" in entry:
            oof = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in entry["out_of_fold"].items())
            lines += [f"Fitted in {entry['fit_seconds']} s ({entry['epochs']} epochs); out of fold on train users: "
                      f"{oof}.", ""]  # fmt: skip
        lines += [
            "| arm | accuracy [95% CI] | macro F1 [95% CI] | answers changed by the profile |",
            "|---|---|---|---|",
        ]
        for arm, figure in entry["arms"].items():
            changed = entry["changed_by_profile"].get(arm, "")
            lines.append(f"| {arm} | {_interval(figure, 'accuracy')} | {_interval(figure, 'macro_f1')} | {changed} |")
        for name, figure in entry["baselines"].items():
            lines.append(f"| baseline {name} | {figure['accuracy']:.3f} | {figure['macro_f1']:.3f} | |")
        lines += ["", "| paired difference | accuracy [95% CI] | macro F1 [95% CI] |", "|---|---|---|"]
        for name, d in entry["differences"].items():
            lines.append(f"| {name} | {_diff(d, 'accuracy')} | {_diff(d, 'macro_f1')} |")
        for name, d in entry["arms_minus_baselines"]["history-text"].items():
            lines.append(f"| history-text - {name} | {_diff(d, 'accuracy')} | {_diff(d, 'macro_f1')} |")
        density = entry["reward_density_train"]
        lines += ["", f"Train users ({density['users']}, out of fold): {density['share_disagreeing']} of users' base "
                  f"profiles disagree in how many targets they get right; best - worst mean P(true) median "
                  f"{density['median_best_minus_worst']}, largest {density['max_best_minus_worst']}. Evaluations/s "
                  f"{entry['evaluations_per_s']}.", ""]  # fmt: skip
    if payload.get("ten_h"):
        t = payload["ten_h"]
        lines += ["## 10H protocol (head:minilm, same test users and targets)", "",
                  f"no profile {_interval(t['none'], 'accuracy')}, "
                  f"history-text {_interval(t['history-text'], 'accuracy')}; "
                  f"history-text - none {_diff(t['history-text - none'], 'accuracy')}", ""]  # fmt: skip
    lines.append("Stage seconds: " + ", ".join(f"{k} {v}" for k, v in payload["stage_seconds"].items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
