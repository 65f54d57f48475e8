"""The report of experiments/sft_pool.sh: each arm's accuracy and macro F1 with 95% intervals, the paired
differences (sft - base, sft - another user's sft profiles, sft - no profile, base - no profile), the profiles'
mean tokens and their ratio, each arm's faithfulness, what sft took from the pool, and each stage's seconds.

Writes <RESULTS>/<TAG>.json and <TAG>.md. Called by sft_pool.sh as:
python3 -m experiments.sft_pool_report --tag T --refs FILE --times FILE --results DIR --store DB [--setting K=V ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._common import (
    LAST_STEPS,
    estimate,
    last_steps,
    mean_tokens,
    paired_difference,
    stage_seconds,
    write_result,
)
from lettingo_cli.eval import compare_evals
from lettingo_cli.store import Store

ARMS = {"eval_base": "base writer", "eval_sft": "SFT writer", "eval_swap": "another user's SFT profiles",
        "eval_none": "no profile", "eval_history": "own history as text, cut to the base profiles' length",
        "eval_dpo": "DPO writer (off-policy pairs from the pool, + NLL)",
        "eval_dpo_swap": "another user's DPO profiles",
        "second_none": "second judge: no profile", "second_history": "second judge: own history as text",
        "second_base": "second judge: base writer", "second_sft": "second judge: SFT writer",
        "second_dpo": "second judge: DPO writer"}  # fmt: skip
DIFFERENCES = (  # the arms a run lacks (an older run, DPO=0, no SECOND) are left out
    ("eval_sft", "eval_base"),
    ("eval_sft", "eval_swap"),
    ("eval_sft", "eval_none"),
    ("eval_base", "eval_none"),
    ("eval_history", "eval_none"),
    ("eval_dpo", "eval_base"),
    ("eval_dpo", "eval_dpo_swap"),
    ("eval_dpo", "eval_none"),
    ("eval_dpo", "eval_sft"),
    ("second_history", "second_none"),  # the second judge's power to read content
    ("second_sft", "second_base"),
    ("second_dpo", "second_base"),
)


def _mean_tokens(store: Store, evaluation) -> float | None:
    profiles_id = store.get(evaluation.params["scores"]).params.get("profiles")
    return mean_tokens(store, store.get(profiles_id)) if profiles_id else None


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--tag", "--refs", "--times", "--results", "--store"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--setting", action="append", default=[])
    args = parser.parse_args()
    refs = dict(line.split("=", 1) for line in Path(args.refs).read_text().splitlines() if line)
    store = Store(Path(args.store), create=False)
    prompts = [role.removeprefix("eval_prompt_") for role in refs if role.startswith("eval_prompt_")]
    labels = dict(ARMS)
    for prompt in prompts:  # prompt-only arms: the base writer with another built-in prompt
        labels[f"eval_prompt_{prompt}"] = f"base writer, --prompt {prompt}"
        labels[f"second_prompt_{prompt}"] = f"second judge: base writer, --prompt {prompt}"
    evals = {role: store.resolve(refs[role], kind="eval") for role in labels if role in refs}
    arms = {}
    for role, label in labels.items():
        if role not in evals:
            continue
        report = evals[role].report
        arms[role] = {
            "label": label,
            "ref": evals[role].ref,
            "users": report["users"],
            "accuracy": estimate(report, "accuracy"),
            "macro_f1": estimate(report, "macro_f1"),
            "mean_tokens": _mean_tokens(store, evals[role]),
            "faithfulness": report.get("faithfulness"),
        }
    differences = {}
    prompt_differences = [(f"{judge}_prompt_{p}", f"{judge}_base") for p in prompts for judge in ("eval", "second")]
    for first, second in (*DIFFERENCES, *prompt_differences):
        if first not in evals or second not in evals:
            continue
        result = compare_evals(store, evals[first], evals[second])
        name = f"{first.removeprefix('eval_')}_minus_{second.removeprefix('eval_')}"
        differences[name] = paired_difference(result, ("accuracy", "macro_f1"))
    base_tokens, sft_tokens = arms["eval_base"]["mean_tokens"], arms["eval_sft"]["mean_tokens"]
    adapter = store.resolve(refs["adapter"], kind="adapter")
    seconds = stage_seconds(Path(args.times))
    dpo = None
    if "dpo_adapter" in refs:
        dpo_adapter = store.resolve(refs["dpo_adapter"], kind="adapter")
        pairs = store.resolve(refs["pairs"], kind="pairs")
        dpo_steps = store.training_steps(dpo_adapter.run_id)
        dpo = {
            "ref": dpo_adapter.ref,
            "params": {k: dpo_adapter.params.get(k) for k in ("beta", "lr", "epochs", "sft_weight", "lora_r")},
            "pairs": {"ref": pairs.ref, "count": pairs.count, "report": pairs.report},
            "stats": store.run(dpo_adapter.run_id)["stats"],
            "first_steps": last_steps(dpo_steps[:LAST_STEPS], ("loss", "rewards_margins", "rewards_accuracies")),
            "last_steps": last_steps(dpo_steps, ("loss", "rewards_margins", "rewards_accuracies")),
        }
    steps = store.training_steps(adapter.run_id)
    payload = {
        "settings": dict(setting.split("=", 1) for setting in args.setting),
        "arms": arms,
        "differences": differences,
        "length_ratio_sft_to_base": round(sft_tokens / base_tokens, 3) if base_tokens and sft_tokens else None,
        "sft": {
            "ref": adapter.ref,
            "counts": adapter.counts,
            "report": adapter.report,
            "stats": store.run(adapter.run_id)["stats"],
            "first_steps": last_steps(steps[:LAST_STEPS], ("loss", "mean_token_accuracy")),
            "last_steps": last_steps(steps, ("loss", "mean_token_accuracy")),
        },
        **({"dpo": dpo} if dpo else {}),
        "second_judge_sees_content": (
            differences["second_history_minus_second_none"]["accuracy"]["ci_low"] > 0
            if "second_history_minus_second_none" in differences
            else None
        ),
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
    }
    write_result(args.tag, payload, Path(args.results))
    (Path(args.results) / f"{args.tag}.md").write_text(_markdown(args.tag, payload), encoding="utf-8")
    print(Path(args.results) / f"{args.tag}.json")


def _ci(figure: dict, signed: bool = False) -> str:
    form = "{:+.3f}" if signed else "{:.3f}"
    return f"{form.format(figure['value'])} [{form.format(figure['ci_low'])}, {form.format(figure['ci_high'])}]"


def _markdown(tag: str, payload: dict) -> str:
    lines = [f"# {tag}: the SFT warm start on a pool of LLM writers (profile-only, MovieLens 100K)", ""]
    lines += ["| arm | users | accuracy | macro F1 | mean tokens | states a value | titles named | in history |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for arm in payload["arms"].values():
        faithful = arm["faithfulness"] or {}
        lines.append(
            f"| {arm['label']} | {arm['users']} | {_ci(arm['accuracy'])} | {_ci(arm['macro_f1'])} | "
            f"{arm['mean_tokens'] if arm['mean_tokens'] is not None else '-'} | "
            f"{faithful.get('stating_a_value', '-')} | {faithful.get('titles_named', '-')} | "
            f"{faithful.get('titles_in_history', '-')} |"
        )
    lines += ["", "| difference (paired) | users | accuracy | macro F1 |", "|---|---|---|---|"]
    for name, difference in payload["differences"].items():
        lines.append(
            f"| {name} | {difference['users']} | {_ci(difference['accuracy'], True)} | "
            f"{_ci(difference['macro_f1'], True)} |"
        )
    sft = payload["sft"]
    lines += [
        "",
        f"Length ratio SFT / base: {payload['length_ratio_sft_to_base']}. SFT ({sft['ref']}): {sft['counts']}; "
        f"taken per writer {sft['report'].get('chosen_by_generator')}; turned away {sft['report'].get('outcome')}.",
        f"Seconds per stage: {payload['seconds']} (total {payload['total_seconds']}).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
