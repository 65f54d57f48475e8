"""Check: does a profile's text depend on the batch around it? The default model on llama.cpp, the same
MovieLens 100K requests (8 test users x 4 samples, seed 0, up to 200 new tokens) generated with 32 parallel
sequences (the default), 16, and one at a time, and with sampling on one thread. Each sequence samples with
its own seeded generator, so only the rounding of bf16 matrix products (which depends on how many rows a
product has) can make texts differ; this counts the profiles that differ and where.

Run: python3 -m bench.gen_batch_invariance [--users 8]. Writes bench/results/gen_batch_invariance.json.
"""

from __future__ import annotations

import argparse
import sys

from bench._common import movielens_test_histories, print_table, profile_requests, write_result
from lettingo_cli.backends import load_backend
from lettingo_cli.backends.base import SamplingOptions
from lettingo_cli.prompts import COMPLETION_STOPS

REFERENCE = "gemma-3-270m"
OTHERS = ("gemma-3-270m?sample_threads=1", "gemma-3-270m?parallel=16", "gemma-3-270m?parallel=1")


def generate(spec: str, users: list[str], histories: dict) -> list[str]:
    backend = load_backend(spec)
    requests = profile_requests(backend, users, histories, 4)
    texts = dict(backend.generate(requests, SamplingOptions(200, 1.0, COMPLETION_STOPS)))
    backend.close()
    return [texts[i].text for i in range(len(requests))]


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=8)
    args = parser.parse_args()
    users, histories = movielens_test_histories(args.users)
    reference = generate(REFERENCE, users, histories)
    results = {}
    for spec in OTHERS:
        print(f"generating with {spec} ...", file=sys.stderr)
        texts = generate(spec, users, histories)
        differing = [i for i, (a, b) in enumerate(zip(reference, texts)) if a != b]
        results[spec] = {
            "profiles": len(texts),
            "differing_profiles": len(differing),
            "first_difference_at_char": [first_difference(reference[i], texts[i]) for i in differing],
            "reference_length_chars": [len(reference[i]) for i in differing],
        }
    print_table(
        [f"against {REFERENCE}", "profiles", "differing", "first difference at character"],
        [[k, r["profiles"], r["differing_profiles"], r["first_difference_at_char"]] for k, r in results.items()],
    )
    print(f"wrote {write_result('gen_batch_invariance', {'reference': REFERENCE, 'results': results})}")


if __name__ == "__main__":
    main()
