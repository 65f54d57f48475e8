"""Benchmark: predictor evaluations/s with the shared prefix read once (lettingo's way) against reading every
prompt whole (the naive way), same prompts, same run. Goal: >= 3x.

Real MovieLens 100K prompts (3 worked examples + 10 recent ratings + the target, ~800 tokens), N profiles per
user of ~100 tokens each (written from the user's genres, so this benchmark needs no generation run).
Run: python3 -m bench.score_throughput [--users 8] [--n 4]. Writes bench/results/score_throughput.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench._common import movielens_split, print_table, write_result
from lettingo_cli.backends import load_backend
from lettingo_cli.predictors.llm import CompletionPrompt, WorkedExamples, block, profile_suffix
from lettingo_cli.split_data import load_histories, load_recent_and_targets, select_users

STYLES = ("Prefers", "Mostly watches", "Keeps returning to", "Rates highly")


def synthetic_profiles(history: list[dict], n: int) -> list[str]:
    genres = Counter(g for row in history for g in row["text"].split(" | ")[-1].split(", "))
    top = [g for g, _ in genres.most_common(6)]
    return [
        f"{STYLES[i % len(STYLES)]} {', '.join(top[i % 3 : i % 3 + 3])} films; "
        f"dislikes {top[-1] if top else 'nothing'}. "
        "Rates generously when a story is tense and well acted, harshly when it drags or feels sentimental. "
        "Favours the nineties, watches both new releases and older classics, and rarely gives a middle score."
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store, split = movielens_split(Path(tmp))
        users = select_users(store, split, "test")[: args.users]
        histories = load_histories(store, split, users, 30)
        recent, held_out = load_recent_and_targets(store, split, users, 1)
        examples = WorkedExamples(store, split)
        work = [
            (
                examples.prefix_for(u) + block(recent[u], held_out[u][0].text),
                [profile_suffix(p) for p in synthetic_profiles(histories[u], args.n)],
            )
            for u in users
        ]
    predictor = load_backend("gemma-3-270m")
    prefix_tokens = sum(len(predictor.tokenize(prefix)) for prefix, _ in work) / len(work)
    suffix_tokens = sum(len(predictor.tokenize(s, add_bos=False)) for _, ss in work for s in ss) / (len(work) * args.n)
    results, outputs = {}, {}
    for label, reuse in (("naive: every prompt read whole", False), ("lettingo: shared prefix read once", True)):
        start = time.perf_counter()
        outputs[label] = [
            predictor.label_logprobs(prefix, suffixes, list(CompletionPrompt.labels), reuse_prefix=reuse)
            for prefix, suffixes in work
        ]
        seconds = time.perf_counter() - start
        evaluations = len(work) * args.n
        results[label] = {
            "evaluations": evaluations,
            "seconds": round(seconds, 2),
            "evaluations_per_s": round(evaluations / seconds, 2),
        }
    predictor.close()
    naive, shared = (results[k]["evaluations_per_s"] for k in results)
    differences = [abs(a[t] - b[t]) for x, y in zip(*outputs.values()) for a, b in zip(x, y) for t in a]
    speedup = round(shared / naive, 2)
    print_table(
        ["way", "evaluations", "s", "evaluations/s"],
        [[k, r["evaluations"], r["seconds"], r["evaluations_per_s"]] for k, r in results.items()],
    )
    print(
        f"\nspeed-up {speedup}x (goal >= 3x: {'met' if speedup >= 3 else 'NOT met'}); "
        f"prefix {prefix_tokens:.0f} tokens, "
        f"profile suffix {suffix_tokens:.0f} tokens; max |log-prob difference| {max(differences):.4f}"
    )
    path = write_result(
        "score_throughput",
        {
            "users": args.users,
            "profiles_per_user": args.n,
            "mean_prefix_tokens": round(prefix_tokens),
            "mean_suffix_tokens": round(suffix_tokens),
            "results": results,
            "speedup": speedup,
            "goal": 3,
            "goal_met": speedup >= 3,
            "max_abs_logprob_difference": round(max(differences), 5),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
