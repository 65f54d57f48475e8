"""The TRL side every trainer shares: the model and its LoRA, the arguments every TRL config takes alike, the
callbacks that log each step into the store's training log and keep the newest checkpoint in the pending adapter,
and the run of a trainer. Imported only to train: it loads torch, transformers and PEFT on import."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import LettingoError, require
from lettingo_cli.store import Artifact, Store
from lettingo_cli.training.options import TrainingOptions

transformers = require("transformers")
# LoRA goes on the attention and MLP projections, never on the embeddings or the LM head.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class StepsToStore(transformers.TrainerCallback):
    """Every logged step into the store's training log, and each checkpoint into the pending adapter (it replaces
    the older one), so `--resume` continues after a crash. A worker rank (artifact None) records nothing.
    `metrics`: the figures the trainer names, each from its key in TRL's logs (e.g. rewards_margins from
    "rewards/margins")."""

    def __init__(self, store: Store, artifact: Artifact | None, checkpoints: str, metrics: dict[str, str]) -> None:
        self.store, self.artifact, self.checkpoints, self.metrics = store, artifact, checkpoints, metrics

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.artifact is None or not logs or "loss" not in logs:
            return
        named = {name: logs.get(key) for name, key in self.metrics.items()}
        self.store.record_training_step(
            self.artifact.run_id, state.global_step, logs.get("epoch"), logs.get("loss"), named, logs
        )

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


def model_and_lora(base: Path, tokenizer, options: TrainingOptions):
    """The float model to put a LoRA on (fp32 weights; bf16 runs as autocast) and every trainer's LoRA config; the
    tokenizer pads with its end-of-text token when it has no pad token."""
    torch = require("torch")
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, lora_config(model, base, options)


def lora_config(model, base: Path, options: TrainingOptions):
    """The LoRA of every trainer: on the attention and MLP projections the model has."""
    peft = require("peft")
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise LettingoError(
            f"no trainable parameter: {base} has none of the LoRA target modules {', '.join(LORA_TARGETS)}"
        )
    return peft.LoraConfig(
        r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"
    )


def config_arguments(options: TrainingOptions, work: Path, lr: float, save_steps: int) -> dict:
    """The keyword arguments every TRL config (a transformers TrainingArguments) takes the same way here: a step
    logged each step, one checkpoint kept, no reporting, bf16 autocast, the CPU when there is no GPU."""
    torch = require("torch")
    return {
        "output_dir": str(work / "trainer"),
        "learning_rate": lr,
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 1,
        "report_to": [],
        "seed": options.seed,
        "bf16": options.precision == "bf16",
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
    }


def total_steps(options: TrainingOptions, per_epoch: int) -> int:
    """The optimizer steps a run will take (for the progress bar)."""
    return options.max_steps if options.max_steps > 0 else math.ceil(per_epoch * options.epochs)


@contextlib.contextmanager
def lm_head_on_labelled_tokens(enabled: bool):
    """Make TRL's fused LM head score only the labelled (profile) positions on every device (dpo's and sft's).

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


def quiet(trainer) -> None:
    """Remove the callbacks that print to stdout, which carries only results."""
    for printer in (transformers.PrinterCallback, transformers.ProgressCallback):
        trainer.remove_callback(printer)


def run_trainer(trainer, precision: str, checkpoint: Path | None, output: Path | None, sampling: str = "") -> int:
    """Train a TRL trainer built with lettingo's callbacks: quiet its stdout, refuse a model with nothing to train,
    say where it trains, resume from `checkpoint`, refuse a diverged run, save the adapter to `output` (None: a
    worker rank, which saves nothing). Returns the optimizer steps."""
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
