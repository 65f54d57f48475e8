"""Profile: where llama.cpp batched generation spends its time (prompt reads, decode steps, sampling).

Default model and settings, MovieLens 100K test users x 4 samples (default 16 users), real prompts, up to 200
new tokens. Run: python3 -m bench.gen_profile [USERS]. Writes bench/results/gen_profile.json.
"""

from __future__ import annotations

import sys
import time

from bench._common import movielens_test_histories, print_table, profile_requests, write_result
from lettingo_cli.backends import load_backend
from lettingo_cli.backends.base import SamplingOptions
from lettingo_cli.prompts import COMPLETION_STOPS


def main() -> None:
    users, histories = movielens_test_histories(int(sys.argv[1]) if len(sys.argv) > 1 else 16)
    backend = load_backend("gemma-3-270m")
    requests = profile_requests(backend, users, histories, 4)
    start = time.perf_counter()
    tokens = sum(g.n_tokens for _, g in backend.generate(requests, SamplingOptions(200, 1.0, COMPLETION_STOPS)))
    total = time.perf_counter() - start
    backend.close()
    timings = backend.timings  # the backend's own counters (prompt reads are decodes too: taken out of the steps)
    steps = timings["decode_calls"] - timings["prompt_decode_calls"]
    step_s = timings["decode_s"] - timings["prompt_decode_s"]
    results = {
        "profiles": len(requests),
        "new_tokens": tokens,
        "seconds": round(total, 2),
        "tokens_per_s": round(tokens / total, 1),
        "parallel": backend.parallel,
        "prompt_tokens_read": int(timings["prompt_tokens"]),
        "prefix_tokens_read": int(timings["prefix_tokens"]),  # the shared prefixes, once per group of prompts
        "prompt_read_s": round(timings["prompt_decode_s"], 2),
        "prompt_read_per_user_s": round(timings["prompt_decode_s"] / len(users), 2),
        "decode_steps": int(steps),
        "mean_tokens_per_step": round(tokens / max(steps, 1), 1),
        "mean_step_ms": round(step_s / max(steps, 1) * 1000, 1),
        "sampling_ms_per_token": round(timings["sampling_s"] / max(tokens, 1) * 1000, 2),
    }
    print_table(["measure", "value"], [[k, v] for k, v in results.items()])
    print(f"wrote {write_result('gen_profile', results)}")


if __name__ == "__main__":
    main()
