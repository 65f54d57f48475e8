"""Benchmark: profile generation throughput of each backend on the default model (Gemma 3 270M), one run.

Real prompts: MovieLens 100K users from ../shared/data (30-item profile history), 200 new tokens at
temperature 1.0, N samples per user. The baseline is llama.cpp single stream on the Q4_K_M file (one
sequence at a time); every other row reports its speed-up against that baseline measured in the same run.

Run: python3 -m bench.gen_throughput [--quick]. Writes bench/results/gen_throughput.json.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench._common import movielens_test_histories, print_table, profile_requests, write_result
from lettingo_cli.backends import load_backend
from lettingo_cli.backends.base import SamplingOptions
from lettingo_cli.models import default_gguf, default_hf_dir
from lettingo_cli.prompts import COMPLETION_STOPS

BASELINE = "llama.cpp single stream, Q4_K_M (baseline)"
ONE_THREAD = "llama.cpp batched x32, bf16, sampling on one thread"
DEFAULT = "llama.cpp batched x32, bf16 (default)"
X16 = "llama.cpp batched x16, bf16"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            "gemma",
            "--n_ctx",
            "4096",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).read()
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama_cpp.server did not start")


def measure(spec: str, users: list[str], histories: dict, n: int, max_tokens: int) -> dict:
    backend = load_backend(spec)
    requests = profile_requests(backend, users, histories, n)
    options = SamplingOptions(max_tokens, 1.0, () if backend.chat else COMPLETION_STOPS)
    start = time.perf_counter()
    generated = dict(backend.generate(requests, options))
    seconds = time.perf_counter() - start
    backend.close()
    tokens = sum(generation.n_tokens for generation in generated.values())
    texts = [generated[index].text for index in range(len(requests))]
    return {
        "spec": spec,
        "text_sha256": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
        "profiles": len(requests),
        "new_tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "profiles_per_min": round(len(requests) / seconds * 60, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer users per row (a smoke run)")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--only", action="append", default=[], help="rows whose label contains this (repeatable)")
    parser.add_argument("--name", default="", help="write gen_throughput_NAME.json (a partial run keeps the full one)")
    args = parser.parse_args()
    scale = 1 if args.quick else 2
    users, histories = movielens_test_histories(16 * scale)
    hf_dir = default_hf_dir()
    server, url = start_server(default_gguf())
    try:
        rows = [
            (
                BASELINE,
                "gemma-3-270m?dtype=q4_k_m&parallel=1",
                users[: 2 * scale],
                2,
            ),
            ("llama.cpp batched x32, Q4_K_M", "gemma-3-270m?dtype=q4_k_m", users[: 8 * scale], 4),
            (ONE_THREAD, "gemma-3-270m?sample_threads=1", users[: 8 * scale], 4),
            (DEFAULT, "gemma-3-270m", users[: 8 * scale], 4),
            (X16, "gemma-3-270m?parallel=16", users[: 8 * scale], 4),
            ("llama.cpp batched x32, bf16, one shared KV cache", "gemma-3-270m?kv=unified", users[: 8 * scale], 4),
            ("llama.cpp batched x32, bf16, 16 samples/user", "gemma-3-270m", users[: 2 * scale], 16),
            ("transformers bf16, batch 16", f"hf:{hf_dir}?batch=16&style=completion", users[: 4 * scale], 4),
            (
                "OpenAI-compatible (llama-cpp-python server, Q4_K_M)",
                f"openai:gemma@{url}?style=completion&concurrency=2",
                users[: 2 * scale],
                2,
            ),
        ]
        if args.only:
            rows = [row for row in rows if row[0] == BASELINE or any(k in row[0] for k in args.only)]
        results = {}
        for label, spec, chosen, n in rows:
            print(f"measuring {label} ...", file=sys.stderr)
            results[label] = measure(spec, chosen, histories, n, args.max_tokens)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    baseline = results[BASELINE]["tokens_per_s"]
    for figures in results.values():
        figures["speedup_vs_baseline"] = round(figures["tokens_per_s"] / baseline, 2)
    table = [
        [
            label,
            r["profiles"],
            r["new_tokens"],
            r["seconds"],
            r["tokens_per_s"],
            r["profiles_per_min"],
            f"{r['speedup_vs_baseline']}x",
        ]
        for label, r in results.items()
    ]
    print_table(["backend", "profiles", "tokens", "s", "tok/s", "profiles/min", "vs baseline"], table)
    one_thread, default, x16 = (results.get(k) for k in (ONE_THREAD, DEFAULT, X16))
    same_text = None
    if one_thread and default and x16:  # the same requests and seeds: neither the thread pool nor the batch
        same_text = one_thread["text_sha256"] == default["text_sha256"] == x16["text_sha256"]  # may change a token
        ratio = round(default["tokens_per_s"] / one_thread["tokens_per_s"], 2)
        print(f"\nsampling on a thread pool: {ratio}x one thread; same text on 1 or 2 threads, x16 or x32: {same_text}")
    best = max(r["tokens_per_s"] for r in results.values())
    print(f"\nbest aggregate {best} tok/s; goal >= 300 tok/s: {'met' if best >= 300 else 'NOT met'}")
    path = write_result(
        "gen_throughput" + ("_" + args.name if args.name else ""),
        {
            "max_tokens": args.max_tokens,
            "temperature": 1.0,
            "history": 30,
            "results": results,
            "goal_tokens_per_s": 300,
            "goal_met": best >= 300,
            "same_text_any_threads_or_batch": same_text,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
