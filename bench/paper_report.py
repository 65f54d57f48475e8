"""Assemble the results of bench/paper.sh from the store: per-arm metrics with 95% intervals, aligned - base with
its paired interval, pairs used, DPO's last logged rewards, profile lengths, and each stage's time.

Writes bench/results/<TAG>.json (with a top-level `aligned_minus_base` object: accuracy, ci_low, ci_high as
fractions) and bench/results/<TAG>.md. Called by paper.sh as: paper_report.py --tag T --times FILE ROLE=REF ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402

from lettingo_cli.eval import compare_evals  # noqa: E402
from lettingo_cli.store import Store  # noqa: E402


def arm(report: dict) -> dict:
    figures = {"users": report["users"], "predictions": report["n"]}
    for metric in ("accuracy", "macro_f1", "weighted_f1"):
        low, high = report["ci95"][metric]
        figures[metric] = round(report[metric], 4)
        figures[f"{metric}_ci"] = [round(low, 4), round(high, 4)]
    figures["confusion"] = report["confusion"]
    return figures


def profile_facts(store: Store, profiles) -> dict:
    rows = list(store.rows(profiles, "profiles"))
    tokens = [row["n_tokens"] for row in rows]
    flags: dict[str, int] = {}
    for row in rows:
        for flag in json.loads(row["flags"]):
            flags[flag] = flags.get(flag, 0) + 1
    return {"profiles": len(rows), "mean_tokens": round(statistics.mean(tokens), 1) if tokens else 0, "flags": flags}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="paper")
    parser.add_argument("--times", type=Path, required=True)
    parser.add_argument("--setting", action="append", default=[], help="KEY=VALUE, recorded as given")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("refs", nargs="+", help="ROLE=REF")
    args = parser.parse_args()
    store = Store(Path(os.environ.get("LETTINGO_STORE", "lettingo.db")))
    refs = dict(item.split("=", 1) for item in args.refs)
    artifacts = {role: store.resolve(ref) for role, ref in refs.items()}

    times: dict[str, float] = {}
    for line in args.times.read_text().splitlines():
        name, start, end = line.split()
        times[name] = round(times.get(name, 0.0) + float(end) - float(start), 1)
    arms = {
        "10h": arm(artifacts["eval_10h"].report),
        "base": arm(artifacts["eval_base"].report),
        "aligned": arm(artifacts["eval_aligned"].report),
    }
    compared = compare_evals(store, artifacts["eval_aligned"], artifacts["eval_base"])
    difference = compared.get("difference", {})
    aligned_minus_base = {
        "accuracy": round(difference.get("accuracy", 0.0), 4),
        "ci_low": round(compared["ci95"]["accuracy"][0], 4) if difference else None,
        "ci_high": round(compared["ci95"]["accuracy"][1], 4) if difference else None,
        "macro_f1": round(difference.get("macro_f1", 0.0), 4),
        "macro_f1_ci": [round(x, 4) for x in compared["ci95"]["macro_f1"]] if difference else None,
        "weighted_f1": round(difference.get("weighted_f1", 0.0), 4),
        "users": compared["users"],
    }
    steps = list(
        store.db.query("SELECT * FROM dpo_steps WHERE run_id = ? ORDER BY step", [artifacts["adapter"].run_id])
    )
    last = steps[-5:]
    payload = {
        "settings": dict(item.split("=", 1) for item in args.setting),
        "arms": arms,
        "10h": arms["10h"],
        "base": arms["base"],
        "aligned": arms["aligned"],
        "aligned_minus_base": aligned_minus_base,
        "goal": {
            "accuracy_points": 0.03,
            "met": aligned_minus_base["accuracy"] >= 0.03 and (aligned_minus_base["ci_low"] or 0) > 0,
        },
        "pairs_used": artifacts["pairs"].count,
        "dpo": {
            "steps": len(steps),
            "first_loss": steps[0]["loss"] if steps else None,
            "last5_mean_loss": round(statistics.mean(s["loss"] for s in last), 4) if last else None,
            "last5_mean_margin": round(statistics.mean(s["rewards_margins"] for s in last), 4) if last else None,
            "last5_mean_accuracy": round(statistics.mean(s["rewards_accuracies"] for s in last), 4) if last else None,
        },
        "profiles": {
            "train": profile_facts(store, artifacts["train_profiles"]),
            "test_base": profile_facts(store, artifacts["base_profiles"]),
            "test_aligned": profile_facts(store, artifacts["aligned_profiles"]),
        },
        "export": {
            q: {k: f.get(k) for k in ("mb", "agreement", "mean_abs_logprob_diff", "tokenizer_parity")}
            for q, f in artifacts["export"].report.get("files", {}).items()
        },
        "stage_seconds": times,
        "total_seconds": round(sum(times.values()), 1),
        "artifacts": {role: {"id": a.id, "ref": a.ref} for role, a in artifacts.items()},
    }
    path = write_result(args.tag, payload, args.results)

    def row(name: str, figures: dict) -> str:
        cells = [
            f"{figures[m]:.3f} [{figures[m + '_ci'][0]:.3f}, {figures[m + '_ci'][1]:.3f}]"
            for m in ("accuracy", "macro_f1", "weighted_f1")
        ]
        return f"| {name} | {figures['users']} | " + " | ".join(cells) + " |"

    d = aligned_minus_base
    lines = [
        f"# {args.tag}: {payload['settings'].get('generator', '')} on MovieLens, "
        f"predictor {payload['settings'].get('predictor', '')}",
        "",
        "| arm | users | accuracy [95% CI] | macro F1 [95% CI] | weighted F1 [95% CI] |",
        "|---|---|---|---|---|",
        row("10H (no profile)", arms["10h"]),
        row("base generator", arms["base"]),
        row("aligned generator", arms["aligned"]),
        "",
        f"aligned - base: accuracy {d['accuracy']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], macro F1 "
        f"{d['macro_f1']:+.3f}, weighted F1 {d['weighted_f1']:+.3f} (paired bootstrap over {d['users']} users); "
        f"goal +0.030 with the interval above zero: {'met' if payload['goal']['met'] else 'NOT met'}.",
        "",
        f"pairs used: {payload['pairs_used']}; dpo steps: {payload['dpo']['steps']}, last-5 mean loss "
        f"{payload['dpo']['last5_mean_loss']}, margin {payload['dpo']['last5_mean_margin']}, reward accuracy "
        f"{payload['dpo']['last5_mean_accuracy']}.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds} |" for name, seconds in times.items()],
        f"| total | {payload['total_seconds']} |",
    ]
    markdown = args.results / f"{args.tag}.md"
    markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"\nwrote {path} and {markdown}")


if __name__ == "__main__":
    main()
