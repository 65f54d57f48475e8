"""The README's markdown table of a predictor_accuracy run: python3 -m bench.predictor_table [RESULTS.json ...].

Default: bench/results/predictor_accuracy.json and bench/results/predictor_accuracy_k4.json. Per predictor and
profile set: users, predictions, accuracy and macro F1 with 95% intervals, profile - 10H (paired), the share of
answers the profile changes, predictor - recent-mean (paired), evaluations/s; then the baselines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def interval(value: float, bounds: list[float], signed: bool = False) -> str:
    form = "{:+.3f}" if signed else "{:.3f}"
    return f"{form.format(value)} [{form.format(bounds[0])}, {form.format(bounds[1])}]"


def difference(entry: dict, metric: str) -> str:
    return interval(entry["difference"][metric], entry["ci95"][metric], signed=True) if entry.get("users") else ""


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    lines = [
        f"`{path.name}`: {data['split']}, profiles of split:{data['profiles_of_split']}",
        "",
        "| predictor | profiles | users | predictions | accuracy [95% CI] | macro F1 [95% CI] | profile - 10H accuracy "
        "| profile - 10H macro F1 | answers changed | - recent-mean accuracy | - recent-mean macro F1 | eval/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, sets in data["predictors"].items():
        for set_name, entry in sets.items():
            gap, recent = entry.get("minus_10h", {}), entry["minus_baselines"]["recent_mean"]
            changed = entry.get("answers_changed_by_profile")
            cells = [
                f"`{name}`",
                set_name,
                entry["users"],
                entry["n"],
                interval(entry["accuracy"], entry["ci95"]["accuracy"]),
                interval(entry["macro_f1"], entry["ci95"]["macro_f1"]),
                difference(gap, "accuracy"),
                difference(gap, "macro_f1"),
                f"{changed:.1%}" if changed is not None else "",
                difference(recent, "accuracy"),
                difference(recent, "macro_f1"),
                data["evaluations_per_s"].get(name, {}).get(set_name, ""),
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for name, figures in data["baselines"].items():
        accuracy = interval(figures["accuracy"], figures["ci95"]["accuracy"])
        macro_f1 = interval(figures["macro_f1"], figures["ci95"]["macro_f1"])
        cells = [name, "—", data["test_users"], figures["n"], accuracy, macro_f1, "", "", "", "", "", ""]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [
        RESULTS / "predictor_accuracy.json",
        RESULTS / "predictor_accuracy_k4.json",
    ]
    print("\n\n".join(table(path) for path in paths if path.exists()))


if __name__ == "__main__":
    main()
