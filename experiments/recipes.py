"""The recipes of experiments/paper.sh (RECIPES=1, issue 38): which one is best on validation train users, and
the `best_recipe` object of the paper report.

paper.sh calls `python3 -m experiments.recipes --refs FILE LABEL...` after every recipe has written for the
validation users: it prints the label whose validation eval (`val_LABEL` in the refs file) has the highest
accuracy (the first of equals, in the order given) and shows each recipe's figures on stderr. The test users
never take part in the choice. paper_report.py then calls `report()` for the `recipes` and `best_recipe` objects.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench._common import LAST_STEPS, estimate, last_steps, mean_tokens, paired_difference
from lettingo_cli.backends import REGISTRY as WRITERS
from lettingo_cli.eval import compare_evals
from lettingo_cli.store import Store

METRICS = ("accuracy", "macro_f1")
BAR_GAIN = 0.05  # best recipe - base writer, accuracy (issue 38)
TITLES_FOUND = 0.8  # the share of named titles found in the user's history
LENGTH_RATIO = (0.85, 1.15)
WHOLE_RUN_SECONDS = 7200


def choose(store: Store, refs: dict[str, str], labels: list[str]) -> str:
    """The label whose validation eval has the highest accuracy (the first of equals)."""
    accuracy = {label: store.resolve(refs[f"val_{label}"], kind="eval").report["accuracy"] for label in labels}
    for label, value in accuracy.items():
        print(f"validation accuracy {label}: {value:.4f}", file=sys.stderr)
    return max(labels, key=lambda label: (accuracy[label], -labels.index(label)))


def _difference(store: Store, found: dict, first: str, second: str, users: set[str] | None = None) -> dict | None:
    if first not in found or second not in found:
        return None
    return paired_difference(compare_evals(store, found[first], found[second], users), METRICS)


def _pool(store: Store, found: dict) -> dict:
    """The pool's writers and prompts with the accuracy of each one's profiles on the pool's train users (the
    judge's answers right, as `score` counted them), and whether any writer is model-free (a control, never part
    of a pool of LLM writers)."""
    writers = []
    for role in ("scores", "teacher_scores"):
        scores = found[role]
        profiles = store.get(scores.params["profiles"])
        rows = list(store.rows(scores, "scores"))
        for generator in profiles.params["generators"]:
            template = profiles.params["templates"][generator["label"]]
            mine = [row["correct"] for row in rows if row["generator"] == generator["label"]]
            writers.append(
                {
                    "writer": generator["spec"],
                    "prompt": template["name"],
                    "profiles": profiles.ref,
                    "users": len(profiles.params["users"]),
                    "accuracy": round(sum(mine) / len(mine), 4) if mine else None,
                }
            )
    return {
        "writers": writers,
        "prompts": sorted({w["prompt"] for w in writers}),
        "model_free": any(WRITERS.model_free(w["writer"]) for w in writers),
    }


def _tested(store: Store, found: dict, label: str, base_tokens: float | None) -> dict:
    """A recipe on the test users: its figures, its differences from the base writer under both judges, its
    length against base's and what its profiles state."""
    role = f"eval_recipe_{label}"
    tokens = mean_tokens(store, found[f"recipe_profiles_{label}"])
    return {
        **{metric: estimate(found[role].report, metric) for metric in METRICS},
        "minus_base": _difference(store, found, role, "eval_base"),
        "second_judge_minus_base": _difference(store, found, f"second_recipe_{label}", "second_base"),
        "mean_tokens": tokens,
        "length_ratio": round(tokens / base_tokens, 3) if tokens and base_tokens else None,
        "faithfulness": found[role].report.get("faithfulness"),
    }


def _training(store: Store, adapter, keys: tuple[str, ...]) -> dict:
    """A recipe's training: its steps and seconds, and the mean of its first and last 10 logged steps."""
    steps = store.training_steps(adapter.run_id)
    return {
        "ref": adapter.ref,
        "stats": store.run(adapter.run_id)["stats"],
        "first_steps": last_steps(steps[:LAST_STEPS], keys),
        "last_steps": last_steps(steps, keys),
    }


def _validation_users(settings: dict) -> str:
    first, count = int(settings.get("users", 0)), int(settings.get("val_users", 0))
    return f"{count} validation train users (--users train:{first}:{first + count}), none in the pool"


