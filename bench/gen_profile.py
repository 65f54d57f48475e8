"""Profile: where llama.cpp batched generation spends its time (prompt reads, decode steps, sampling).

Default model and settings, MovieLens 100K test users x 4 samples (default 16 users), real prompts, up to 200
new tokens. Run: python bench/gen_profile.py [USERS]. Writes bench/results/gen_profile.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import movielens_test_histories, print_table, profile_requests, write_result  # noqa: E402

from lettingo_cli.backends import load_backend  # noqa: E402
from lettingo_cli.backends.base import SamplingOptions  # noqa: E402
from lettingo_cli.prompts import COMPLETION_STOPS  # noqa: E402


def main() -> None:
    users, histories = movielens_test_histories(int(sys.argv[1]) if len(sys.argv) > 1 else 16)
    backend = load_backend("gemma-3-270m")
    timings = {"prompt_decode_s": 0.0, "step_decode_s": 0.0, "sampling_s": 0.0, "steps": 0, "prompt_tokens": 0}
    decode_tokens, decode, sample, common = backend._decode_tokens, backend._decode, backend._sample, []
    read_common_prefix = backend._read_common_prefix

    def timed_decode_tokens(tokens, *args, **kwargs):
        start = time.perf_counter()
        result = decode_tokens(tokens, *args, **kwargs)
        timings["prompt_decode_s"] += time.perf_counter() - start
        timings["prompt_tokens"] += len(tokens)
        return result

    def timed_decode():
        start = time.perf_counter()
        decode()
        timings["step_decode_s"] += time.perf_counter() - start
        timings["steps"] += 1

    def timed_sample(*args):
        start = time.perf_counter()
        tokens = sample(*args)
        timings["sampling_s"] += time.perf_counter() - start
        return tokens

    def recorded_prefix(prompts):
        common.append(read_common_prefix(prompts))
        return common[-1]

    backend._decode_tokens, backend._sample = timed_decode_tokens, timed_sample
    backend._read_common_prefix = recorded_prefix
    requests = profile_requests(backend, users, histories, 4)
    start = time.perf_counter()
    backend._decode = timed_decode  # after the prompt reads, which call the original through _decode_tokens
    tokens = sum(g.n_tokens for _, g in backend.generate(requests, SamplingOptions(200, 1.0, COMPLETION_STOPS)))
    total = time.perf_counter() - start
    backend.close()
    # prompt reads go through _decode too; take them out of the step time
    timings["step_decode_s"] -= timings["prompt_decode_s"]
    results = {
        "profiles": len(requests),
        "new_tokens": tokens,
        "seconds": round(total, 2),
        "tokens_per_s": round(tokens / total, 1),
        "parallel": backend.parallel,
        "prompt_tokens_read": timings["prompt_tokens"],
        "prefix_tokens_read_once": common[0] if common else 0,
        "prompt_read_s": round(timings["prompt_decode_s"], 2),
        "prompt_read_per_user_s": round(timings["prompt_decode_s"] / len(users), 2),
        "decode_steps": timings["steps"],
        "mean_tokens_per_step": round(tokens / max(timings["steps"], 1), 1),
        "mean_step_ms": round(timings["step_decode_s"] / max(timings["steps"], 1) * 1000, 1),
        "sampling_ms_per_token": round(timings["sampling_s"] / max(tokens, 1) * 1000, 2),
    }
    print_table(["measure", "value"], [[k, v] for k, v in results.items()])
    print(f"wrote {write_result('gen_profile', results)}")


if __name__ == "__main__":
    main()
