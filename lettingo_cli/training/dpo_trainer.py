"""The TRL side of stage `dpo`: TRL's DPOTrainer with a PEFT LoRA, and the two speed-ups lettingo adds (the LM head
on the profile tokens only, trainer.py's; the shared prompt read once). Imported only to train: it loads torch,
transformers, PEFT, datasets and TRL on import."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from lettingo_cli.console import log, stage_progress
from lettingo_cli.errors import LettingoError, require
from lettingo_cli.store import Artifact, Store
from lettingo_cli.store.digest import canonical_json
from lettingo_cli.training.common import CHECKPOINTS
from lettingo_cli.training.options import DPOOptions
from lettingo_cli.training.trainer import (
    Progress,
    StepsToStore,
    config_arguments,
    lm_head_on_labelled_tokens,
    model_and_lora,
    run_trainer,
    total_steps,
)

RANK_WAIT_S = 600  # how long a worker rank waits for rank 0 to write the shared pairs dataset
# the figures of DPO's step log, each from its key in TRL's logs
METRICS = {
    "rewards_chosen": "rewards/chosen",
    "rewards_rejected": "rewards/rejected",
    "rewards_margins": "rewards/margins",
    "rewards_accuracies": "rewards/accuracies",
}


def _shared_dataset_dir(store: Store, records: list[dict]) -> Path:
    digest = hashlib.sha256(canonical_json(records).encode()).hexdigest()[:16]
    return store.path.parent / ".lettingo-work" / f"dpo-pairs-{digest}"


def _dataset(datasets, records: list[dict], store: Store, work: Path, main_process: bool):
    """The pairs as a datasets.Dataset. Under a multi-process launch it is saved once, by rank 0, where every rank
    reads it: TRL caches the precomputed reference log-probs beside a dataset's files, and an in-memory dataset's
    cache goes to a per-process temporary folder the other ranks cannot see."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return datasets.Dataset.from_list(records)
    shared = _shared_dataset_dir(store, records)
    if main_process and not shared.exists():
        partial = work / "pairs-dataset"
        datasets.Dataset.from_list(records).save_to_disk(str(partial))
        shared.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(partial), str(shared))
    deadline = time.monotonic() + RANK_WAIT_S
    while not (shared / "state.json").exists():
        if time.monotonic() > deadline:
            raise LettingoError(f"rank {os.environ.get('RANK')}: rank 0 did not write {shared} within {RANK_WAIT_S} s")
        time.sleep(0.5)
    return datasets.load_from_disk(str(shared))


def _shared_prompt_trainer(trl):
    """TRL's DPOTrainer whose policy and reference passes read each pair's prompt once (see shared_prompt)."""
    from lettingo_cli.training import shared_prompt

    class SharedPromptDPOTrainer(trl.DPOTrainer):
        def _compute_loss(self, model, inputs, return_outputs):
            return super()._compute_loss(self._shared(model), inputs, return_outputs)

        def compute_ref_log_probs(self, model, inputs):
            return super().compute_ref_log_probs(self._shared(model), inputs)

        def _shared(self, model):
            wrapped = shared_prompt.wrap(model, self.accelerator.unwrap_model(model))
            if wrapped is None and not getattr(self, "_warned_unshared", False):
                log("warning: this model's attention cannot be packed; each pair's prompt is read twice")
                self._warned_unshared = True
            return wrapped or model

    return SharedPromptDPOTrainer


def train(
    store: Store,
    artifact: Artifact | None,
    records: list[dict],
    base: Path,
    tokenizer,
    options: DPOOptions,
    work: Path,
    output: Path,
    checkpoint: Path | None,
) -> int:
    """TRL DPOTrainer with a PEFT LoRA config; returns the number of optimizer steps. `artifact` None: a worker
    rank, which records nothing."""
    datasets = require("datasets")
    trl = require("trl")

    model, lora = model_and_lora(base, tokenizer, options)
    config = trl.DPOConfig(
        **config_arguments(options, work, options.lr, options.save_steps),
        beta=options.beta,
        per_device_train_batch_size=options.batch_size,
        max_length=options.max_length,
        precompute_ref_log_probs=options.precompute_ref,
        gradient_checkpointing=options.gradient_checkpointing,
        ld_alpha=None if options.ld_alpha == 1.0 else options.ld_alpha,
        **({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, options.sft_weight]} if options.sft_weight else {}),
    )
    total = total_steps(options, -(-len(records) // options.batch_size))
    with (
        stage_progress(f"dpo {len(records)} pairs", total, "steps") as advance,
        lm_head_on_labelled_tokens(options.profile_only_head),  # the reference pass runs in the constructor
    ):
        trainer_class = _shared_prompt_trainer(trl) if options.shared_prompt else trl.DPOTrainer
        trainer = trainer_class(
            model=model,
            args=config,
            train_dataset=_dataset(datasets, records, store, work, artifact is not None),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[StepsToStore(store, artifact, CHECKPOINTS, METRICS), Progress(advance)],
        )
        steps = run_trainer(trainer, options.precision, checkpoint, output if artifact is not None else None)
    if artifact is not None:
        shutil.rmtree(_shared_dataset_dir(store, records), ignore_errors=True)  # there under a multi-process launch
    return steps