def _validation(store: Store, found: dict, labels: list[str]) -> dict:
    """Each recipe's figures on the validation users, and its difference from the base writer on them."""
    table = {}
    for label in ("base", *labels):
        evaluation = found[f"val_{label}"]
        profiles = store.get(store.get(evaluation.params["scores"]).params["profiles"])
        table[label] = {
            "users": evaluation.report["users"],
            **{metric: estimate(evaluation.report, metric) for metric in METRICS},
            "mean_tokens": mean_tokens(store, profiles),
            "faithfulness": evaluation.report.get("faithfulness"),
            **({"minus_base": _difference(store, found, f"val_{label}", "val_base")} if label != "base" else {}),
        }
    return table


CHOICES = ("best_recipe", "best_prompt_recipe")  # refs-file roles whose values are recipe labels, not artifacts


def report(store: Store, found: dict, choices: dict, settings: dict, total_seconds: float) -> dict:
    """The `recipes` block (the pool, each recipe on the validation users, what SFT and the off-policy pairs took
    from the pool) and `best_recipe` (the chosen recipe on the test users against the issue's bar)."""
    labels = [role.removeprefix("val_") for role in found if role.startswith("val_") and role != "val_base"]
    best, best_prompt = choices["best_recipe"], choices["best_prompt_recipe"]
    arm, prompt_arm = f"eval_recipe_{best}", f"eval_recipe_{best_prompt}"
    base_tokens = mean_tokens(store, found["base_profiles"])
    tested = {
        label: _tested(store, found, label, base_tokens)
        for label in sorted(role.removeprefix("eval_recipe_") for role in found if role.startswith("eval_recipe_"))
    }
    chosen = tested[best]
    teacher_users = set(found["teacher_test_profiles"].params["users"])
    minus_base = {**chosen["minus_base"], "length_ratio": chosen["length_ratio"]}
    faithfulness = chosen["faithfulness"] or {}
    second_minus_base = chosen["second_judge_minus_base"]
    second_power = _difference(store, found, "second_history", "second_none")
    another = _difference(store, found, arm, "eval_best_swapped")
    best_recipe = {
        "name": best,
        "chosen_on": _validation_users(settings),
        "minus_base": minus_base,
        "minus_another_users": another,
        "minus_best_prompt_only": None if best == best_prompt else _difference(store, found, arm, prompt_arm),
        "best_prompt_only": best_prompt,
        "minus_teacher": _difference(store, found, arm, "eval_teacher", teacher_users),
        "teacher": {
            "users": len(teacher_users),
            **{metric: estimate(found["eval_teacher"].report, metric) for metric in METRICS},
            "faithfulness": found["eval_teacher"].report.get("faithfulness"),
        },
        "second_judge_minus_base": second_minus_base,
        "second_judge_history_minus_none": second_power,
        "faithfulness": {"stated_titles_in_history": faithfulness.get("titles_in_history"), **faithfulness},
        "mean_tokens": {"best": chosen["mean_tokens"], "base": base_tokens},
        "pool": _pool(store, found),
    }
    ratio = minus_base["length_ratio"]
    titles = faithfulness.get("titles_in_history")
    parts = {
        "accuracy_plus_0.05_interval_above_zero": minus_base["accuracy"]["value"] >= BAR_GAIN
        and minus_base["accuracy"]["ci_low"] > 0,
        "macro_f1_interval_above_zero": minus_base["macro_f1"]["ci_low"] > 0,
        "minus_another_users_interval_above_zero": another is not None and another["accuracy"]["ci_low"] > 0,
        "titles_in_history_at_least_0.8": titles is not None and titles >= TITLES_FOUND,
        "length_ratio_within_0.85_1.15": ratio is not None and LENGTH_RATIO[0] <= ratio <= LENGTH_RATIO[1],
        "second_judge_sees_content_and_above_zero": second_power is not None
        and second_power["accuracy"]["ci_low"] > 0
        and second_minus_base is not None
        and second_minus_base["accuracy"]["value"] > 0,
        "whole_run_under_120_minutes": total_seconds < WHOLE_RUN_SECONDS,
        "pool_of_llm_writers_only": not best_recipe["pool"]["model_free"],
    }
    best_recipe["bar"] = {
        **parts,
        "met": all(parts.values()),
        # the bar's replication is a separate run (latest-small): there, what counts is this part
        "replication": {"minus_base_interval_above_zero": minus_base["accuracy"]["ci_low"] > 0},
    }
    recipes = {
        "validation": _validation(store, found, labels),
        "sft": {"ref": found["sft_adapter"].ref, "counts": found["sft_adapter"].counts}
        | {k: found["sft_adapter"].report.get(k) for k in ("chosen_by_generator", "outcome", "chosen_mean_tokens")},
        "training": {
            "sft": _training(store, found["sft_adapter"], ("loss", "mean_token_accuracy")),
            **{
                label: _training(store, found[role], ("loss", "rewards_margins", "rewards_accuracies"))
                for label, role in (("dpo_pool", "pool_adapter"), ("sft_dpo", "sft_dpo_adapter"))
            },
        },
        "pool_pairs": {"ref": found["pool_pairs"].ref, "count": found["pool_pairs"].count}
        | {k: found["pool_pairs"].report.get(k) for k in ("chosen_by_writer", "outcome", "length_ratio")},
        "tested": list(tested),
        "test": tested,
    }
    return {"recipes": recipes, "best_recipe": best_recipe}


