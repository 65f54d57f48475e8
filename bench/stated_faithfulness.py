"""How faithful are the ratings a writer's profiles state, and does faithfulness pay under the judge?

For the profiles of a scored train-profiles artifact (default: the profile-only paper run's round 1), read the
values each profile states the way the reader reads them ("4/5"), and compare them with the ratings of the
history the profile was written from: how many profiles state values, how many stated lines name a film of that
history (and with its true rating), and the judge's accuracy and mean P(true label) on the profiles' targets for
three groups: stating none, stating values whose mean is within --tolerance of the history's mean, and stating
values further off (what `pair --max-stated-error` calls unfaithful).

    python3 -m bench.stated_faithfulness            # bench/results/paper-po-store, scores:paper-po-train@v1

Writes bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from bench._common import RESULTS, write_result
from lettingo_cli.split_data import load_histories
from lettingo_cli.stated import stated_values
from lettingo_cli.store import Store


def title(item_text: str) -> str:
    """'Heat (1995) | Action, Crime' -> 'heat': the title as a profile would name it."""
    return re.sub(r"\s*\(\d{4}\)\s*$", "", item_text.split(" | ")[0]).lower().strip()


def group_figures(rows: list[dict]) -> dict:
    if not rows:
        return {"profiles": 0}
    return {
        "profiles": len(rows),
        "accuracy": round(statistics.fmean(r["accuracy"] for r in rows), 3),
        "mean_p_true": round(statistics.fmean(r["score"] for r in rows), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=RESULTS / "paper-po-store" / "lettingo.db")
    parser.add_argument("--scores", default="scores:paper-po-train@v1")
    parser.add_argument("--tolerance", type=float, default=0.5)
    parser.add_argument("--tag", default="stated_faithfulness")
    args = parser.parse_args()

    store = Store(args.store, create=False)
    scores = store.resolve(args.scores, "scores")
    profiles = store.get(scores.params["profiles"])
    split = store.get(profiles.params["split"])
    stated = stated_values(store, split)
    results: dict[tuple, list[dict]] = {}
    for row in store.rows(scores, "scores"):
        results.setdefault((row["user_id"], row["generator"], row["sample_index"]), []).append(row)
    users = sorted({user for user, _, _ in results})
    histories = load_histories(store, split, users, profiles.params["history"])

    judged, lines, naming, true_value = [], 0, 0, 0
    for profile in store.rows(profiles, "profiles"):
        got = results.get((profile["user_id"], profile["generator"], profile["sample_index"]))
        if not got:
            continue
        history = histories[profile["user_id"]]
        ratings = {title(h["text"]): h["rating"] for h in history}
        found = stated.lines(profile["text"])
        for line, value in found:
            named = [t for t in ratings if t and t in line]
            naming += bool(named)
            true_value += any(ratings[t] == value for t in named)
        lines += len(found)
        error = stated.level_error(profile["text"], [h["rating"] for h in history])
        judged.append(
            {
                "error": error,
                "accuracy": sum(r["correct"] for r in got) / len(got),
                "score": sum(r["p_true"] for r in got) / len(got),
            }
        )
    stating = [r for r in judged if r["error"] is not None]
    result = {
        "what": "ratings stated by profiles against the history they were written from, and the judge's figures",
        "store": str(args.store),
        "scores": scores.ref,
        "profiles": profiles.ref,
        "tolerance": args.tolerance,
        "profiles_judged": len(judged),
        "profiles_stating_values": len(stating),
        "stated_lines": lines,
        "stated_lines_naming_a_history_film": naming,
        "of_those_with_its_true_rating": true_value,
        "groups": {
            "stating_none": group_figures([r for r in judged if r["error"] is None]),
            "stated_mean_within_tolerance": group_figures([r for r in stating if r["error"] <= args.tolerance]),
            "stated_mean_further_off": group_figures([r for r in stating if r["error"] > args.tolerance]),
        },
    }
    write_result(args.tag, result)
    md = [
        f"# Stated ratings against the history ({profiles.ref}, judged by {scores.ref})",
        "",
        f"{len(stating)} of {len(judged)} profiles state values; {lines} stated lines, {naming} naming a film of the "
        f"profile's history, {true_value} of those with its true rating.",
        "",
        "| profiles | count | accuracy | mean P(true) |",
        "|---|---|---|---|",
    ]
    for label, figures in result["groups"].items():
        md.append(
            f"| {label} | {figures['profiles']} | {figures.get('accuracy', '')} | {figures.get('mean_p_true', '')} |"
        )
    (RESULTS / f"{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
