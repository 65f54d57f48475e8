"""The TRL side of stage `sft`: TRL's SFTTrainer with a PEFT LoRA (every trainer's) on prompt-completion examples,
the loss on the completion (the profile) only, and the LM head on those tokens only (trainer.py's, as dpo's).
Imported only to train: it loads torch, transformers, PEFT, datasets and TRL on import."""

from __future__ import annotations

from pathlib import Path

from lettingo_cli.console import stage_progress
from lettingo_cli.errors import require
from lettingo_cli.store import Artifact, Store
from lettingo_cli.training.common import CHECKPOINTS
from lettingo_cli.training.options import SFTOptions
from lettingo_cli.training.trainer import (
    Progress,
    StepsToStore,
    config_arguments,
    lm_head_on_labelled_tokens,
    model_and_lora,
    run_trainer,
    total_steps,
)

# the figures of SFT's step log, each from its key in TRL's logs
METRICS = {"mean_token_accuracy": "mean_token_accuracy", "entropy": "entropy", "num_tokens": "num_tokens"}


def train(
    store: Store,
    artifact: Artifact | None,
    records: list[dict],
    base: Path,
    tokenizer,
    options: SFTOptions,
    work: Path,
    output: Path,
    checkpoint: Path | None,
) -> int:
    """TRL SFTTrainer with a PEFT LoRA config; returns the number of optimizer steps. `artifact` None: a worker
    rank, which records nothing."""
    datasets = require("datasets")
    trl = require("trl")

    model, lora = model_and_lora(base, tokenizer, options)
    config = trl.SFTConfig(
        **config_arguments(options, work, options.lr, options.save_steps),
        per_device_train_batch_size=options.batch_size,
        max_length=options.max_length,
        completion_only_loss=True,  # the prompt (the user's ratings) is given, never learned
        gradient_checkpointing=False,  # TRL's default; a 270M model does not need it
    )
    total = total_steps(options, -(-len(records) // options.batch_size))
    with (
        stage_progress(f"sft {len(records)} profiles", total, "steps") as advance,
        lm_head_on_labelled_tokens(options.completion_only_head),
    ):
        trainer = trl.SFTTrainer(
            model=model,
            args=config,
            train_dataset=datasets.Dataset.from_list(records),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[StepsToStore(store, artifact, CHECKPOINTS, METRICS), Progress(advance)],
        )
        return run_trainer(trainer, options.precision, checkpoint, output if artifact is not None else None)