def _signed(d: dict | None, metric: str = "accuracy") -> str:
    if d is None:
        return "-"
    v = d[metric]
    return f"{v['value']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"


def markdown(payload: dict) -> list[str]:
    """The report's recipes section: each recipe on the validation users, the chosen one on the test users, and
    each part of the bar."""
    recipes, best = payload["recipes"], payload["best_recipe"]
    lines = ["", "## Recipes (chosen on validation train users)", ""]
    lines += ["| recipe | users | accuracy | - base (accuracy) | - base (macro F1) | mean tokens | titles in history |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for label, arm in recipes["validation"].items():
        faithful = arm["faithfulness"] or {}
        lines.append(
            f"| {label} | {arm['users']} | {arm['accuracy']['value']:.3f} | {_signed(arm.get('minus_base'))} | "
            f"{_signed(arm.get('minus_base'), 'macro_f1')} | {arm['mean_tokens']} | "
            f"{faithful.get('titles_in_history', '-')} |"
        )
    minus_base = best["minus_base"]
    lines += [
        "",
        f"Chosen: **{best['name']}** (best prompt-only: {best['best_prompt_only']}). On the test users: - base "
        f"{_signed(minus_base)} (macro F1 {_signed(minus_base, 'macro_f1')}, length ratio "
        f"{minus_base['length_ratio']}); - another user's {_signed(best['minus_another_users'])}; - best prompt-only "
        f"{_signed(best['minus_best_prompt_only'])}; - teacher (its users) {_signed(best['minus_teacher'])}; second "
        f"judge - base {_signed(best['second_judge_minus_base'])} (its history - none "
        f"{_signed(best['second_judge_history_minus_none'])}); titles in history "
        f"{best['faithfulness']['stated_titles_in_history']}.",
        "",
        "| part of the bar | met |",
        "|---|---|",
    ]
    lines += [f"| {part} | {ok} |" for part, ok in best["bar"].items() if part not in ("met", "replication")]
    lines.append(f"| all | {best['bar']['met']} |")
    pool = ", ".join(f"{w['writer']} / {w['prompt']} (accuracy {w['accuracy']})" for w in best["pool"]["writers"])
    pairs = recipes["pool_pairs"]
    lines += ["", f"Pool: {pool}. SFT took {recipes['sft']['chosen_by_generator']}; off-policy pairs "
              f"{pairs['count']}, chosen sides {pairs['chosen_by_writer']}."]  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", type=Path, required=True, help="the run's ROLE=REF file")
    parser.add_argument("labels", nargs="+", help="the recipes to choose from")
    args = parser.parse_args()
    refs = dict(line.split("=", 1) for line in args.refs.read_text().splitlines() if "=" in line)
    store = Store(Path(os.environ.get("LETTINGO_STORE", "lettingo.db")), create=False)
    print(choose(store, refs, args.labels))


if __name__ == "__main__":
    main()
