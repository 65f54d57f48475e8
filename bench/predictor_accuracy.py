"""Measurement: does the profile change the LLM predictor's answers? MovieLens 100K, default generator and
predictor (Gemma 3 270M), the same test users with no profile (10H) and with N generated profiles each.

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
from _common import print_table, write_result  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=60, help="test users measured")
    parser.add_argument("--n", type=int, default=4, help="profiles per user")
    parser.add_argument("--max-tokens", type=int, default=120)
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is not present")
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "lettingo.db")

        def lettingo(*command: str, stdin: str | None = None) -> str:
            start = time.perf_counter()
            result = subprocess.run(["lettingo", *command, "--store", store], input=stdin, capture_output=True,
                                    text=True, check=True)
            timings[command[0] + (" " + command[1] if command[0] == "eval" and len(command) > 1 and command[1].startswith("--") else "")] = round(time.perf_counter() - start, 1)
            print(result.stderr.strip()[-600:], file=sys.stderr)
            return result.stdout.strip()

        lettingo("ingest", "movielens", str(DATA))
        split = lettingo("split")
        from lettingo_cli.store import Store

        test_users = [r["user_id"] for r in Store(store).rows(Store(store).resolve(split), "split_users", "partition = 'test'")]
        chosen = "\n".join(sorted(test_users)[: args.users])
        profiles = lettingo("gen", "--users", "-", "--n", str(args.n), "--max-tokens", str(args.max_tokens), stdin=chosen)
        with_profiles = json.loads(lettingo("eval", profiles, "--users", ",".join(chosen.split()), "--json"))
        no_profile = json.loads(lettingo("eval", "--no-profile", "--users", ",".join(chosen.split()), "--json"))
        compared = json.loads(lettingo("eval", "--compare", with_profiles["ref"], "--compare", no_profile["ref"], "--json"))

        opened = Store(store)
        scores = opened.get(with_profiles["params"]["scores"])
        rows = list(opened.rows(scores, "scores"))
        # how much does the profile move the answer? spread of P(true label) across a user's profiles
        by_user: dict[str, list[float]] = {}
        for row in rows:
            by_user.setdefault(row["user_id"], []).append(row["p_true"])
        spread = [max(v) - min(v) for v in by_user.values() if len(v) > 1]
        baseline = {r["user_id"]: r["p_true"] for r in opened.rows(opened.get(no_profile["params"]["scores"]), "scores")}
        shift = [abs(r["p_true"] - baseline[r["user_id"]]) for r in rows if r["user_id"] in baseline]
        changed = sum(1 for r in rows if r["user_id"] in baseline and r["predicted"] != next(
            b["predicted"] for b in opened.rows(opened.get(no_profile["params"]["scores"]), "scores", "user_id = ?", [r["user_id"]])))
        always_like = sum(1 for r in rows if r["truth"] == "like") / len(rows)

    def arm(payload):
        report = payload["report"]
        return {key: report[key] for key in ("accuracy", "macro_f1", "weighted_f1", "ci95", "confusion", "n", "users")}

    results = {
        "users": args.users,
        "profiles_per_user": args.n,
        "max_tokens": args.max_tokens,
        "predictor": "llm:gemma-3-270m (few-shot, 3 worked examples, label log-probs)",
        "no_profile_10h": arm(no_profile),
        "with_profiles": arm(with_profiles),
        "profiles_minus_10h": compared["a_minus_b"],
        "always_like_accuracy": round(always_like, 4),
        "mean_abs_shift_p_true_vs_10h": round(sum(shift) / len(shift), 4),
        "mean_spread_p_true_across_profiles": round(sum(spread) / len(spread), 4),
        "predictions_changed_by_profile": round(changed / len(rows), 4),
        "seconds": timings,
    }
    print_table(
        ["arm", "accuracy", "95% CI", "macro F1", "weighted F1"],
        [[name, f"{results[key]['accuracy']:.3f}", "[{:.3f}, {:.3f}]".format(*results[key]["ci95"]["accuracy"]),
          f"{results[key]['macro_f1']:.3f}", f"{results[key]['weighted_f1']:.3f}"]
         for name, key in (("10H (no profile)", "no_profile_10h"), ("with profiles", "with_profiles"))],
    )
    print(json.dumps({k: results[k] for k in ("profiles_minus_10h", "always_like_accuracy", "mean_abs_shift_p_true_vs_10h",
                                               "mean_spread_p_true_across_profiles", "predictions_changed_by_profile", "seconds")}, indent=1))
    print(f"wrote {write_result('predictor_accuracy', results)}")


if __name__ == "__main__":
    main()
