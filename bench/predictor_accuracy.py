"""Measurement: which predictor, and does the profile change its answers? MovieLens 100K, the default
generator (Gemma 3 270M), the same test users with no profile (10H) and with N generated profiles each, for
each predictor: the LLM (uncalibrated and calibrated) and the embedding predictor.

Chains the real CLI, as a user's script would. Run: python bench/predictor_accuracy.py [--users 60] [--n 4].
Writes bench/results/predictor_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import MOVIELENS_100K as DATA  # noqa: E402
from _common import print_table, write_result

PREDICTORS = {
    "llm:gemma-3-270m (default)": ["--predictor", "llm:gemma-3-270m"],
    "llm:gemma-3-270m --calibrate": ["--predictor", "llm:gemma-3-270m", "--calibrate"],
    "emb:minilm": ["--predictor", "emb:minilm"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=60, help="test users measured")
    parser.add_argument("--n", type=int, default=4, help="profiles per user")
    parser.add_argument("--max-tokens", type=int, default=120)
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is not present")
    timings, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "lettingo.db")

        def lettingo(label: str, *command: str, stdin: str | None = None) -> str:
            start = time.perf_counter()
            result = subprocess.run(
                ["lettingo", *command, "--store", store], input=stdin, capture_output=True, text=True, check=True
            )
            timings[label] = round(time.perf_counter() - start, 1)
            print(result.stderr.strip()[-400:], file=sys.stderr)
            return result.stdout.strip()

        lettingo("ingest", "ingest", "movielens", str(DATA))
        split = lettingo("split", "split")
        from lettingo_cli.store import Store

        opened = Store(store)
        test_users = sorted(
            r["user_id"] for r in opened.rows(opened.resolve(split), "split_users", "partition = 'test'")
        )
        chosen = test_users[: args.users]
        profiles = lettingo(
            "gen",
            "gen",
            "--users",
            "-",
            "--n",
            str(args.n),
            "--max-tokens",
            str(args.max_tokens),
            stdin="\n".join(chosen),
        )
        ids = ",".join(chosen)
        for number, (label, options) in enumerate(PREDICTORS.items()):
            with_profiles = json.loads(
                lettingo(
                    f"{label}: eval profiles",
                    "eval",
                    profiles,
                    "--users",
                    ids,
                    "--name",
                    f"p{number}",
                    "--json",
                    *options,
                )
            )
            no_profile = json.loads(
                lettingo(
                    f"{label}: eval --no-profile",
                    "eval",
                    "--no-profile",
                    "--users",
                    ids,
                    "--name",
                    f"h{number}",
                    "--json",
                    *options,
                )
            )
            compared = json.loads(
                lettingo("compare", "eval", "--compare", with_profiles["ref"], "--compare", no_profile["ref"], "--json")
            )
            rows = list(opened.rows(opened.get(with_profiles["params"]["scores"]), "scores"))
            baseline = {r["user_id"]: r for r in opened.rows(opened.get(no_profile["params"]["scores"]), "scores")}
            by_user: dict[str, list[dict]] = {}
            for row in rows:
                by_user.setdefault(row["user_id"], []).append(row)
            results[label] = {
                "no_profile_10h": arm(no_profile),
                "with_profiles": arm(with_profiles),
                "profiles_minus_10h": compared["a_minus_b"],
                "predictions_changed_by_profile": round(
                    sum(r["predicted"] != baseline[r["user_id"]]["predicted"] for r in rows) / len(rows), 4
                ),
                "mean_spread_p_true_across_profiles": round(
                    sum(max(r["p_true"] for r in v) - min(r["p_true"] for r in v) for v in by_user.values())
                    / len(by_user),
                    4,
                ),
                "users_with_right_and_wrong_profiles": sum(
                    1 for v in by_user.values() if 0 < sum(r["correct"] for r in v) < len(v)
                ),
            }
        always_like = sum(1 for r in rows if r["truth"] == "like") / len(rows)

    table = []
    for label, r in results.items():
        diff, ci = r["profiles_minus_10h"]["difference"]["accuracy"], r["profiles_minus_10h"]["ci95"]["accuracy"]
        table.append(
            [
                label,
                f"{r['no_profile_10h']['accuracy']:.3f}",
                f"{r['with_profiles']['accuracy']:.3f}",
                f"{r['with_profiles']['macro_f1']:.3f}",
                f"{diff:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]",
                f"{r['predictions_changed_by_profile']:.1%}",
                r["users_with_right_and_wrong_profiles"],
            ]
        )
    print_table(
        ["predictor", "10H acc", "profiles acc", "profiles macro F1", "profiles - 10H", "changed", "mixed users"], table
    )
    print(f"always-like accuracy {always_like:.3f}")
    path = write_result(
        "predictor_accuracy",
        {
            "users": args.users,
            "profiles_per_user": args.n,
            "max_tokens": args.max_tokens,
            "generator": "gemma-3-270m (default)",
            "always_like_accuracy": round(always_like, 4),
            "predictors": results,
            "seconds": timings,
        },
    )
    print(f"wrote {path}")


def arm(payload: dict) -> dict:
    report = payload["report"]
    return {key: report[key] for key in ("accuracy", "macro_f1", "weighted_f1", "ci95", "confusion", "n", "users")}


if __name__ == "__main__":
    main()
