"""GPU check of `lettingo dpo` under `accelerate launch` (bf16), for a lent GPU machine.

Builds a small Llama-architecture model (tokenizer trained here, no download), writes 64 preference pairs with an
obvious preference, trains through the real CLI under `accelerate launch --mixed_precision bf16`, and prints the
device line, steps, time and the first/last logged rewards. Writes bench/results/gpu_dpo_check.json.
Run: python3 -m bench.gpu_dpo_check [--processes 1] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import print_table, write_result
from bench.tiny_model import build_tiny_model
from lettingo_cli.store import Store

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = build_tiny_model(tmp / "model", layers=args.layers, hidden=args.hidden)
        store_path = tmp / "lettingo.db"
        store = Store(store_path)
        pairs = store.begin("pairs", "gpu", {}, None)
        store.insert_rows(
            pairs,
            "pairs",
            [
                {
                    "user_id": f"u{i}",
                    "pair_index": 0,
                    "prompt": "Ratings:\n"
                    + "".join(f'- "Movie {i}-{j}": liked ({1 + (i + j) % 5}/5)\n' for j in range(30))
                    + "Profile:",
                    "chosen": " Enjoys drama and war films; rates slow romances low.",
                    "rejected": " zz qq xx zz qq xx",
                    "chosen_score": 0.9,
                    "rejected_score": 0.1,
                }
                for i in range(64)
            ],
        )
        store.finalize(pairs)
        store.close()
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(args.processes),
            "--mixed_precision",
            "bf16",
            "-m",
            "lettingo_cli",
            "dpo",
            "pairs:gpu",
            "--store",
            str(store_path),
            "--base",
            str(base),
            "--max-steps",
            str(args.steps),
            "--batch-size",
            "8",
            "--lr",
            "1e-4",
            "--save-steps",
            "10",
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seconds = time.perf_counter() - started
        if os.environ.get("OUT"):  # the device machine's output folder: keep the whole log
            Path(os.environ["OUT"], "dpo_stderr.txt").write_text(done.stderr)
        device_lines = [line for line in done.stderr.splitlines() if line.startswith("training on")]
        print(
            "\n".join(
                [line for line in done.stderr.splitlines() if line.startswith("lettingo")]
                + done.stderr.splitlines()[-5:]
            ),
            file=sys.stderr,
        )
        if done.returncode != 0:
            sys.exit(f"dpo failed (exit {done.returncode})")
        store = Store(store_path)
        adapter = store.resolve(done.stdout.strip())
        steps = store.training_steps(adapter.run_id)
    result = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "processes": args.processes,
        "device_line": device_lines,
        "model": {"layers": args.layers, "hidden": args.hidden},
        "steps": len(steps),
        "seconds_with_load": round(seconds, 1),
        "pairs_per_s_with_load": round(len(steps) * 8 / seconds, 2),
        "first": {k: steps[0][k] for k in ("loss", "rewards_margins", "rewards_accuracies")},
        "last": {k: steps[-1][k] for k in ("loss", "rewards_margins", "rewards_accuracies")},
        "checkpoint_and_adapter_files": sorted({f["path"].split("/")[0] for f in store.files(adapter)}),
    }
    print_table(
        ["gpu", "processes", "steps", "s (with load)", "first loss", "last loss", "last margin"],
        [
            [
                result["gpu"],
                args.processes,
                len(steps),
                result["seconds_with_load"],
                round(steps[0]["loss"], 4),
                round(steps[-1]["loss"], 4),
                round(steps[-1]["rewards_margins"], 3),
            ]
        ],
    )
    print(f"wrote {write_result('gpu_dpo_check', result)}")


if __name__ == "__main__":
    main()
