"""Benchmark: wall time of `lettingo --help` and `lettingo store ls` (goal: --help < 0.5 s).

Run: python3 -m bench.cli_startup [--runs 15]. Prints a table and writes bench/results/cli_startup.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import print_table, write_result


def time_command(args: list[str], runs: int) -> list[float]:
    subprocess.run(args, capture_output=True)  # warm the file cache once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "lettingo.db")
        small = Path(tmp) / "r.csv"
        small.write_text("u,i,r,t\na,x,5,1\n")
        subprocess.run(
            [
                "lettingo",
                "ingest",
                "csv",
                str(small),
                "--user",
                "u",
                "--item",
                "i",
                "--rating",
                "r",
                "--time",
                "t",
                "--store",
                store,
            ],
            check=True,
            capture_output=True,
        )
        commands = {
            "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
            "lettingo --help": ["lettingo", "--help"],
            "lettingo store ls": ["lettingo", "store", "ls", "--store", store],
        }
        results = {}
        for label, args in commands.items():
            times = time_command(args, runs)
            results[label] = {
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "runs": runs,
            }
    rows = [[label, f"{r['median_s']:.3f}", f"{r['min_s']:.3f}", f"{r['max_s']:.3f}"] for label, r in results.items()]
    print_table(["command", "median s", "min s", "max s"], rows)
    goal_met = results["lettingo --help"]["median_s"] < 0.5
    print(f"\ngoal --help < 0.5 s: {'met' if goal_met else 'NOT met'}")
    path = write_result("cli_startup", {"results": results, "goal_help_s": 0.5, "goal_met": goal_met})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
