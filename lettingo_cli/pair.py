"""Stage `pair`: preference pairs from scored profiles (chosen = helped the predictor, rejected = did not).

A profile's score is its mean probability of the true label over the user's scored targets; it is *right*
when most of its targets were predicted correctly, *wrong* when most were not. Rules:
  all         every right x wrong profile of a user (the paper)
  best-worst  the best profile that may be chosen and the worst profile of a user, when their scores differ
  margin      every pair whose score gap is >= --margin
Flagged profiles (empty, degenerate) are never chosen; with --max-stated-error neither is a profile that states
values ("4/5") whose mean lies further than that from the mean of the ratings it was written from (a faithfulness
check: a 270M writer invents rating lists, and an invented rating misleads a predictor that reads it).
The prompt of a pair is exactly the generation prompt the generator saw: re-rendered from the split and the
template stored with the profiles, and checked against the prompt hash stored with each profile.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lettingo_cli.errors import IntegrityError, UsageError
from lettingo_cli.options import option, stable_key
from lettingo_cli.profiles import UNUSABLE_FLAGS
from lettingo_cli.prompts import Template, prompt_hash, render
from lettingo_cli.split_data import load_histories
from lettingo_cli.stated import stated_values
from lettingo_cli.store import Artifact, Store, Verbs

VERBS = Verbs("pair", "paired")

RULES = ("all", "best-worst", "margin")


# pair options added later, with their defaults (see stable_key)
LATER_OPTIONS = {"max_length_ratio": None, "max_stated_error": None}


@dataclass(frozen=True)
class PairOptions:
    """The options of `lettingo pair` (each field is also its flag and a key of its --config YAML)."""

    rule: str = option("all", "all (every right x wrong, the paper) | best-worst | margin.")
    margin: float = option(0.1, "Score gap a pair needs under --rule margin.")
    max_per_user: int | None = option(None, "At most this many pairs per user (largest gaps).")
    # a length control, so DPO cannot learn "longer wins" (or "shorter wins") from the pairs alone
    max_length_ratio: float | None = option(
        None, "Keep a pair only if chosen/rejected tokens lies in [1/R, R] (a length control)."
    )

    # a faithfulness check, so DPO cannot learn "state (invented) ratings" from the pairs
    max_stated_error: float | None = option(
        None,
        'Never choose a profile whose stated values ("4/5") average more than this away from the mean of the '
        "history it was written from (stars; log counts for count data).",
    )

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise UsageError(f"--rule must be one of {', '.join(RULES)}")
        if self.max_per_user is not None and self.max_per_user < 1:
            raise UsageError("--max-per-user must be >= 1")
        if self.max_length_ratio is not None and self.max_length_ratio < 1:
            raise UsageError("--max-length-ratio must be >= 1 (e.g. 1.25: neither profile 25% longer)")
        if self.max_stated_error is not None and self.max_stated_error < 0:
            raise UsageError("--max-stated-error must be >= 0 (e.g. 0.5: within half a star)")


def length_ratio(chosen: dict, rejected: dict) -> float:
    """Chosen / rejected profile tokens (at least 1 token each)."""
    return max(chosen["tokens"], 1) / max(rejected["tokens"], 1)


def choose_pairs(scored: list[dict], options: PairOptions) -> list[tuple[dict, dict]]:
    """(chosen, rejected) profile pairs of one user; each profile has `score`, `right`, `flagged` and `tokens`, and
    `unfaithful` (never chosen) when --max-stated-error is on."""
    return _largest_gaps(_within_length(_candidates(scored, options), options.max_length_ratio), options)


def may_choose(profile: dict) -> bool:
    return not profile["flagged"] and not profile.get("unfaithful", False)


def _candidates(scored: list[dict], options: PairOptions) -> list[tuple[dict, dict]]:
    """Every pair the rule allows (a flagged or unfaithful profile is never chosen), before the length control and
    the cap. best-worst: the best profile that may be chosen against the worst of all."""
    if options.rule == "all":
        pairs = [(a, b) for a in scored if a["right"] is True for b in scored if b["right"] is False]
    elif options.rule == "best-worst":
        ranked = sorted(scored, key=lambda p: (-p["score"], p["key"]))
        eligible = [p for p in ranked if may_choose(p)]
        pairs = [(eligible[0], ranked[-1])] if eligible and eligible[0]["score"] > ranked[-1]["score"] else []
    else:
        pairs = [(a, b) for a, b in itertools.permutations(scored, 2) if a["score"] - b["score"] >= options.margin]
    return [(a, b) for a, b in pairs if may_choose(a)]


def _within_length(pairs: list[tuple[dict, dict]], limit: float | None) -> list[tuple[dict, dict]]:
    if limit is None:
        return pairs
    return [(a, b) for a, b in pairs if 1 / limit <= length_ratio(a, b) <= limit]


def _largest_gaps(pairs: list[tuple[dict, dict]], options: PairOptions) -> list[tuple[dict, dict]]:
    pairs = sorted(pairs, key=lambda pair: (-(pair[0]["score"] - pair[1]["score"]), pair[0]["key"], pair[1]["key"]))
    return pairs[: options.max_per_user] if options.max_per_user else pairs


def make_pairs(
    store: Store, scores: Artifact, options: PairOptions, name: str, jsonl: Path | None = None, force: bool = False
) -> Artifact:
    if not scores.params.get("profiles"):
        raise UsageError(f"{scores.ref} scores no profiles (a no-profile baseline): nothing to pair")
    profiles = store.get(scores.params["profiles"])
    split = store.get(profiles.params["split"])
    params = {"scores": scores.id, "profiles": profiles.id, **asdict(options)}
    key = stable_key(params, LATER_OPTIONS, name)
    run = store.stage(
        "pair", "pairs", name, params, {"scores": scores.id}, key_params=key, force=force, atomic=True, verbs=VERBS
    )
    artifact = run.cached or _write_pairs(store, run, scores, profiles, split, options)
    if jsonl is not None:
        write_jsonl(store, artifact, jsonl)
    return artifact


def _write_pairs(store: Store, run, scores: Artifact, profiles: Artifact, split: Artifact, options) -> Artifact:
    by_profile: dict[tuple, list[dict]] = {}
    for row in store.rows(scores, "scores"):
        by_profile.setdefault((row["user_id"], row["generator"], row["sample_index"]), []).append(row)
    texts = {(r["user_id"], r["generator"], r["sample_index"]): r for r in store.rows(profiles, "profiles")}
    users = sorted({user for user, _, _ in by_profile})
    templates = {label: Template(t["name"], t["text"]) for label, t in profiles.params["templates"].items()}
    chat = {g["label"]: g["chat"] for g in profiles.params["generators"]}
    histories = load_histories(store, split, users, profiles.params["history"])
    stated = stated_values(store, split) if options.max_stated_error is not None else None

    rows, outcome = [], {"users_with_pairs": 0, "all_right": 0, "all_wrong": 0, "no_pair_other": 0}
    if options.max_length_ratio is not None:
        outcome["dropped_for_length"] = 0
    if stated is not None:
        outcome["unfaithful_profiles"] = 0
    tokens = {"chosen": [], "rejected": []}
    for user in users:
        scored = []
        for (profile_user, generator, sample), results in sorted(by_profile.items()):
            if profile_user != user:
                continue
            accuracy = sum(r["correct"] for r in results) / len(results)
            profile = texts[(user, generator, sample)]
            scored.append(
                {
                    "key": (generator, sample),
                    "generator": generator,
                    "text": profile["text"],
                    "prompt_hash": profile["prompt_hash"],
                    "score": sum(r["p_true"] for r in results) / len(results),
                    "right": True if accuracy > 0.5 else False if accuracy < 0.5 else None,
                    "flagged": any(flag in UNUSABLE_FLAGS for flag in json.loads(profile["flags"])),
                    "tokens": profile["n_tokens"] or len(profile["text"].split()),
                }
            )
        if stated is not None:  # the faithfulness check: stated values against the ratings the prompt showed
            ratings = [row["rating"] for row in histories[user]]
            for p in scored:
                error = stated.level_error(p["text"], ratings)
                p["unfaithful"] = error is not None and error > options.max_stated_error
                outcome["unfaithful_profiles"] += p["unfaithful"]
        candidates = _candidates(scored, options)
        allowed = _within_length(candidates, options.max_length_ratio)
        if options.max_length_ratio is not None:  # how many candidate pairs the length control took away
            outcome["dropped_for_length"] += len(candidates) - len(allowed)
        pairs = _largest_gaps(allowed, options)
        if not pairs:
            if all(p["right"] is True for p in scored):
                outcome["all_right"] += 1
            elif all(p["right"] is False for p in scored):
                outcome["all_wrong"] += 1
            else:
                outcome["no_pair_other"] += 1
            continue
        outcome["users_with_pairs"] += 1
        for index, (chosen, rejected) in enumerate(pairs):
            tokens["chosen"].append(chosen["tokens"])
            tokens["rejected"].append(rejected["tokens"])
            # a pair trains one generator: its prompt is the prompt the chosen profile was written from
            prompt = render(templates[chosen["generator"]], histories[user], chat[chosen["generator"]])
            if prompt_hash(prompt) != chosen["prompt_hash"]:
                raise IntegrityError(f"the re-rendered prompt of user {user} does not match the stored prompt hash")
            rows.append(
                {
                    "user_id": user,
                    "pair_index": index,
                    "prompt": prompt if isinstance(prompt, str) else json.dumps(prompt),
                    "chosen": chosen["text"],
                    "rejected": rejected["text"],
                    "chosen_score": round(chosen["score"], 6),
                    "rejected_score": round(rejected["score"], 6),
                }
            )
    with run:
        store.insert_rows(run.artifact, "pairs", rows)
        means = {f"{side}_mean_tokens": round(sum(t) / len(t), 1) if t else None for side, t in tokens.items()}
        chosen, rejected = means["chosen_mean_tokens"], means["rejected_mean_tokens"]
        ratio = round(chosen / rejected, 3) if rejected else None  # no pairs, or only empty rejected profiles
        report = {"outcome": outcome, **means, "length_ratio": ratio}
        return run.finish(counts={"users": len(users), **outcome}, report=report)


def preference_records(store: Store, pairs: Artifact) -> list[dict]:
    """TRL's preference format: prompt / chosen / rejected (conversational for chat-style generators; for
    completion prompts the texts get back the space that followed "Profile:")."""
    records = []
    for row in store.rows(pairs, "pairs"):
        prompt = row["prompt"]
        if prompt.startswith("[{"):
            records.append(
                {
                    "prompt": json.loads(prompt),
                    "chosen": [{"role": "assistant", "content": row["chosen"]}],
                    "rejected": [{"role": "assistant", "content": row["rejected"]}],
                }
            )
        else:
            records.append({"prompt": prompt, "chosen": " " + row["chosen"], "rejected": " " + row["rejected"]})
    return records


def write_jsonl(store: Store, pairs: Artifact, path: Path) -> int:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    records = preference_records(store, pairs)
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(records)
