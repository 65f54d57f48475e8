"""Benchmark: DPO pairs/s on the default model, lettingo's defaults (bf16, reference log-probs precomputed, LM head on
the profile tokens only, no gradient checkpointing) against naive TRL (fp32, reference recomputed every step, TRL's
default gradient checkpointing) and each lever in between, same pairs, same run. Goal: >= 1 pair/s.

Pairs: real generation prompts of MovieLens 100K users (the profile-completion-v1 template, 30 ratings) with
two ~100-token profiles each, written here (this measures speed, not learning).
Run: python bench/dpo_speed.py [--pairs 4] [--steps 2]. Writes bench/results/dpo_speed.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import movielens_pairs, print_table, write_result  # noqa: E402

from lettingo_cli.dpo import DPOOptions, resolve_base, train_dpo  # noqa: E402


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
                max_steps=args.steps,
            ),
            "+ bf16, reference precomputed": DPOOptions(
                profile_only_head=False, gradient_checkpointing=True, max_steps=args.steps
            ),
            "+ LM head on profile tokens (the previous defaults)": DPOOptions(
                gradient_checkpointing=True, max_steps=args.steps
            ),
            "+ no gradient checkpointing (lettingo defaults)": DPOOptions(max_steps=args.steps),
        }
        for number, (label, options) in enumerate(configs.items()):
            print(f"measuring {label} ...", file=sys.stderr)
            start = time.perf_counter()
            adapter = train_dpo(store, pairs, base, options, f"bench{number}")
            seconds = time.perf_counter() - start
            first = store.db.execute(
                "SELECT loss FROM dpo_steps WHERE run_id = ? ORDER BY step LIMIT 1", [adapter.run_id]
            ).fetchone()[0]
            trained = args.steps * options.batch_size
            results[label] = {
                "pairs_trained": trained,
                "seconds": round(seconds, 1),
                "seconds_per_pair": round(seconds / trained, 2),
                "pairs_per_s": round(trained / seconds, 4),
                "first_step_loss": first,
            }
    naive, _, previous, fast = results.values()
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
    payload = {
        "results": results,
        "speedup": ratio,
        "speedup_over_previous_defaults": over_previous,
        "goal_pairs_per_s": 1,
        "goal_met": fast["pairs_per_s"] >= 1,
        "note": "wall time includes model loading and, for the precomputed reference, the reference pass",
    }
    print(f"wrote {write_result('dpo_speed', payload)}")


if __name__ == "__main__":
    main()
