"""The TRL side of stage `grpo`: TRL's GRPOTrainer with a PEFT LoRA (every trainer's), its step log, and sampling
that stops where gen's does. Imported only to train: it loads torch, transformers, PEFT, datasets and TRL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lettingo_cli.console import stage_progress
from lettingo_cli.errors import require
from lettingo_cli.prompts import COMPLETION_STOPS
from lettingo_cli.store import Artifact, Store
from lettingo_cli.training.common import CHECKPOINTS
from lettingo_cli.training.options import GRPOOptions
from lettingo_cli.training.trainer import (
    Progress,
    StepsToStore,
    config_arguments,
    model_and_lora,
    run_trainer,
    total_steps,
)

# the figures of GRPO's step log, each from its key in TRL's logs
METRICS = {
    "reward": "reward",  # mean reward of the step's sampled profiles
    "reward_std": "reward_std",  # their spread
    "kl": "kl",  # KL to the base model (logged when beta > 0)
    "completion_length": "completions/mean_length",  # mean tokens of the sampled profiles
}


def stop_index(tokenizer, ids: list[int]) -> int:
    """How many of a completion's tokens to keep: up to and including the token that completes gen's first stop
    sequence (all of them when none occurs), as llama.cpp's sampling stops in gen."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    if not any(stop in text for stop in COMPLETION_STOPS):
        return len(ids)
    for end in range(1, len(ids) + 1):
        prefix = tokenizer.decode(ids[:end], skip_special_tokens=False)
        if any(stop in prefix for stop in COMPLETION_STOPS):
            return end
    return len(ids)


def _stopping_trainer(trl):
    """TRL's GRPOTrainer whose sampled completions end at gen's stop sequences: the tokens after a stop are
    dropped before the reward and the loss (TRL 1.16 stops only at EOS; `_generate_single_turn` is where it
    masks after EOS on the transformers path)."""

    class StoppingGRPOTrainer(trl.GRPOTrainer):
        def _generate_single_turn(self, *args, **kwargs):
            completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            kept = [stop_index(self.processing_class, ids) for ids in completion_ids]
            completion_ids = [ids[:n] for ids, n in zip(completion_ids, kept, strict=True)]
            if logprobs is not None:  # vLLM's sampling log-probs, one per token
                logprobs = [lp[:n] for lp, n in zip(logprobs, kept, strict=True)]
            return completion_ids, logprobs

    return StoppingGRPOTrainer


def train(
    store: Store,
    artifact: Artifact | None,
    records: list[dict],
    base: Path,
    tokenizer,
    options: GRPOOptions,
    reward: Callable[..., list[float]],
    work: Path,
    output: Path,
    checkpoint: Path | None,
) -> int:
    """TRL GRPOTrainer with a PEFT LoRA config; returns the number of optimizer steps. `artifact` None: a worker
    rank, which records nothing. `reward`: TRL's reward function (the stage's ProfileReward)."""
    datasets = require("datasets")
    trl = require("trl")

    model, lora = model_and_lora(base, tokenizer, options)
    config = trl.GRPOConfig(
        **config_arguments(options, work, options.lr, options.save_steps),
        per_device_train_batch_size=options.prompts_per_step * options.generations,  # completions per step
        num_generations=options.generations,
        max_completion_length=options.max_tokens,
        temperature=options.temperature,
        top_p=1.0,
        top_k=0,
        beta=options.beta,
        use_vllm=options.vllm,
        vllm_mode="colocate",
    )
    total = total_steps(options, -(-len(records) // options.prompts_per_step))
    with stage_progress(f"grpo {len(records)} prompts x {options.generations}", total, "steps") as advance:
        trainer = _stopping_trainer(trl)(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=datasets.Dataset.from_list(records),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[StepsToStore(store, artifact, CHECKPOINTS, METRICS), Progress(advance)],
        )
        sampling = f"{'vLLM' if options.vllm else 'transformers'} sampling"
        return run_trainer(trainer, options.precision, checkpoint, output if artifact is not None else None, sampling)
