"""Record the generation speed a store's `gen` runs measured (new tokens, seconds, tokens/s from each run's stats),
e.g. the Qwen-as-generator profiles made for bench/predictor_accuracy.py, which that benchmark reuses from its
store's cache. Run: python3 -m bench.gen_run_stats STORE [NAME_SUBSTRING]. Writes bench/results/gen_run_stats.json.
"""

from __future__ import annotations

import sys

from bench._common import print_table, write_result
from lettingo_cli.store import Store


def main() -> None:
    store = Store(sys.argv[1], create=False)
    wanted = sys.argv[2] if len(sys.argv) > 2 else ""
    runs = {}
    for artifact in store.list(kind="profiles"):
        if wanted in artifact.name:
            stats = store.run(artifact.run_id)["stats"]
            generators = [g["label"] for g in artifact.params["generators"]]
            runs[artifact.ref] = {"generators": generators, "profiles": artifact.count, **stats}
    print_table(
        ["profiles", "generators", "count", "new tokens", "s", "tok/s"],
        [
            [
                ref,
                ", ".join(r["generators"]),
                r["profiles"],
                r.get("new_tokens"),
                r.get("seconds"),
                r.get("tokens_per_s"),
            ]
            for ref, r in runs.items()
        ],  # fmt: skip
    )
    print(f"wrote {write_result('gen_run_stats', {'store': str(sys.argv[1]), 'runs': runs})}")


if __name__ == "__main__":
    main()
