"""Benchmark: lettingo processes that share the cores (issue 29). One stage alone, then two copies at once on other
users and stores, and a `score`-like job (eval --no-profile: head:minilm fitted with torch, then scoring) beside a
`gen` (llama.cpp), for this checkout and an earlier commit in the same run.

Jobs (MovieLens 100K, default split): `gen` = `lettingo gen` of 16 test users x 2 profiles (each copy other
users, its own store); `eval` = `lettingo eval --no-profile` on the test users (the default predictor). Each row
records wall seconds, the children's CPU seconds, and the slowdown: wall time of the jobs run together over the
wall time of the slowest job run alone (the ideal for two jobs on two cores, each using both, is 2x the alone
time of one; for unequal jobs, the sum of their alone times).

Both OpenMP runtimes in a lettingo process (llama.cpp's and torch's) let idle worker threads spin while they wait
for work; two processes on two cores then spend their time preempting each other's spinning threads. lettingo
now starts its processes with passive waiting (OMP_WAIT_POLICY=PASSIVE, unless the user set OMP_WAIT_POLICY or
GOMP_SPINCOUNT); --env adds rows of this checkout with other settings.

Run: python3 -m bench.contention [--base 3f4ff75] [--env GOMP_SPINCOUNT=10000 ...].
Writes bench/results/contention.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import MOVIELENS_100K, movielens_split, print_table, write_result
from lettingo_cli.split_data import select_users

ROOT = Path(__file__).resolve().parents[1]

BASE_COMMIT = "3f4ff75"  # the last commit before lettingo chose how its OpenMP threads wait
USERS_PER_GEN = 16
PROFILES = 2


def lettingo(tree: Path, store: Path, env: dict, *args: str, stdin: str | None = None) -> str:
    full = {**os.environ, **env, "PYTHONPATH": str(tree), "LETTINGO_STORE": str(store)}
    done = subprocess.run([sys.executable, "-m", "lettingo_cli", *args], env=full, cwd=tree, input=stdin,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        sys.exit(f"lettingo {' '.join(args)} failed in {tree}:\n{done.stderr[-2000:]}")
    return done.stdout


def prepare(tree: Path, folder: Path) -> tuple[Path, list[str]]:
    """A store with MovieLens 100K split by `tree`'s lettingo (a store of a newer schema is refused by older code)."""
    store = folder / "lettingo.db"
    lettingo(tree, store, {}, "ingest", "movielens", str(MOVIELENS_100K))
    lettingo(tree, store, {}, "split")
    # the test users from a store of this checkout's own (it would upgrade an older tree's store to its schema); the
    # seeded split chooses the same users in every tree
    with tempfile.TemporaryDirectory() as tmp:
        own_store, split = movielens_split(Path(tmp))
        users = select_users(own_store, split, "test")
        own_store.close()
    return store, users


def job_command(kind: str, users: list[str]) -> tuple[list[str], str | None]:
    if kind == "gen":
        return ["gen", "--users", "-", "--n", str(PROFILES), "--name", "bench"], "\n".join(users)
    return ["eval", "--no-profile", "--name", "bench"], None


def run_together(tree: Path, env: dict, jobs: list[tuple[str, Path, list[str]]]) -> dict:
    """Start the jobs at once; wall seconds until the last ends, each job's wall and CPU seconds."""
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        pending = {}
        for kind, store, users in jobs:
            args, stdin = job_command(kind, users)
            full = {**os.environ, **env, "PYTHONPATH": str(tree), "LETTINGO_STORE": str(store)}
            log = stack.enter_context(tempfile.TemporaryFile("w+"))  # a pipe could fill up and stall the job
            command = [sys.executable, "-m", "lettingo_cli", *args]
            process = subprocess.Popen(command, env=full, cwd=tree, text=True, stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
            if stdin is not None:
                process.stdin.write(stdin)
            process.stdin.close()
            pending[process.pid] = (kind, log)
        results = []
        while pending:
            pid, status, usage = os.wait4(-1, 0)
            if pid not in pending:
                continue
            kind, log = pending.pop(pid)
            if os.waitstatus_to_exitcode(status):
                log.seek(0)
                sys.exit(f"{kind} failed: {log.read()[-2000:]}")
            results.append({"job": kind, "wall_s": round(time.perf_counter() - started, 1),
                            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)})  # fmt: skip
    return {"wall_s": round(time.perf_counter() - started, 1), "jobs": results}


def measure(label: str, tree: Path, env: dict, tmp: Path) -> dict:
    prepared = tmp / f"{label}-prepared"
    prepared.mkdir()
    _, users = prepare(tree, prepared)
    plans = {
        "gen alone": [("gen", users[:USERS_PER_GEN])],
        "gen x2": [("gen", users[:USERS_PER_GEN]), ("gen", users[USERS_PER_GEN : 2 * USERS_PER_GEN])],
        "eval alone": [("eval", [])],
        "gen + eval": [("gen", users[:USERS_PER_GEN]), ("eval", [])],
    }
    rows = {}
    for name, plan in plans.items():
        print(f"{label}: {name} ...", file=sys.stderr, flush=True)
        jobs = []
        for number, (kind, chosen) in enumerate(plan):
            copy = tmp / f"{label}-{name.replace(' ', '_')}-{number}"
            shutil.copytree(prepared, copy)
            jobs.append((kind, copy / "lettingo.db", chosen))
        rows[name] = run_together(tree, env, jobs)
        for _, store, _ in jobs:
            shutil.rmtree(store.parent)
    alone = {"gen": rows["gen alone"]["wall_s"], "eval": rows["eval alone"]["wall_s"]}
    rows["gen x2"]["slowdown_vs_one_alone"] = round(rows["gen x2"]["wall_s"] / alone["gen"], 2)
    rows["gen + eval"]["slowdown_vs_slower_alone"] = round(rows["gen + eval"]["wall_s"] / max(alone.values()), 2)
    rows["gen + eval"]["ideal_s"] = round(alone["gen"] + alone["eval"], 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default=BASE_COMMIT, help="the earlier commit measured beside this checkout")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE: another row of this checkout")
    parser.add_argument("--skip-base", action="store_true")
    args = parser.parse_args()
    if not MOVIELENS_100K.exists():
        sys.exit(f"{MOVIELENS_100K} is not present: this benchmark needs MovieLens 100K")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            if not args.skip_base:
                results[f"lettingo {args.base} (before)"] = measure("base", base_tree, {}, tmp)
            results["this checkout (default: passive waiting)"] = measure("this", ROOT, {}, tmp)
            for number, setting in enumerate(args.env):
                name, _, value = setting.partition("=")
                results[f"this checkout, {setting}"] = measure(f"env{number}", ROOT, {name: value}, tmp)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
    table = []
    for label, rows in results.items():
        table.append([label, rows["gen alone"]["wall_s"], rows["gen x2"]["wall_s"],
                      f"{rows['gen x2']['slowdown_vs_one_alone']}x", rows["eval alone"]["wall_s"],
                      rows["gen + eval"]["wall_s"], rows["gen + eval"]["ideal_s"]])  # fmt: skip
    print_table(["version", "gen alone s", "gen x2 s", "x2 / alone", "eval alone s", "gen + eval s", "ideal s"], table)
    payload = {"users_per_gen": USERS_PER_GEN, "profiles": PROFILES, "cpus": os.cpu_count(), "results": results}
    print(f"wrote {write_result('contention', payload)}")


if __name__ == "__main__":
    main()
