"""Benchmark: DPO pairs/s on the default model, lettingo's defaults (bf16, reference log-probs precomputed, LM head on
the profile tokens only, no gradient checkpointing, each pair's prompt read once) against naive TRL (fp32, reference
recomputed every step, TRL's default gradient checkpointing) and each lever in between, same pairs, same run.
Goal: >= 1 pair/s.

Correctness of the shared-prompt pass on the same real pairs: each completion's summed log-prob through it against
TRL's own two-row pass, in fp32 and in bf16 (autocast, as training runs), and the first-step losses.

Pairs: real generation prompts of MovieLens 100K users (the profile-completion-v1 template, 30 ratings) with
two ~100-token profiles each, written here (this measures speed, not learning).
Run: python3 -m bench.dpo_speed [--pairs 4] [--steps 2]. Writes bench/results/dpo_speed.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench._common import movielens_pairs, print_table, write_result
from lettingo_cli.dpo import train_dpo
from lettingo_cli.training.common import resolve_base
from lettingo_cli.training.options import DPOOptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    base = resolve_base(None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        store, pairs = movielens_pairs(Path(tmp), args.pairs)
        configs = {  # each adds one lever to the one before; TRL's own default turns gradient checkpointing on
            "naive TRL (fp32, reference every step, gradient checkpointing)": DPOOptions(
                precision="fp32",
                precompute_ref=False,
                profile_only_head=False,
                gradient_checkpointing=True,
                shared_prompt=False,
                max_steps=args.steps,
            ),
            "+ bf16, reference precomputed": DPOOptions(
                profile_only_head=False, gradient_checkpointing=True, shared_prompt=False, max_steps=args.steps
            ),
            "+ LM head on profile tokens": DPOOptions(
                gradient_checkpointing=True, shared_prompt=False, max_steps=args.steps
            ),
            "+ no gradient checkpointing (the previous defaults)": DPOOptions(
                shared_prompt=False, max_steps=args.steps
            ),
            "+ prompt read once per pair (lettingo defaults)": DPOOptions(max_steps=args.steps),
        }
        for number, (label, options) in enumerate(configs.items()):
            print(f"measuring {label} ...", file=sys.stderr)
            start = time.perf_counter()
            adapter = train_dpo(store, pairs, base, options, f"bench{number}")
            seconds = time.perf_counter() - start
            first = store.training_steps(adapter.run_id)[0]["loss"]
            trained = args.steps * options.batch_size
            results[label] = {
                "pairs_trained": trained,
                "seconds": round(seconds, 1),
                "seconds_per_pair": round(seconds / trained, 2),
                "pairs_per_s": round(trained / seconds, 4),
                "first_step_loss": first,
            }
        log_probs = shared_prompt_log_probs(store, pairs, base)
    naive, _, _, previous, fast = results.values()
    ratio = round(fast["pairs_per_s"] / naive["pairs_per_s"], 2)
    over_previous = round(fast["pairs_per_s"] / previous["pairs_per_s"], 2)
    print_table(
        ["configuration", "pairs", "s", "s/pair", "pairs/s", "first-step loss"],
        [
            [
                k,
                r["pairs_trained"],
                r["seconds"],
                r["seconds_per_pair"],
                r["pairs_per_s"],
                round(r["first_step_loss"], 4),
            ]
            for k, r in results.items()
        ],
    )
    print(
        f"\nspeed-up {ratio}x over naive TRL, {over_previous}x over the previous defaults; "
        f"goal >= 1 pair/s: {'met' if fast['pairs_per_s'] >= 1 else 'NOT met'}; first-step losses "
        f"differ by {abs(fast['first_step_loss'] - naive['first_step_loss']):.4f}"
    )
    for precision, found in log_probs.items():
        print(
            f"shared-prompt pass vs TRL's, {precision}: summed log-probs of {found['completions']} completions "
            f"(mean {found['mean_logprob']}) differ by at most {found['max_abs_diff']} (mean {found['mean_abs_diff']})"
            + (
                f"; TRL's own bf16 vs fp32: at most {found['trl_bf16_vs_fp32_max_abs_diff']}"
                if precision == "bf16"
                else ""
            )
        )
    payload = {
        "results": results,
        "speedup": ratio,
        "speedup_over_previous_defaults": over_previous,
        "shared_prompt_log_probs_vs_trl": log_probs,
        "goal_pairs_per_s": 1,
        "goal_met": fast["pairs_per_s"] >= 1,
        "note": "wall time includes model loading and, for the precomputed reference, the reference pass",
    }
    print(f"wrote {write_result('dpo_speed', payload)}")


def shared_prompt_log_probs(store, pairs, base: Path) -> dict:
    """Each completion's summed log-prob through the shared-prompt pass and through TRL's two rows per pair, on
    the benchmark's real pairs, in fp32 and in bf16 autocast: the largest and mean absolute differences."""
    import torch
    import transformers
    from trl.trainer.utils import add_fused_lm_head

    from lettingo_cli.training.shared_prompt import wrap

    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    add_fused_lm_head(model)
    rows, masks = [[], []], [[], []]
    for pair in store.rows(pairs, "pairs"):  # as TRL's collator builds them: prompt ids + completion ids + EOS
        prompt = tokenizer(pair["prompt"])["input_ids"]
        for side, text in ((0, pair["chosen"]), (1, pair["rejected"])):
            completion = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            rows[side].append(prompt + completion)
            masks[side].append([0] * len(prompt) + [1] * len(completion))
    width = max(len(r) for side in rows for r in side)
    every, every_mask = rows[0] + rows[1], masks[0] + masks[1]
    input_ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in every])
    attention_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in every])
    completion = torch.tensor([m + [0] * (width - len(m)) for m in every_mask])
    labels = input_ids.masked_fill(completion == 0, -100)
    found, trl_sums = {}, {}
    for precision, autocast in (("fp32", False), ("bf16", True)):
        sums = []
        for call in (model, wrap(model)):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = call(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
            sums.append(out.log_probs.float().sum(dim=1))
        difference = (sums[0] - sums[1]).abs()
        trl_sums[precision] = sums[0]
        found[precision] = {
            "completions": len(every),
            "mean_logprob": round(sums[0].mean().item(), 3),
            "max_abs_diff": round(difference.max().item(), 5),
            "mean_abs_diff": round(difference.mean().item(), 5),
        }
    noise = (trl_sums["bf16"] - trl_sums["fp32"]).abs()  # bf16 noise: TRL's own pass, bf16 against fp32
    found["bf16"]["trl_bf16_vs_fp32_max_abs_diff"] = round(noise.max().item(), 5)
    found["bf16"]["trl_bf16_vs_fp32_mean_abs_diff"] = round(noise.mean().item(), 5)
    return found


if __name__ == "__main__":
    main()
