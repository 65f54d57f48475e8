"""Benchmark: `export` of the default model (Gemma 3 270M): merge + convert + quantize (Q8_0, Q4_K_M) + verify.

A one-step adapter is trained first on two real MovieLens prompts (the adapter's content does not matter for the
time; the verification uses its pairs' prompts). Goal: < 60 s. Also records the verification figures: tokenizer
parity, greedy agreement and mean |log-prob difference| per quant type, the real tensor types and file sizes.
Against the previous way in the same run: reading a file's metadata with gguf-py's GGUFReader (what the export
did four times: the converted file, the tokenizer donor, and the facts of each shipped file) vs lettingo's layout
walk, on the exported files.
Run: python3 -m bench.export_time. Writes bench/results/export_time.json.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench._common import movielens_pairs, print_table, write_result
from lettingo_cli.dpo import train_dpo
from lettingo_cli.export import ExportOptions, export_adapter
from lettingo_cli.training.common import resolve_base
from lettingo_cli.training.options import DPOOptions


def main() -> None:
    base = resolve_base(None)
    with tempfile.TemporaryDirectory() as tmp:
        store, pairs = movielens_pairs(Path(tmp), 4)
        adapter = train_dpo(store, pairs, base, DPOOptions(max_steps=1), "bench")
        started = time.perf_counter()
        export = export_adapter(store, adapter, ExportOptions(), "bench")
        wall = round(time.perf_counter() - started, 1)
        stats = store.run(export.run_id)["stats"]
        report = export.report
        metadata_reads = compare_metadata_reads(store.materialize(export, Path(tmp) / "out"))
    files = {q: {k: v for k, v in f.items() if k not in ("tensors", "provenance")} for q, f in report["files"].items()}
    print_table(["step", "s"], [[k, v] for k, v in stats.items()] + [["wall (with loading)", wall]])
    print()
    print_table(
        ["file", "MB", "tokenizer parity", "agreement", "mean |dlogp|", "tensor types"],
        [
            [q, f["mb"], f["tokenizer_parity"], f["agreement"], f["mean_abs_logprob_diff"], f["tensor_types"]]
            for q, f in files.items()
        ],
    )
    print()
    print_table(
        ["file", "GGUFReader s", "layout walk s", "ratio"], [[k, *v.values()] for k, v in metadata_reads.items()]
    )
    print(f"\ngoal < 60 s: {'met' if wall < 60 else 'NOT met'} ({wall} s)")
    payload = {
        "stages_s": stats,
        "wall_s": wall,
        "goal_s": 60,
        "goal_met": wall < 60,
        "files": files,
        "prompts": report["prompts"],
        "texts": report["texts"],
        "metadata_read_s": metadata_reads,
    }
    print(f"wrote {write_result('export_time', payload)}")


def compare_metadata_reads(folder: Path) -> dict:
    """Seconds to read each exported GGUF's metadata: gguf-py's GGUFReader against read_gguf_layout."""
    from gguf import GGUFReader

    from lettingo_cli.gguf_files import read_gguf_layout

    found = {}
    for path in sorted(folder.glob("*.gguf")):
        started = time.perf_counter()
        GGUFReader(path)
        library = time.perf_counter() - started
        started = time.perf_counter()
        read_gguf_layout(path)
        walk = time.perf_counter() - started
        found[path.name] = {
            "gguf_reader_s": round(library, 3),
            "layout_s": round(walk, 4),
            "ratio": round(library / walk),
        }
    return found


if __name__ == "__main__":
    main()
