"""Stage `sft`: supervised fine-tuning of the profile generator on the best profile each train user has in a pool of
scored profiles (best-of-n distillation), with TRL; writes an adapter artifact.

The pool is one or more scores artifacts (one per profiles artifact: several writers, several prompts, all judged
by the same predictor on the same split). For each train user the stage takes the highest-scored profile (its mean
P(true label) over the user's targets, as `pair` ranks them) that
  - holds a profile (never an empty or degenerate one),
  - with --max-stated-error E, states values whose mean lies within E of the history it was written from,
  - with --min-titles-found S, names titles of which at least the share S are in that history,
  - with --min-gain G, beats the user's own score without a profile (--no-profile-scores) by at least G.
Each example is the trained writer's own generation prompt for the user (gen's completion prompt `--prompt`,
default broad, rendered from the split), whichever writer and prompt wrote the profile, and the profile as its
completion, ended by the blank line at which gen stops. The loss is on the profile only. This is the warm start a small
writer needs before preference training (docs/method.md, "Where the paper's pairs came from"); `dpo --base
export:NAME` continues from its export.

The options are training/options.py's SFTOptions; the TRL side is training/sft_trainer.py; everything every
training stage does alike (base model, checkpoints, --resume, ranks, the adapter's files and report) is
training/common.py's.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from lettingo_cli.errors import LettingoError, UsageError, require
from lettingo_cli.options import stable_key
from lettingo_cli.scored import no_profile_scores, pool_split, scored_profiles
from lettingo_cli.split_data import load_histories
from lettingo_cli.stated import TITLE_MATCH, stated_values, titles_found
from lettingo_cli.store import Artifact, Store, Verbs
from lettingo_cli.training.common import (
    length_limit,
    refuse_test_users,
    train_adapter,
)
from lettingo_cli.training.data import generation_prompts
from lettingo_cli.training.options import SFTOptions

VERBS = Verbs("train", "trained")
METHOD = "SFT on each train user's best-scored profile of a pool of writers (best-of-n distillation)"
# options that change how fast or how often, never what is trained: not part of the run key
SPEED_ONLY = ("save_steps", "completion_only_head")
# options added later, with their defaults (options.stable_key); title_match: the title matcher's version
# (stated.TITLE_MATCH), recorded where a title check chooses the examples
LATER_OPTIONS = {"min_titles_named": None, "title_match": 1}
PROFILE_END = "\n\n"  # gen's first stop sequence: a profile ends with a blank line


def choose_profiles(
    store: Store, pools: list[Artifact], split: Artifact, options: SFTOptions, baseline: dict[str, float] | None
) -> tuple[dict[str, dict], dict]:
    """Each user's best profile in the pool that passes the checks ({user: profile, with its `pool`}), and what the
    checks turned away (`outcome`); a pool with test users is refused."""
    stated = stated_values(store, split) if options.max_stated_error is not None else None
    outcome = Counter({"profiles": 0, "empty_or_degenerate": 0})
    candidates: dict[str, list[dict]] = {}
    users: set[str] = set()
    scored_pools = [(scores, scored_profiles(store, scores)) for scores in pools]
    for _, by_user in scored_pools:
        users |= set(by_user)
    refs = ", ".join(scores.ref for scores in pools)
    refuse_test_users(store, split, users, f"the pool {refs}")  # before any profile is judged
    for scores, by_user in scored_pools:
        profiles = store.get(scores.params["profiles"])
        histories = load_histories(store, split, list(by_user), profiles.params["history"])
        for user, scored in by_user.items():
            for profile in scored:
                outcome["profiles"] += 1
                reason = _turned_away(profile, histories[user], stated, options, baseline, user)
                if reason is not None:
                    outcome[reason] += 1
                else:
                    candidates.setdefault(user, []).append({**profile, "pool": scores.ref})
    chosen = {
        user: max(found, key=lambda p: (p["score"], p["pool"], p["key"])) for user, found in sorted(candidates.items())
    }
    outcome["users"], outcome["users_without_a_profile"] = len(users), len(users) - len(chosen)
    return chosen, dict(outcome)


def _turned_away(profile: dict, history: list[dict], stated, options: SFTOptions, baseline, user: str) -> str | None:
    """Why a profile may not be taken, or None."""
    if profile["flagged"]:
        return "empty_or_degenerate"
    if stated is not None:
        error = stated.level_error(profile["text"], [row["rating"] for row in history])
        if error is not None and error > options.max_stated_error:
            return "unfaithful_values"
    if options.min_titles_found is not None or options.min_titles_named is not None:
        found, named = titles_found(profile["text"], history)
        if options.min_titles_found is not None and named and found / named < options.min_titles_found:
            return "invented_titles"
        if options.min_titles_named is not None and found < options.min_titles_named:
            return "too_few_titles"
    if baseline is not None and options.min_gain is not None:
        if user not in baseline:
            raise UsageError(f"--no-profile-scores has no score of user {user}: score the same users without a profile")
        if profile["score"] - baseline[user] < options.min_gain:
            return "below_min_gain"
    return None


def run_params(pools: list[Artifact], no_profile: Artifact | None, base: Path, options: SFTOptions) -> dict:
    """The run's params: the pool, the base, the options that change what is trained, and the title matcher's
    version where a title check chooses the examples (a better matcher takes other examples: a new run)."""
    params = {
        "pools": [scores.id for scores in pools],
        "no_profile_scores": no_profile.id if no_profile else None,
        "base": str(base),
        **{k: v for k, v in asdict(options).items() if k not in SPEED_ONLY},
    }
    if options.min_titles_found is not None or options.min_titles_named is not None:
        params["title_match"] = TITLE_MATCH
    return params


def train_sft(
    store: Store,
    pools: list[Artifact],
    base: Path,
    options: SFTOptions,
    name: str,
    no_profile: Artifact | None = None,
    force: bool = False,
    resume: bool = False,
    allow_model_free: bool = False,
) -> Artifact | None:
    """Train and record the adapter; returns it, or None on a worker rank of a multi-process launch. Profiles of a
    model-free writer are taken only with `allow_model_free` (see pool_split)."""
    split = pool_split(store, pools, allow_model_free)
    refs = ", ".join(scores.ref for scores in pools)
    if options.min_gain is not None and no_profile is None:
        raise UsageError("--min-gain compares with each user's score without a profile: give --no-profile-scores")
    baseline = no_profile_scores(store, no_profile, split) if no_profile is not None else None
    chosen, outcome = choose_profiles(store, pools, split, options, baseline)
    if not chosen:
        raise LettingoError(f"no profile of the pool {refs} passes the checks: nothing to train on ({outcome})")
    prompts = generation_prompts(store, split, sorted(chosen), options.history, options.prompt)
    records = [
        {"prompt": entry["prompt"], "completion": " " + chosen[entry["user_id"]]["text"] + PROFILE_END}
        for entry in prompts
    ]
    transformers = require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    options = replace(options, max_length=length_limit(records, tokenizer, options.max_length, refs))
    params = run_params(pools, no_profile, base, options)
    inputs = {"pools": [s.id for s in pools], **({"no_profile_scores": no_profile.id} if no_profile else {})}
    key = stable_key(params, LATER_OPTIONS, name)
    run = store.stage("sft", "adapter", name, params, inputs, key_params=key, force=force, resumable=True, verbs=VERBS)
    if run.cached:
        return run.cached

    def train(artifact: Artifact | None, work: Path, output: Path, checkpoint: Path | None) -> int:
        from lettingo_cli.training.sft_trainer import train

        return train(store, artifact, records, base, tokenizer, options, work, output, checkpoint)

    def summary(steps: int, seconds: float) -> tuple[dict, dict, dict]:
        taken = [chosen[entry["user_id"]] for entry in prompts]
        report = {
            "outcome": outcome,
            "chosen_by_generator": dict(sorted(Counter(p["generator"] for p in taken).items())),
            "chosen_by_pool": dict(sorted(Counter(p["pool"] for p in taken).items())),
            "chosen_mean_score": round(statistics.fmean(p["score"] for p in taken), 4),
            "chosen_mean_tokens": round(statistics.fmean(p["tokens"] for p in taken), 1),
        }
        stats = {"seconds": round(seconds, 1), "steps": steps, "seconds_per_step": round(seconds / max(steps, 1), 2)}
        return {"examples": len(records), "steps": steps}, stats, report

    provenance = {
        "lettingo.pool.refs": ",".join(scores.ref for scores in pools),
        "lettingo.pool.hashes": ",".join(scores.content_hash or "" for scores in pools),
    }
    return train_adapter(store, run, train, prompts, METHOD, provenance, summary, resume)
