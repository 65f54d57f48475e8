"""Benchmark: the store at scale. Insert 1,000,000 profile rows into one artifact, seal it (hash every row),
then fetch one user's profiles.

Run: python3 -m bench.store_scale [--rows 1000000] [--per-user 10]. Writes bench/results/store_scale.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench._common import print_table, write_result
from lettingo_cli.store import Store

WORDS = [
    "likes",
    "dark",
    "thrillers",
    "slow",
    "dramas",
    "rewatches",
    "classics",
    "avoids",
    "horror",
    "romance",
    "sci-fi",
    "documentaries",
]


def profile_rows(n_rows: int, per_user: int, generators: tuple[str, ...]):
    rng = random.Random(0)
    per_generator = per_user // len(generators)
    for row in range(n_rows):
        user, within = divmod(row, per_user)
        generator, sample = divmod(within, per_generator)
        yield {
            "user_id": f"user{user:07d}",
            "generator": generators[generator % len(generators)],
            "sample_index": sample,
            "seed": sample,
            "prompt_hash": f"{user:064x}",
            "text": " ".join(rng.choices(WORDS, k=40)),
            "n_tokens": 60,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-user", type=int, default=10)
    args = parser.parse_args()
    generators = ("gguf:gemma-3-270m", "openai:other@server")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "lettingo.db")
        artifact = store.begin("profiles", "bench", {}, run_id=None)
        start = time.perf_counter()
        with store.transaction():
            store.insert_rows(artifact, "profiles", profile_rows(args.rows, args.per_user, generators))
        insert_s = time.perf_counter() - start

        start = time.perf_counter()
        artifact = store.finalize(artifact)
        finalize_s = time.perf_counter() - start
        db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("lettingo.db*"))

        n_users = args.rows // args.per_user
        fetch_times, fetched = [], 0
        rng = random.Random(1)
        for _ in range(200):
            user = f"user{rng.randrange(n_users):07d}"
            start = time.perf_counter()
            rows = list(store.rows(artifact, "profiles", "user_id = ?", [user]))
            fetch_times.append(time.perf_counter() - start)
            fetched = len(rows)
        store.close()

    results = {
        "rows": args.rows,
        "profiles_per_user": args.per_user,
        "insert_s": round(insert_s, 2),
        "insert_rows_per_s": round(args.rows / insert_s),
        "finalize_hash_s": round(finalize_s, 2),
        "fetch_one_user_median_ms": round(statistics.median(fetch_times) * 1000, 3),
        "fetch_one_user_p95_ms": round(sorted(fetch_times)[int(0.95 * len(fetch_times))] * 1000, 3),
        "rows_per_fetch": fetched,
        "database_mb": round(db_bytes / 1e6, 1),
    }
    print_table(["measure", "value"], [[k, v] for k, v in results.items()])
    print(f"wrote {write_result('store_scale', results)}")


if __name__ == "__main__":
    main()
