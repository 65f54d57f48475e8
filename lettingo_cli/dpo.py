"""Stage `dpo`: LoRA-DPO of the profile generator on a pairs artifact, with TRL; writes an adapter artifact.

Everything TRL-specific is in `_trainer`, so a change of TRL's API touches one function (tested with
trl 1.16). Every logged step goes into the store's `dpo_steps` table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lettingo_cli.console import log, stage_progress
from lettingo_cli.digest import canonical_json
from lettingo_cli.errors import LettingoError, UsageError, require
from lettingo_cli.options import option, stable_key
from lettingo_cli.store import Artifact, Store

# LoRA goes on the attention and MLP projections, never on the embeddings or the LM head.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK_WAIT_S = 600  # how long a worker rank waits for rank 0 to write the shared pairs dataset
CHECKPOINTS = "checkpoints/"  # where a pending adapter keeps its newest checkpoint in the store


# options that change how fast or how often, never what is trained: not part of the run key
SPEED_ONLY = ("save_steps", "gradient_checkpointing", "shared_prompt")
LATER_OPTIONS = {"ld_alpha": 1.0}  # options added later, with their defaults (see options.stable_key)


@dataclass(frozen=True)
class DPOOptions:
    """The training options of `lettingo dpo` (each field is also its flag and a key of its --config YAML)."""

    beta: float = option(0.1, "DPO beta.")
    lr: float = option(5e-5, "Learning rate.")
    epochs: float = option(1.0, "Epochs over the pairs.")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA alpha.")
    max_length: int | None = option(
        None, "Most tokens of prompt + profile (default: the longest pair's, rounded up to a multiple of 64)."
    )
    batch_size: int = option(2, "Pairs per optimizer step.")
    seed: int = option(0, "Training seed.")
    max_steps: int = option(-1, "Stop after this many steps (-1: all epochs).")
    save_steps: int = option(50, "Store a checkpoint (adapter, optimizer, scheduler, RNG) every N steps.")
    # bf16 matrix work runs ~6x faster than fp32 on these CPUs (docs/pitfalls.md)
    precision: str = option("bf16", "bf16 (default; faster on CPUs with bf16 units) or fp32.")
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
    # TRL's DPOConfig turns it on: every backward pass recomputes the forward, which a 270M model does not need
    gradient_checkpointing: bool = option(
        False,
        "Recompute activations in the backward pass: less memory, more time (TRL's own default is on).",
        "--gradient-checkpointing/--no-gradient-checkpointing",
    )

    # TRL reads a pair's prompt twice (prompt + chosen, prompt + rejected); lettingo_cli/shared_prompt.py packs
    # the pair into one row, so the prompt, most of a pair's tokens, goes through the model once
    shared_prompt: bool = option(
        True,
        "Read each pair's prompt once, in one packed pass over prompt + chosen + rejected (TRL reads it twice).",
        "--shared-prompt/--no-shared-prompt",
    )

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.lr <= 0 or self.epochs <= 0 or self.lora_r < 1 or self.batch_size < 1:
            raise UsageError("--beta, --lr, --epochs, --lora-r and --batch-size must be positive")
        if self.save_steps < 1:
            raise UsageError("--save-steps must be >= 1")
        if not 0 <= self.ld_alpha <= 1:
            raise UsageError("--ld-alpha must be between 0 and 1 (1: plain DPO)")
        if self.precision not in ("bf16", "fp32"):
            raise UsageError("--precision must be bf16 or fp32")
        if self.max_length is not None and self.max_length < 2:
            raise UsageError("--max-length must be >= 2")


def resolve_base(spec: str | None, store: Store | None = None) -> Path:
    """The float HF checkpoint to train: the default generator's (built once from its GGUF), a directory, or a
    previous export's merged checkpoint (`export:NAME`, for another round), unpacked once into the model cache."""
    from lettingo_cli.models import DEFAULT_GENERATOR, cache_dir, default_hf_dir

    if spec in (None, DEFAULT_GENERATOR, f"hf:{DEFAULT_GENERATOR}"):
        return default_hf_dir()
    path = Path(spec.removeprefix("hf:")).expanduser()
    if (path / "config.json").exists():
        return path
    if store is not None and not path.exists():
        from lettingo_cli.errors import ArtifactNotFound

        try:
            export = store.resolve(spec, kind="export")
        except ArtifactNotFound:
            export = None
        if export is not None:
            from lettingo_cli.export_layout import CHECKPOINT, TOKENIZER_MARKER, provenance, read_layout

            if not read_layout(store, export).has_checkpoint:
                raise UsageError(f"--base {spec}: {export.ref} has no merged checkpoint (a --lora-only export)")
            target = cache_dir() / "exports" / f"{export.name}-v{export.version}-{export.content_hash[:12]}"
            if not (target / "config.json").exists():
                partial = target.with_name(target.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                store.materialize(export, partial, prefix=CHECKPOINT)
                tokenizer_from = provenance(export).get("lettingo.base.tokenizer_from")
                if tokenizer_from:  # the next export takes its GGUF tokenizer from the same file
                    (partial / TOKENIZER_MARKER).write_text(tokenizer_from + "\n", encoding="utf-8")
                partial.replace(target)
            return target
    raise UsageError(f"--base {spec}: not an HF model directory (no config.json) nor an export artifact")


LENGTH_STEP = 64  # the default --max-length: the longest pair's tokens, rounded up to a multiple of this


def _max_length(records: list[dict], tokenizer, given: int | None, pairs: Artifact) -> int:
    """The length limit of training: `given` (--max-length), refused when a prompt does not fit under it; by
    default the longest prompt + completion of the pairs, rounded up, so the defaults of gen, pair and dpo work
    together (the default 30-rating prompt alone has ~1,000 tokens of the default model)."""
    longest = 0
    for index, record in enumerate(records):
        prompt = record["prompt"] if isinstance(record["prompt"], str) else json.dumps(record["prompt"])
        length = len(tokenizer(prompt)["input_ids"])
        if given is not None and length >= given:
            raise LettingoError(
                f"pair {index} of {pairs.ref}: its prompt has {length} tokens, not under --max-length {given}"
            )
        completions = (record["chosen"], record["rejected"])
        texts = [c if isinstance(c, str) else json.dumps(c) for c in completions]
        longest = max(longest, length + max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts))
    return given if given is not None else -(-(longest + 1) // LENGTH_STEP) * LENGTH_STEP


def train_dpo(
    store: Store,
    pairs: Artifact,
    base: Path,
    options: DPOOptions,
    name: str,
    force: bool = False,
    resume: bool = False,
) -> Artifact | None:
    """Train and record the adapter; returns it, or None on a worker rank of a multi-process launch."""
    from lettingo_cli.pair import preference_records

    records = preference_records(store, pairs)
    if not records:
        raise LettingoError(f"{pairs.ref} has no pairs: nothing to train on (try another --rule or more profiles)")
    transformers = require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    options = replace(options, max_length=_max_length(records, tokenizer, options.max_length, pairs))
    params = {"pairs": pairs.id, "base": str(base), **{k: v for k, v in asdict(options).items() if k not in SPEED_ONLY}}
    key = stable_key(params, LATER_OPTIONS, name)
    run = store.stage("dpo", "adapter", name, params, {"pairs": pairs.id}, key_params=key, force=force, resumable=True)
    if run.cached:
        return run.cached
    if not is_main_process():  # under `accelerate launch`: only rank 0 writes to the store
        return _train_on_worker_rank(store, run.pending if resume else None, records, base, tokenizer, options)
    if run.pending is not None and not resume:
        raise LettingoError(
            "an interrupted run of this training is in the store: add --resume to continue it, or --force to start over"
        )
    started = time.perf_counter()
    with run, tempfile.TemporaryDirectory(dir=store.path.parent) as work:
        work = Path(work)
        checkpoint = _latest_checkpoint(store, run.artifact, work / "resume") if resume else None
        if resume and checkpoint is None:
            log("no checkpoint to resume from: training from the start")
        elif checkpoint is not None:
            log(f"resuming from {checkpoint.name}")
        output = work / "adapter"
        steps = _trainer(store, run.artifact, records, base, tokenizer, options, work, output, checkpoint)
        with store.transaction():
            store.remove_files(run.artifact, CHECKPOINTS)
            store.add_dir(run.artifact, output)
            seconds = time.perf_counter() - started
            stats = {
                "seconds": round(seconds, 1),
                "pairs": len(records),
                "steps": steps,
                "pairs_per_s": round(len(records) * options.epochs / seconds, 3),
            }
            return run.finish(counts={"pairs": len(records), "steps": steps}, stats=stats)


def last_step(store: Store, adapter: Artifact) -> dict | None:
    """The last logged training step of the run that made an adapter (loss, reward margin, reward accuracy)."""
    return store.last_dpo_step(adapter.run_id) if adapter.run_id is not None else None


def is_main_process() -> bool:
    """True unless this is a worker (rank > 0) of a multi-process launch (`accelerate launch`, torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def _train_on_worker_rank(
    store: Store, pending: Artifact | None, records: list[dict], base: Path, tokenizer, options: DPOOptions
) -> None:
    """A rank > 0 trains its shard of every batch and writes nothing: rank 0 records steps, checkpoints and the
    adapter. `pending`: the interrupted run to resume (its checkpoint), if any."""
    with tempfile.TemporaryDirectory(dir=store.path.parent) as work:
        work = Path(work)
        checkpoint = _latest_checkpoint(store, pending, work / "resume") if pending is not None else None
        _trainer(store, None, records, base, tokenizer, options, work, work / "adapter", checkpoint)
    return None


def _latest_checkpoint(store: Store, artifact: Artifact, destination: Path) -> Path | None:
    """Materialize the newest checkpoint stored with a pending adapter artifact."""
    steps = sorted(
        {int(f["path"].split("/")[1].split("-")[1]) for f in store.files(artifact) if f["path"].startswith(CHECKPOINTS)}
    )
    if not steps:
        return None
    newest = f"checkpoint-{steps[-1]}"
    return store.materialize(artifact, destination / newest, prefix=f"{CHECKPOINTS}{newest}/")


def _shared_dataset_dir(store: Store, records: list[dict]) -> Path:
    digest = hashlib.sha256(canonical_json(records).encode()).hexdigest()[:16]
    return store.path.parent / ".lettingo-work" / f"dpo-pairs-{digest}"


def _dataset(datasets, records: list[dict], store: Store, work: Path):
    """The pairs as a datasets.Dataset. Under a multi-process launch it is saved once, by rank 0, where every rank
    reads it: TRL caches the precomputed reference log-probs beside a dataset's files, and an in-memory dataset's
    cache goes to a per-process temporary folder the other ranks cannot see."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return datasets.Dataset.from_list(records)
    shared = _shared_dataset_dir(store, records)
    if is_main_process() and not shared.exists():
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


def _trainer(
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
    """TRL DPOTrainer with a PEFT LoRA config; returns the number of optimizer steps."""
    torch = require("torch")
    transformers = require("transformers")
    peft = require("peft")
    datasets = require("datasets")
    trl = require("trl")

    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise LettingoError(
            f"no trainable parameter: {base} has none of the LoRA target modules {', '.join(LORA_TARGETS)}"
        )
    lora = peft.LoraConfig(
        r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    run_id = artifact.run_id if artifact is not None else None  # None: a worker rank, which records nothing

    class StepsToStore(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if run_id is None or not logs or "loss" not in logs:
                return
            step = {
                "step": state.global_step,
                "epoch": logs.get("epoch"),
                "loss": logs.get("loss"),
                "rewards_chosen": logs.get("rewards/chosen"),
                "rewards_rejected": logs.get("rewards/rejected"),
                "rewards_margins": logs.get("rewards/margins"),
                "rewards_accuracies": logs.get("rewards/accuracies"),
                "logged": canonical_json(logs),
            }
            store.record_dpo_step(run_id, step)

        def on_save(self, args, state, control, **kwargs):
            if run_id is None:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            with store.transaction():  # the newest checkpoint replaces the older ones in the store
                store.remove_files(artifact, CHECKPOINTS)
                store.add_dir(artifact, folder, prefix=f"{CHECKPOINTS}{folder.name}/")

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
    with stage_progress(f"dpo {len(records)} pairs", total, "steps") as advance:

        class Progress(transformers.TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                advance(1)

        with _lm_head_on_profile_tokens(options.profile_only_head):  # the reference pass runs in the constructor
            trainer_class = _shared_prompt_trainer(trl) if options.shared_prompt else trl.DPOTrainer
            trainer = trainer_class(
                model=model,
                args=config,
                train_dataset=_dataset(datasets, records, store, work),
                processing_class=tokenizer,
                peft_config=lora,
                callbacks=[StepsToStore(), Progress()],
            )
            for printer in (transformers.PrinterCallback, transformers.ProgressCallback):
                trainer.remove_callback(printer)  # they print to stdout, which carries only results
            if not any(p.requires_grad for p in trainer.model.parameters()):
                raise LettingoError("no trainable parameter in the LoRA model")
            state = trainer.accelerator.state
            log(
                f"training on {trainer.accelerator.device} ({options.precision}, {state.num_processes} process(es), "
                f"{state.distributed_type})"
            )
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if not math.isfinite(result.training_loss):
        raise LettingoError(f"training diverged (loss {result.training_loss})")
    if artifact is not None:
        trainer.model.save_pretrained(output)
        shutil.rmtree(
            _shared_dataset_dir(store, records), ignore_errors=True
        )  # only there under a multi-process launch
    return result.global_step
