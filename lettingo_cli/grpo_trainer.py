"""The TRL side of stage `grpo`: TRL's GRPOTrainer with a PEFT LoRA (dpo's targets), its step log, and sampling
that stops where gen's does. Imported only to train: it loads torch, transformers, PEFT, datasets and TRL."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from lettingo_cli.console import stage_progress
from lettingo_cli.digest import canonical_json
from lettingo_cli.dpo import CHECKPOINTS
from lettingo_cli.dpo_trainer import Progress, StepsToStore, lora_config, run_trainer, transformers
from lettingo_cli.errors import require
from lettingo_cli.prompts import COMPLETION_STOPS
from lettingo_cli.store import Artifact, Store

if TYPE_CHECKING:
    from lettingo_cli.grpo import GRPOOptions, ProfileReward


class GRPOStepsToStore(StepsToStore):
    """Every logged step into the store's grpo_steps table (and checkpoints into the pending adapter, as dpo's)."""

    def step_row(self, logs: dict, state) -> dict:
        return {
            "step": state.global_step,
            "epoch": logs.get("epoch"),
            "loss": logs.get("loss"),
            "reward": logs.get("reward"),
            "reward_std": logs.get("reward_std"),
            "kl": logs.get("kl"),
            "completion_length": logs.get("completions/mean_length"),
            "logged": canonical_json(logs),
        }

    def record(self, row: dict) -> None:
        self.store.record_grpo_step(self.artifact.run_id, row)


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
    reward: ProfileReward,
    work: Path,
    output: Path,
    checkpoint: Path | None,
    main_process: bool,
) -> int:
    """TRL GRPOTrainer with a PEFT LoRA config; returns the number of optimizer steps. `artifact` None: a worker
    rank, which records nothing."""
    torch = require("torch")
    peft = require("peft")
    datasets = require("datasets")
    trl = require("trl")

    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = lora_config(peft, model, base, options.lora_r, options.lora_alpha)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = options.prompts_per_step * options.generations  # completions per optimizer step
    config = trl.GRPOConfig(
        output_dir=str(work / "trainer"),
        learning_rate=options.lr,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=batch,
        num_generations=options.generations,
        max_completion_length=options.max_tokens,
        temperature=options.temperature,
        top_p=1.0,
        top_k=0,
        beta=options.beta,
        logging_steps=1,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=1,
        report_to=[],
        seed=options.seed,
        bf16=options.precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        use_vllm=options.vllm,
        vllm_mode="colocate",
    )
    per_epoch = math.ceil(len(records) / options.prompts_per_step)
    total = options.max_steps if options.max_steps > 0 else math.ceil(per_epoch * options.epochs)
    with stage_progress(f"grpo {len(records)} prompts x {options.generations}", total, "steps") as advance:
        trainer = _stopping_trainer(trl)(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=datasets.Dataset.from_list(records),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[GRPOStepsToStore(store, artifact, CHECKPOINTS), Progress(advance)],
        )
        sampling = f"{'vLLM' if options.vllm else 'transformers'} sampling"
        return run_trainer(trainer, options.precision, checkpoint, output if artifact is not None else None, sampling)
