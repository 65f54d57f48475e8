"""The options of every stage that trains the profile generator, declared once: what all LoRA training shares
(`TrainingOptions`) and what each trainer adds. They live below the trainers and the stages, which both read them."""

from __future__ import annotations

from dataclasses import dataclass

from lettingo_cli.errors import UsageError
from lettingo_cli.options import option
from lettingo_cli.prompts import HISTORY_LINES

PRECISIONS = ("bf16", "fp32")


@dataclass(frozen=True)
class TrainingOptions:
    """What every LoRA training of the generator takes (each field is also its flag and a key of its --config)."""

    epochs: float = option(1.0, "Epochs over the training data.")
    max_steps: int = option(-1, "Stop after this many steps (-1: all epochs).")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA alpha.")
    seed: int = option(0, "Training seed (and sampling seed, where the stage samples).")
    # bf16 matrix work runs ~6x faster than fp32 on these CPUs (docs/pitfalls.md)
    precision: str = option("bf16", "bf16 (default; faster on CPUs with bf16 units) or fp32.")

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lora_r < 1:
            raise UsageError("--epochs and --lora-r must be positive")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be {' or '.join(PRECISIONS)}")

    def check_schedule(self, lr: float, save_steps: int) -> None:
        """The checks of the two options each trainer declares with its own default."""
        if lr <= 0:
            raise UsageError("--lr must be positive")
        if save_steps < 1:
            raise UsageError("--save-steps must be >= 1")


