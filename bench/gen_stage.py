"""Benchmark: the `gen` stage end to end, as a user runs it (`lettingo gen`), on the default model: this checkout
against an earlier commit of lettingo, in the same run, on copies of one store.

MovieLens 100K test users (30-rating profile history), N profiles each, up to 200 new tokens, seed 0. Each row
runs `lettingo gen` in a fresh copy of a store where ingest and split were done once, and reads the stage's own
stats (new tokens, seconds of generation, model load excluded) and report (diversity, flags) from the artifact.
The baseline row is the gen of an earlier commit (--base), checked out with `git worktree` into a temporary
folder and run with that tree first on PYTHONPATH. Sampled lengths differ between rows (other code, other
numerics, other samples), so both tokens/s and profiles/min are reported, with the mean profile length.

Run: python3 -m bench.gen_stage [--users 32] [--n 4] [--base d7365c1]. Writes bench/results/gen_stage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import movielens_split, print_table, write_result
from lettingo_cli.store import Store

ROOT = Path(__file__).resolve().parents[1]

BASE_COMMIT = "d7365c1"  # the last commit before the generation work of issue 15's second round


def run_gen(tree: Path, store_file: Path, users: int, n: int, max_tokens: int, generator: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "LETTINGO_STORE": str(store_file)}
    probe = [sys.executable, "-c", "import lettingo_cli; print(lettingo_cli.__file__)"]
    loaded = subprocess.run(probe, env=env, capture_output=True, text=True, cwd=tree).stdout.strip()
    if not Path(loaded).resolve().is_relative_to(tree.resolve()):  # the tree's code, not the installed one
        sys.exit(f"expected lettingo from {tree}, got {loaded}")
    command = [sys.executable, "-m", "lettingo_cli", "gen", "--users", str(users), "--n", str(n)]
    command += ["--max-tokens", str(max_tokens), "--generator", generator, "--name", "bench", "--json"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=tree, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own resource usage: its peak memory
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        sys.exit(f"gen failed in {tree}:\n{stderr[-2000:]}")
    reference = json.loads(stdout)["id"]
    store = Store(store_file, create=False)
    artifact = store.resolve(str(reference))
    stats = store.run(artifact.run_id)["stats"]
    label = next(iter(artifact.report["diversity"]))
    diversity, flags = artifact.report["diversity"][label], artifact.report["flags"][label]
    profiles = artifact.count
    return {
        "generator": generator,
        "profiles": profiles,
        "new_tokens": stats["new_tokens"],
        "seconds": stats["seconds"],
        "tokens_per_s": round(stats["new_tokens"] / stats["seconds"], 1),
        "profiles_per_min": round(profiles / stats["seconds"] * 60, 1),
        "mean_tokens": round(stats["new_tokens"] / profiles, 1),
        "distinct_2": diversity["distinct_2"],
        "truncated_share": round(flags.get("truncated", 0) / profiles, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux reports kilobytes
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--base", default=BASE_COMMIT, help="the commit whose gen is the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "prepared").mkdir()
        store, _ = movielens_split(tmp / "prepared")
        store.close()
        base_tree = tmp / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=ROOT, check=True, capture_output=True
        )
        try:
            rows = [
                (f"lettingo {args.base} (baseline)", base_tree, "gemma-3-270m"),
                ("this checkout: default", ROOT, "gemma-3-270m"),
                ("this checkout: parallel=16", ROOT, "gemma-3-270m?parallel=16"),
                ("this checkout: kv=unified", ROOT, "gemma-3-270m?kv=unified"),
            ]
            results = {}
            for number, (label, tree, generator) in enumerate(rows):
                print(f"measuring {label} ...", file=sys.stderr)
                copy = tmp / f"run{number}"
                shutil.copytree(tmp / "prepared", copy)
                results[label] = run_gen(tree, copy / "lettingo.db", args.users, args.n, args.max_tokens, generator)
                shutil.rmtree(copy)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
    baseline = next(iter(results.values()))
    for figures in results.values():
        figures["tokens_per_s_vs_baseline"] = round(figures["tokens_per_s"] / baseline["tokens_per_s"], 2)
        figures["profiles_per_min_vs_baseline"] = round(figures["profiles_per_min"] / baseline["profiles_per_min"], 2)
    print_table(
        ["run", "profiles", "tokens", "s", "tok/s", "profiles/min", "mean tok", "peak MB", "vs baseline (tok/s)"],
        [
            [
                k,
                r["profiles"],
                r["new_tokens"],
                r["seconds"],
                r["tokens_per_s"],
                r["profiles_per_min"],
                r["mean_tokens"],
                r["peak_rss_mb"],
                f"{r['tokens_per_s_vs_baseline']}x",
            ]
            for k, r in results.items()
        ],
    )
    payload = {"users": args.users, "n": args.n, "max_tokens": args.max_tokens, "base": args.base, "results": results}
    print(f"wrote {write_result('gen_stage', payload)}")


if __name__ == "__main__":
    main()
