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

Everything TRL-specific is in grpo_trainer.py (imported only to train). Every logged step goes into the store's
`grpo_steps` table; checkpoints, `--resume` and `accelerate launch` work as in `dpo`, and `export` takes the
adapter as it takes a DPO one.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lettingo_cli.dpo import CHECKPOINTS, is_main_process, latest_checkpoint, resume_point
from lettingo_cli.errors import LettingoError, UsageError, require
from lettingo_cli.gen import clean_profile, profile_flags
from lettingo_cli.options import option
from lettingo_cli.prompts import COMPLETION_STOPS, builtin_template, render
from lettingo_cli.split import load_histories, load_recent_and_targets, select_users, train_users
from lettingo_cli.store import Artifact, Store

# options that change how fast or how often, never what is trained: not part of the run key
SPEED_ONLY = ("save_steps",)
FLAGS_WITHOUT_PROFILE = ("empty", "degenerate")  # gen's flags of a text that holds no profile


@dataclass(frozen=True)
class GRPOOptions:
    """The training options of `lettingo grpo` (each field is also its flag and a key of its --config YAML)."""

    users: str = option("train", "The train users whose generation prompts it trains on: train or train:N.")
    predictor: str | None = option(
        None, "The frozen judge of the sampled profiles (default: the split's, as score: reader:bow on --recent 0)."
    )
    targets: int = option(4, "Held-out targets of each user a sampled profile is judged on.")
    generations: int = option(4, "Profiles sampled per prompt: the group GRPO compares.")
    prompts_per_step: int = option(1, "Prompts per optimizer step, each with --generations profiles.")
    max_tokens: int = option(120, "Most new tokens per sampled profile.")
    temperature: float = option(1.0, "Sampling temperature.")
    history: int = option(30, "Most profile-history interactions per prompt (as gen's --history).")
    beta: float = option(0.0, "KL coefficient to the base model (0, TRL's default: no reference pass).")
    lr: float = option(1e-5, "Learning rate.")
    epochs: float = option(1.0, "Epochs over the prompts.")
    max_steps: int = option(-1, "Stop after this many steps (-1: all epochs).")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA alpha.")
    seed: int = option(0, "Training and sampling seed.")
    save_steps: int = option(10, "Store a checkpoint (adapter, optimizer, scheduler, RNG) every N steps.")
    precision: str = option("bf16", "bf16 (default; faster on CPUs with bf16 units) or fp32.")
    flagged_reward: float = option(
        -1.0, "Reward of a sample that holds no profile (empty or degenerate), as the released code's -1."
    )
    vllm: bool = option(
        False, "Sample with TRL's vLLM engine inside the training process (GPUs; needs vllm).", "--vllm/--no-vllm"
    )

    def __post_init__(self) -> None:
        if min(self.targets, self.generations, self.prompts_per_step, self.max_tokens, self.history) < 1:
            raise UsageError("--targets, --generations, --prompts-per-step, --max-tokens and --history must be >= 1")
        if self.generations < 2:
            raise UsageError("--generations must be >= 2: GRPO compares each profile with its group")
        if self.lr <= 0 or self.epochs <= 0 or self.lora_r < 1 or self.beta < 0 or self.temperature <= 0:
            raise UsageError("--lr, --epochs, --lora-r and --temperature must be positive and --beta >= 0")
        if self.save_steps < 1:
            raise UsageError("--save-steps must be >= 1")
        if self.precision not in ("bf16", "fp32"):
            raise UsageError("--precision must be bf16 or fp32")


def cut_at_stop(text: str) -> str:
    """The text up to gen's first stop sequence (where gen's sampling would have stopped)."""
    cut = len(text)
    for stop in COMPLETION_STOPS:
        found = text.find(stop)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]


def training_prompts(store: Store, split: Artifact, users: list[str], history: int) -> list[dict]:
    """Each user's generation prompt, as gen renders it for a completion model (the default generator)."""
    template = builtin_template(chat=False)
    histories = load_histories(store, split, users, history)
    return [{"user_id": u, "prompt": render(template, histories[u], False)} for u in users if histories[u]]


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
            profile = clean_profile(cut_at_stop(text))
            if set(profile_flags(profile, True)) & set(FLAGS_WITHOUT_PROFILE):
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
    train = set(train_users(store, split))
    if any(u not in train for u in users):
        raise UsageError(f"--users {options.users}: grpo trains on train users only (test users are for eval)")
    if options.targets > split.params["targets"]:
        raise UsageError(f"--targets {options.targets}: {split.ref} holds out {split.params['targets']} per user")
    spec = options.predictor or default_predictor(split)
    records = training_prompts(store, split, users, options.history)
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
    run = store.stage("grpo", "adapter", name, params, {"split": split.id}, force=force, resumable=True)
    if run.cached:
        return run.cached
    if run.pending is not None and not resume and is_main_process():
        raise LettingoError(
            "an interrupted run of this training is in the store: add --resume to continue it, or --force to start over"
        )
    predictor = make_predictor(spec, store, split)  # loaded once, frozen
    try:
        recent, targets = load_recent_and_targets(store, split, [r["user_id"] for r in records], options.targets)
        reward = ProfileReward(predictor, recent, targets, options.flagged_reward)
        if not is_main_process():  # under `accelerate launch`: only rank 0 writes to the store
            _train_on_worker_rank(store, run.pending if resume else None, records, base, tokenizer, options, reward)
            return None
        return _train(store, run, records, base, tokenizer, options, reward, resume, predictor.label)
    finally:
        predictor.close()


def _train(store, run, records, base, tokenizer, options, reward, resume, judge) -> Artifact:
    from lettingo_cli.grpo_trainer import train

    started = time.perf_counter()
    with run, tempfile.TemporaryDirectory(dir=store.path.parent) as work:
        work = Path(work)
        checkpoint = resume_point(store, run.artifact, work) if resume else None
        output = work / "adapter"
        steps = train(store, run.artifact, records, base, tokenizer, options, reward, work, output, checkpoint, True)
        logged = store.grpo_steps(run.artifact.run_id)
        with store.transaction():
            store.remove_files(run.artifact, CHECKPOINTS)
            store.add_dir(run.artifact, output)
            seconds = time.perf_counter() - started
            stats = {
                "seconds": round(seconds, 1),
                "profiles_judged": reward.judged,  # by this process (a resumed run counts its own)
                "seconds_per_step": round(seconds / max(steps, 1), 1),
            }
            report = {
                "judge": judge,
                "first_reward": logged[0]["reward"] if logged else None,
                "last_reward": logged[-1]["reward"] if logged else None,
            }
            counts = {"prompts": len(records), "steps": steps}
            return run.finish(counts=counts, stats=stats, report=report)


def _train_on_worker_rank(store, pending, records, base, tokenizer, options, reward) -> None:
    """A rank > 0 samples, rewards and trains its share of every batch and writes nothing."""
    from lettingo_cli.grpo_trainer import train

    with tempfile.TemporaryDirectory(dir=store.path.parent) as work:
        work = Path(work)
        checkpoint = latest_checkpoint(store, pending, work / "resume") if pending is not None else None
        train(store, None, records, base, tokenizer, options, reward, work, work / "adapter", checkpoint, False)


def training_steps(store: Store, adapter: Artifact) -> list[dict]:
    """The logged steps of the grpo run that made an adapter."""
    return store.grpo_steps(adapter.run_id) if adapter.run_id is not None else []