@dataclass(frozen=True)
class DPOOptions(TrainingOptions):
    """The options of `lettingo dpo`."""

    beta: float = option(0.1, "DPO beta.")
    lr: float = option(5e-5, "Learning rate.")
    max_length: int | None = option(
        None, "Most tokens of prompt + profile (default: the longest pair's, rounded up to a multiple of 64)."
    )
    batch_size: int = option(2, "Pairs per optimizer step.")
    save_steps: int = option(50, "Store a checkpoint (adapter, optimizer, scheduler, RNG) every N steps.")
    precompute_ref: bool = option(
        True, "Reference log-probs once, before training (not at every step).", "--precompute-ref/--no-precompute-ref"
    )
    profile_only_head: bool = option(
        True,
        "LM head only on the profile tokens (default), or on every position as TRL does on CPUs.",
        "--profile-only-head/--full-head",
    )
    # LD-DPO (arXiv 2409.06411, TRL's ld_alpha): the tokens of the longer profile beyond the shorter one's length
    # count with this weight in the log-probs DPO compares; 1.0 is plain DPO
    ld_alpha: float = option(
        1.0, "Length desensitization: weight of the longer profile's excess tokens (1.0: plain DPO)."
    )
    # An NLL term on the chosen profile (TRL's loss_type ["sigmoid", "sft"], the Iterative RPO recipe): with off-policy
    # pairs DPO alone tends to push both sides' log-probs down; this keeps the chosen side likely
    sft_weight: float = option(0.0, "Weight of an NLL term on the chosen profile beside DPO's loss (0: plain DPO).")
    # TRL's DPOConfig turns it on: every backward pass recomputes the forward, which a 270M model does not need
    gradient_checkpointing: bool = option(
        False,
        "Recompute activations in the backward pass: less memory, more time (TRL's own default is on).",
        "--gradient-checkpointing/--no-gradient-checkpointing",
    )
    # TRL reads a pair's prompt twice (prompt + chosen, prompt + rejected); training/shared_prompt.py packs the
    # pair into one row, so the prompt, most of a pair's tokens, goes through the model once
    shared_prompt: bool = option(
        True,
        "Read each pair's prompt once, in one packed pass over prompt + chosen + rejected (TRL reads it twice).",
        "--shared-prompt/--no-shared-prompt",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_schedule(self.lr, self.save_steps)
        if self.beta <= 0 or self.batch_size < 1:
            raise UsageError("--beta and --batch-size must be positive")
        if not 0 <= self.ld_alpha <= 1:
            raise UsageError("--ld-alpha must be between 0 and 1 (1: plain DPO)")
        if self.sft_weight < 0:
            raise UsageError("--sft-weight must be >= 0 (0: plain DPO)")
        if self.max_length is not None and self.max_length < 2:
            raise UsageError("--max-length must be >= 2")


@dataclass(frozen=True)
class GRPOOptions(TrainingOptions):
    """The options of `lettingo grpo`."""

    users: str = option("train", "The train users whose generation prompts it trains on: train or train:N.")
    predictor: str | None = option(
        None, "The frozen judge of the sampled profiles (default: the split's, as score: reader:bow on --recent 0)."
    )
    targets: int = option(4, "Held-out targets of each user a sampled profile is judged on.")
    generations: int = option(4, "Profiles sampled per prompt: the group GRPO compares.")
    prompts_per_step: int = option(1, "Prompts per optimizer step, each with --generations profiles.")
    max_tokens: int = option(120, "Most new tokens per sampled profile.")
    temperature: float = option(1.0, "Sampling temperature.")
    history: int = option(HISTORY_LINES, "Most profile-history interactions per prompt (as gen's --history).")
    beta: float = option(0.0, "KL coefficient to the base model (0, TRL's default: no reference pass).")
    lr: float = option(1e-5, "Learning rate.")
    save_steps: int = option(10, "Store a checkpoint (adapter, optimizer, scheduler, RNG) every N steps.")
    flagged_reward: float = option(
        -1.0, "Reward of a sample that holds no profile (empty or degenerate), as the released code's -1."
    )
    vllm: bool = option(
        False, "Sample with TRL's vLLM engine inside the training process (GPUs; needs vllm).", "--vllm/--no-vllm"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_schedule(self.lr, self.save_steps)
        if min(self.targets, self.generations, self.prompts_per_step, self.max_tokens, self.history) < 1:
            raise UsageError("--targets, --generations, --prompts-per-step, --max-tokens and --history must be >= 1")
        if self.generations < 2:
            raise UsageError("--generations must be >= 2: GRPO compares each profile with its group")
        if self.beta < 0 or self.temperature <= 0:
            raise UsageError("--temperature must be positive and --beta >= 0")


@dataclass(frozen=True)
class SFTOptions(TrainingOptions):
    """The options of `lettingo sft`."""

    lr: float = option(2e-4, "Learning rate.")
    batch_size: int = option(4, "Profiles per optimizer step.")
    max_length: int | None = option(
        None, "Most tokens of prompt + profile (default: the longest example's, rounded up to a multiple of 64)."
    )
    save_steps: int = option(50, "Store a checkpoint (adapter, optimizer, scheduler, RNG) every N steps.")
    history: int = option(HISTORY_LINES, "Most profile-history interactions per prompt (the trained writer's own).")
    prompt: str = option(
        "broad",
        "The trained writer's own prompt, as gen's --prompt: broad | levels | genres | recent | a template file.",
    )
    min_gain: float | None = option(
        None,
        "Keep a user's best profile only if its score beats the user's score without a profile by at least this "
        "(needs --no-profile-scores).",
    )
    max_stated_error: float | None = option(
        None,
        'Never take a profile whose stated values ("4/5") average more than this away from the mean of the history '
        "it was written from (as pair's).",
    )
    min_titles_found: float | None = option(
        None, "Never take a profile unless at least this share of the titles it names are in the user's history."
    )
    min_titles_named: int | None = option(
        None,
        "Never take a profile naming fewer than this many titles of the user's history (a profile naming no title "
        "passes --min-titles-found; this asks for ones that show the history).",
    )
    completion_only_head: bool = option(
        True,
        "LM head only on the profile tokens (default), or on every position as TRL does on CPUs.",
        "--completion-only-head/--full-head",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_schedule(self.lr, self.save_steps)
        if self.batch_size < 1 or self.history < 1:
            raise UsageError("--batch-size and --history must be >= 1")
        if self.max_length is not None and self.max_length < 2:
            raise UsageError("--max-length must be >= 2")
        if self.max_stated_error is not None and self.max_stated_error < 0:
            raise UsageError("--max-stated-error must be >= 0")
        if self.min_titles_found is not None and not 0 <= self.min_titles_found <= 1:
            raise UsageError("--min-titles-found must be a share between 0 and 1")
        if self.min_titles_named is not None and self.min_titles_named < 1:
            raise UsageError("--min-titles-named must be >= 1")
