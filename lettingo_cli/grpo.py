"""Stage `grpo`: online alignment of the profile generator, LettinGo's released variant (GRPO); writes an adapter.

Where `dpo` learns offline from pairs of stored profiles (gen -> score -> pair -> dpo), `grpo` samples profiles
during training and rewards each one at once: the generator writes `--generations` profiles for a train user's
generation prompt (gen's template and history window), the frozen predictor judges each on that user's held-out
targets, and GRPO moves the generator towards the profiles that scored above their group's mean. The predictor is
loaded once and never trained.

The reward of a sampled profile is its mean P(true label) over the user's K targets, the score `pair` ranks
profiles by. A sample that holds no profile (gen's `empty` or `degenerate` flags) gets `--flagged-reward`, -1 as in
the released code. (The released code's rating reward, 1 - |predicted - true rating| / 4, needs a predictor that
gives an expected rating; lettingo's predictors give P(like / neutral / dislike), so the reward is P(true label).)

The options are training/options.py's GRPOOptions; everything TRL-specific is in training/grpo_trainer.py (imported
only to train). Every logged step goes into the store's training log; checkpoints, `--resume` and `accelerate
launch` work as in every training stage (training/common.py), and `export` takes the adapter as it takes any.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path

from lettingo_cli.backends.base import cut_at_stop
from lettingo_cli.errors import LettingoError, UsageError, require
from lettingo_cli.profiles import UNUSABLE_FLAGS, clean_profile, profile_flags
from lettingo_cli.prompts import COMPLETION_STOPS
from lettingo_cli.split_data import load_recent_and_targets, select_users
from lettingo_cli.store import Artifact, Store, Verbs
from lettingo_cli.training.common import (
    refuse_test_users,
    refuse_unresumed,
    train_adapter,
)
from lettingo_cli.training.data import generation_prompts
from lettingo_cli.training.options import GRPOOptions

VERBS = Verbs("train", "trained")
METHOD = "GRPO, online: the predictor rewarding each sampled profile"
# options that change how fast or how often, never what is trained: not part of the run key
SPEED_ONLY = ("save_steps",)


class ProfileReward:
    """The reward function GRPO calls with a batch of sampled profiles (TRL passes the dataset's `user_id` column):
    the frozen predictor's mean P(true label) over the user's targets, `flagged` for a text with no profile."""

    __name__ = "profile_reward"  # TRL names the reward in its logs after the function

    def __init__(self, predictor, recent: dict, targets: dict, flagged: float):
        self.predictor, self.recent, self.targets, self.flagged = predictor, recent, targets, flagged
        self.judged = 0  # profiles the predictor judged (each on all of its user's targets)

    def profile_rewards(self, users: list[str], texts: list[str]) -> tuple[list[float], int]:
        """(reward per text, how many held no profile)."""
        rewards: list[float] = [self.flagged] * len(texts)
        by_user: dict[str, list[tuple[int, str]]] = {}
        flagged = 0
        for index, (user, text) in enumerate(zip(users, texts, strict=True)):
            profile = clean_profile(cut_at_stop(text, COMPLETION_STOPS)[0])  # where gen's sampling stops
            if set(profile_flags(profile, True)) & set(UNUSABLE_FLAGS):
                flagged += 1
            else:
                by_user.setdefault(user, []).append((index, profile))
        for user, entries in by_user.items():
            targets = self.targets[user]
            answers = self.predictor.predict(user, self.recent[user], targets, [p for _, p in entries])
            for column, (index, _) in enumerate(entries):
                rewards[index] = statistics.fmean(
                    answers[t][column][target.sentiment] for t, target in enumerate(targets)
                )
            self.judged += len(entries)
        return rewards, flagged

    def __call__(self, prompts, completions, user_id, log_metric=None, **_) -> list[float]:
        rewards, flagged = self.profile_rewards(list(user_id), list(completions))
        if log_metric is not None:
            log_metric("flagged", flagged / len(rewards))
        return rewards


def train_grpo(
    store: Store,
    split: Artifact,
    base: Path,
    options: GRPOOptions,
    name: str,
    force: bool = False,
    resume: bool = False,
) -> Artifact | None:
    """Train and record the adapter; returns it, or None on a worker rank of a multi-process launch."""
    from lettingo_cli.predictors import default_predictor, make_predictor

    users = select_users(store, split, options.users)
    refuse_test_users(store, split, users, f"--users {options.users}")
    if options.targets > split.params["targets"]:
        raise UsageError(f"--targets {options.targets}: {split.ref} holds out {split.params['targets']} per user")
    spec = options.predictor or default_predictor(split)
    records = generation_prompts(store, split, users, options.history)
    if not records:
        raise LettingoError(f"no selected user of {split.ref} has a profile history to write a profile from")
    transformers = require("transformers")
    require("trl")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    params = {
        "split": split.id,
        "base": str(base),
        **{k: v for k, v in asdict(options).items() if k not in SPEED_ONLY},
        "predictor": spec,
        "users": [r["user_id"] for r in records],
    }
    run = store.stage("grpo", "adapter", name, params, {"split": split.id}, force=force, resumable=True, verbs=VERBS)
    if run.cached:
        return run.cached
    refuse_unresumed(run, resume)
    predictor = make_predictor(spec, store, split)  # loaded once, frozen
    try:
        recent, targets = load_recent_and_targets(store, split, [r["user_id"] for r in records], options.targets)
        reward = ProfileReward(predictor, recent, targets, options.flagged_reward)

        def train(artifact: Artifact | None, work: Path, output: Path, checkpoint: Path | None) -> int:
            from lettingo_cli.training.grpo_trainer import train

            return train(store, artifact, records, base, tokenizer, options, reward, work, output, checkpoint)

        def summary(steps: int, seconds: float) -> tuple[dict, dict, dict]:
            logged = store.training_steps(run.artifact.run_id)
            stats = {
                "seconds": round(seconds, 1),
                "profiles_judged": reward.judged,  # by this process (a resumed run counts its own)
                "seconds_per_step": round(seconds / max(steps, 1), 1),
            }
            report = {
                "judge": predictor.name,
                "first_reward": logged[0]["reward"] if logged else None,
                "last_reward": logged[-1]["reward"] if logged else None,
            }
            return {"prompts": len(records), "steps": steps}, stats, report

        provenance = {"lettingo.split.ref": split.ref, "lettingo.split.hash": split.content_hash or "",
                      "lettingo.grpo.predictor": spec}  # fmt: skip
        return train_adapter(store, run, train, records, METHOD, provenance, summary, resume)
    finally:
        predictor.close()
