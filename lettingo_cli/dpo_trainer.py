"""The TRL side of stage `dpo`: the DPOTrainer with a PEFT LoRA, its callbacks, and the two speed-ups lettingo
adds (the LM head on the profile tokens only, the shared prompt read once). Imported only to train: it loads
torch, transformers, PEFT, datasets and TRL on import."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lettingo_cli.console import log, stage_progress
from lettingo_cli.digest import canonical_json
from lettingo_cli.errors import LettingoError, require
from lettingo_cli.store import Artifact, Store

if TYPE_CHECKING:
    from lettingo_cli.dpo import DPOOptions

transformers = require("transformers")
# LoRA goes on the attention and MLP projections, never on the embeddings or the LM head.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK_WAIT_S = 600  # how long a worker rank waits for rank 0 to write the shared pairs dataset


class StepsToStore(transformers.TrainerCallback):
    """Every logged step into the store's dpo_steps table, and each checkpoint into the pending adapter (it replaces
    the older one), so `dpo --resume` continues after a crash. A worker rank (artifact None) records nothing.
    grpo's subclass logs into its own table (`step_row` and `record`)."""

    def __init__(self, store: Store, artifact: Artifact | None, checkpoints: str) -> None:
        self.store, self.artifact, self.checkpoints = store, artifact, checkpoints

    def step_row(self, logs: dict, state) -> dict:
        return {
            "step": state.global_step,
            "epoch": logs.get("epoch"),
            "loss": logs.get("loss"),
            "rewards_chosen": logs.get("rewards/chosen"),
            "rewards_rejected": logs.get("rewards/rejected"),
            "rewards_margins": logs.get("rewards/margins"),
            "rewards_accuracies": logs.get("rewards/accuracies"),
            "logged": canonical_json(logs),
        }

    def record(self, row: dict) -> None:
        self.store.record_dpo_step(self.artifact.run_id, row)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.artifact is None or not logs or "loss" not in logs:
            return
        self.record(self.step_row(logs, state))

    def on_save(self, args, state, control, **kwargs):
        if self.artifact is None:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        with self.store.transaction():  # the newest checkpoint replaces the older ones in the store
            self.store.remove_files(self.artifact, self.checkpoints)
            self.store.add_dir(self.artifact, folder, prefix=f"{self.checkpoints}{folder.name}/")


class Progress(transformers.TrainerCallback):
    """The progress bar on stderr, one step at a time."""

    def __init__(self, advance) -> None:
        self.advance = advance

    def on_step_end(self, args, state, control, **kwargs):
        self.advance(1)


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


@contextlib.contextmanager
def _lm_head_on_profile_tokens(enabled: bool):
    """Make TRL's fused LM head score only the labelled (profile) positions on every device.

    TRL 1.16 does this on CUDA/XPU only; on a CPU it projects every position, prompt included, through the
    262k-row head and then masks (`trl.trainer.utils._use_triton` decides). Log-probs are the same either way.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if not enabled or original is None:
        if enabled:
            log("warning: this TRL has no trl.trainer.utils._use_triton; the LM head runs on every position")
        yield
        return
    trl_utils._use_triton = lambda device: True  # only read there to choose compact positions
    try:
        yield
    finally:
        trl_utils._use_triton = original


def _shared_prompt_trainer(trl):
    """TRL's DPOTrainer whose policy and reference passes read each pair's prompt once (see shared_prompt)."""
    from lettingo_cli import shared_prompt

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


def lora_config(peft, model, base: Path, rank: int, alpha: int):
    """The LoRA of both training stages: on the attention and MLP projections the model has."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise LettingoError(
            f"no trainable parameter: {base} has none of the LoRA target modules {', '.join(LORA_TARGETS)}"
        )
    return peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")


def quiet(trainer) -> None:
    """Remove the callbacks that print to stdout, which carries only results."""
    for printer in (transformers.PrinterCallback, transformers.ProgressCallback):
        trainer.remove_callback(printer)


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
    checkpoints: str,
    main_process: bool,
) -> int:
    """TRL DPOTrainer with a PEFT LoRA config; returns the number of optimizer steps. `artifact` None: a worker
    rank, which records nothing; `checkpoints`: the artifact's folder for its newest checkpoint."""
    torch = require("torch")
    peft = require("peft")
    datasets = require("datasets")
    trl = require("trl")

    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = lora_config(peft, model, base, options.lora_r, options.lora_alpha)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    config = trl.DPOConfig(
        output_dir=str(work / "trainer"),
        beta=options.beta,
        learning_rate=options.lr,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        max_length=options.max_length,
        logging_steps=1,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=1,
        report_to=[],
        seed=options.seed,
        bf16=options.precision == "bf16",
        precompute_ref_log_probs=options.precompute_ref,
        gradient_checkpointing=options.gradient_checkpointing,
        ld_alpha=None if options.ld_alpha == 1.0 else options.ld_alpha,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    per_epoch = math.ceil(len(records) / options.batch_size)
    total = options.max_steps if options.max_steps > 0 else math.ceil(per_epoch * options.epochs)
    with (
        stage_progress(f"dpo {len(records)} pairs", total, "steps") as advance,
        _lm_head_on_profile_tokens(options.profile_only_head),  # the reference pass runs in the constructor
    ):
        trainer_class = _shared_prompt_trainer(trl) if options.shared_prompt else trl.DPOTrainer
        trainer = trainer_class(
            model=model,
            args=config,
            train_dataset=_dataset(datasets, records, store, work, main_process),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[StepsToStore(store, artifact, checkpoints), Progress(advance)],
        )
        steps = run_trainer(trainer, options.precision, checkpoint, output if artifact is not None else None)
    if artifact is not None:
        shutil.rmtree(
            _shared_dataset_dir(store, records), ignore_errors=True
        )  # only there under a multi-process launch
    return steps


def run_trainer(trainer, precision: str, checkpoint: Path | None, output: Path | None, sampling: str = "") -> int:
    """Train a TRL trainer built with lettingo's callbacks (dpo's and grpo's alike): quiet its stdout, refuse a
    model with nothing to train, say where it trains, resume from `checkpoint`, refuse a diverged run, save the
    adapter to `output` (None: a worker rank, which saves nothing). Returns the optimizer steps."""
    quiet(trainer)
    if not any(p.requires_grad for p in trainer.model.parameters()):
        raise LettingoError("no trainable parameter in the LoRA model")
    state = trainer.accelerator.state
    detail = f", {sampling}" if sampling else ""
    log(f"training on {trainer.accelerator.device} ({precision}, {state.num_processes} process(es), "
        f"{state.distributed_type}{detail})")  # fmt: skip
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if not math.isfinite(result.training_loss):
        raise LettingoError(f"training diverged (loss {result.training_loss})")
    if output is not None:
        trainer.model.save_pretrained(output)
    return result.global_step
