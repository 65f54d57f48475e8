"""Micro-benchmark: what this CPU's matrix units deliver to torch (GFLOP/s, fp32 and bf16), against the FLOPs one
DPO pair costs on the default model, so the DPO goal of 1 pair/s can be judged against a bound; and against the
FLOPs one generated token costs, for the generation goal of 300 tokens/s.

FLOPs per pair (LoRA-DPO, Gemma 3 270M: ~100M non-embedding weights, the 262k-row head applied to profile tokens
only): the policy reads prompt + chosen and prompt + rejected (~2 x 1,000 tokens) forward (2 FLOPs per weight
per token) and backward (~4: gradients of the activations through the frozen weights, and the small LoRA
weights), so ~6 x 100M x 2,000 = 1.2 TFLOP, plus the reference pass once (2 x 100M x 2,000 = 0.4 TFLOP). With the prompt
read once per pair (dpo's default) a pair is ~1,100 tokens: ~0.9 TFLOP.

FLOPs per generated token: every weight once (2 FLOPs each), the 262k x 640 head included: 2 x (100M + 168M)
= 0.54 GFLOP (prompt reading and attention over the context come on top).
Run: python3 -m bench.cpu_matmul. Writes bench/results/cpu_matmul.json.
"""

from __future__ import annotations

import time

from bench._common import print_table, write_result

NON_EMBEDDING_WEIGHTS = 100e6  # Gemma 3 270M without its 170M-weight embedding table
TOKENS_PER_PAIR = 2 * 1000  # prompt + chosen, prompt + rejected (~900-token MovieLens prompts, ~100-token profiles)
FLOPS_PER_PAIR = 6 * NON_EMBEDDING_WEIGHTS * TOKENS_PER_PAIR + 2 * NON_EMBEDDING_WEIGHTS * TOKENS_PER_PAIR
TOKENS_PER_SHARED_PAIR = 900 + 2 * 100 + 1  # prompt once, both profiles, the prompt's last token again
FLOPS_PER_SHARED_PAIR = 8 * NON_EMBEDDING_WEIGHTS * TOKENS_PER_SHARED_PAIR
HEAD_WEIGHTS = 262_144 * 640  # the tied embedding as the output head
FLOPS_PER_TOKEN = 2 * (NON_EMBEDDING_WEIGHTS + HEAD_WEIGHTS)
SIZE = 2048  # square matrices: shaped like one layer's projections over a batch of tokens
SECONDS = 3.0  # per dtype


def gflops(torch, dtype) -> float:
    a = torch.randn(SIZE, SIZE, dtype=dtype)
    b = torch.randn(SIZE, SIZE, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    started, count = time.perf_counter(), 0
    while time.perf_counter() - started < SECONDS:
        torch.matmul(a, b)
        count += 1
    return 2 * SIZE**3 * count / (time.perf_counter() - started) / 1e9


def main() -> None:
    import torch

    rates = {
        name: round(gflops(torch, dtype), 1) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    bound = {name: round(FLOPS_PER_PAIR / (rate * 1e9), 1) for name, rate in rates.items()}
    shared = {name: round(FLOPS_PER_SHARED_PAIR / (rate * 1e9), 1) for name, rate in rates.items()}
    tokens = {name: round(rate * 1e9 / FLOPS_PER_TOKEN) for name, rate in rates.items()}
    print_table(
        ["dtype", "GFLOP/s", "s per DPO pair (bound)", "s per pair, prompt once (bound)", "generated tok/s (bound)"],
        [[name, rates[name], bound[name], shared[name], tokens[name]] for name in rates],
    )
    need = round(FLOPS_PER_PAIR / 1e9, 1)
    print(f"\n1 pair/s needs ~{need} GFLOP/s; threads: {torch.get_num_threads()}")
    path = write_result(
        "cpu_matmul",
        {
            "gflops": rates,
            "flops_per_pair": FLOPS_PER_PAIR,
            "seconds_per_pair_bound": bound,
            "flops_per_pair_prompt_once": FLOPS_PER_SHARED_PAIR,
            "seconds_per_pair_prompt_once_bound": shared,
            "flops_per_generated_token": FLOPS_PER_TOKEN,
            "generated_tokens_per_s_bound": tokens,
            "threads": torch.get_num_threads(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
