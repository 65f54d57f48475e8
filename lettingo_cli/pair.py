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
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import IntegrityError, UsageError
from lettingo_cli.options import option, stable_key
from lettingo_cli.prompts import HISTORY_LINES, Template, prompt_hash, render, template_for
from lettingo_cli.scored import pool_split, scored_profiles
from lettingo_cli.specs import parse
from lettingo_cli.split_data import load_histories, train_users
from lettingo_cli.stated import stated_values
from lettingo_cli.store import Artifact, Store, Verbs
from lettingo_cli.training.data import preference_records

VERBS = Verbs("pair", "paired")

RULES = ("all", "best-worst", "margin")


# pair options added later, with their defaults (see stable_key)
LATER_OPTIONS = {"max_length_ratio": None, "max_stated_error": None, "for_generator": None}


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

    # off-policy pairs (the paper's pool of writers): every pair on the trained writer's own prompt, whoever wrote it
    for_generator: str | None = option(
        None,
        "Put every pair on this writer's own generation prompt, whichever writer and prompt wrote each side (pairs "
        "from a pool): WRITER[?prompt=broad|levels|genres|recent|FILE][&style=chat][&history=N] "
        "(default: each pair on its chosen profile's own prompt).",
        "--for",
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
    store: Store,
    scores: Artifact | list[Artifact],
    options: PairOptions,
    name: str,
    jsonl: Path | None = None,
    force: bool = False,
    allow_model_free: bool = False,
) -> Artifact:
    """Pairs of each user's profiles in one scores artifact, or across a pool of them (several writers, several
    prompts, one split); profiles of a model-free writer only with `allow_model_free` (see pool_split)."""
    pools = scores if isinstance(scores, list) else [scores]
    split = pool_split(store, pools, allow_model_free)
    profiles = [store.get(pool.params["profiles"]) for pool in pools]
    if len(pools) > 1 and options.for_generator is None:
        raise UsageError("pairs across a pool need --for WRITER: the one writer whose prompt every pair is put on")
    writer = trained_writer(options.for_generator) if options.for_generator else None
    one = len(pools) == 1  # one scores artifact keeps the params (and run keys) pairs had before pools
    params = {
        "scores": pools[0].id if one else [pool.id for pool in pools],
        "profiles": profiles[0].id if one else [p.id for p in profiles],
        **asdict(options),
    }
    key = stable_key(params, LATER_OPTIONS, name)
    inputs = {"scores": params["scores"]}
    run = store.stage("pair", "pairs", name, params, inputs, key_params=key, force=force, atomic=True, verbs=VERBS)
    artifact = run.cached or _write_pairs(store, run, pools, split, options, writer)
    if jsonl is not None:
        write_jsonl(store, artifact, jsonl)
    return artifact


def trained_writer(spec_text: str) -> tuple[Template, bool, int]:
    """`--for WRITER[?prompt=NAME|FILE][&style=chat][&history=N]`: the template, chat style and history window of
    the writer the pairs train (a completion writer unless style=chat, as the default generator is)."""
    spec = parse(spec_text)
    unknown = set(spec.options) - {"prompt", "style", "history"}
    if unknown:
        raise UsageError(f"--for {spec_text}: unknown option(s) {', '.join(sorted(unknown))}; prompt, style, history")
    chat = bool(spec.style)
    return template_for(spec.options.get("prompt"), chat), chat, spec.int_option("history", HISTORY_LINES)


def _write_pairs(store: Store, run, pools: list[Artifact], split: Artifact, options, writer) -> Artifact:
    by_user: dict[str, list[dict]] = {}
    sources = []  # per pool: its profiles' templates and styles by generator, and their history window
    for index, scores in enumerate(pools):
        profiles = store.get(scores.params["profiles"])
        templates = {label: Template(t["name"], t["text"]) for label, t in profiles.params["templates"].items()}
        chat = {g["label"]: g["chat"] for g in profiles.params["generators"]}
        sources.append((templates, chat, profiles.params["history"]))
        for user, scored in scored_profiles(store, scores).items():
            by_user.setdefault(user, []).extend({**p, "key": (index, *p["key"]), "pool": index} for p in scored)
    users = sorted(by_user)
    windows = {history for _, _, history in sources} | ({writer[2]} if writer else set())
    histories = {window: load_histories(store, split, users, window) for window in windows}
    stated = stated_values(store, split) if options.max_stated_error is not None else None

    def own_prompt(profile: dict, user: str):
        """The prompt a profile was written from, re-rendered and checked against its stored hash."""
        templates, chat, window = sources[profile["pool"]]
        prompt = render(templates[profile["generator"]], histories[window][user], chat[profile["generator"]])
        if prompt_hash(prompt) != profile["prompt_hash"]:
            raise IntegrityError(f"the re-rendered prompt of user {user} does not match the stored prompt hash")
        return prompt

    def writer_name(profile: dict) -> str:
        templates = sources[profile["pool"]][0]
        return f"{profile['generator']} / {templates[profile['generator']].name}"

    rows, outcome = [], {"users_with_pairs": 0, "all_right": 0, "all_wrong": 0, "no_pair_other": 0}
    if options.max_length_ratio is not None:
        outcome["dropped_for_length"] = 0
    if stated is not None:
        outcome["unfaithful_profiles"] = 0
    tokens = {"chosen": [], "rejected": []}
    sides: dict[str, Counter] = {"chosen": Counter(), "rejected": Counter()}
    for user in users:
        scored = sorted(by_user[user], key=lambda p: p["key"])
        if stated is not None:  # the faithfulness check: stated values against the ratings the prompt showed
            for p in scored:
                ratings = [row["rating"] for row in histories[sources[p["pool"]][2]][user]]
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
            sides["chosen"][writer_name(chosen)] += 1
            sides["rejected"][writer_name(rejected)] += 1
            # a pair trains one generator: the prompt its chosen profile was written from, or with --for the trained
            # writer's own; every side's own prompt is checked against its stored hash either way
            prompt = own_prompt(chosen, user)
            if writer is not None:
                own_prompt(rejected, user)
                template, chat, window = writer
                prompt = render(template, histories[window][user], chat)
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
    # pairs of test users are for looking at (the README's chain pairs `gen --users test`); training refuses them
    test_users = len({row["user_id"] for row in rows} - set(train_users(store, split)))
    if test_users:
        log(f"warning: {test_users} test user(s) have pairs; training stages refuse them (train on train users' pairs)")
    with run:
        store.insert_rows(run.artifact, "pairs", rows)
        means = {f"{side}_mean_tokens": round(sum(t) / len(t), 1) if t else None for side, t in tokens.items()}
        chosen, rejected = means["chosen_mean_tokens"], means["rejected_mean_tokens"]
        ratio = round(chosen / rejected, 3) if rejected else None  # no pairs, or only empty rejected profiles
        shares = {f"{side}_by_writer": dict(sorted(counts.items())) for side, counts in sides.items()}
        report = {"outcome": outcome, **means, "length_ratio": ratio, **shares, "test_users": test_users}
        return run.finish(counts={"users": len(users), **outcome}, report=report)


def write_jsonl(store: Store, pairs: Artifact, path: Path) -> int:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    records = preference_records(store, pairs)
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(records)
