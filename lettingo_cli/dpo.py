"""Stage `dpo`: LoRA-DPO of the profile generator on a pairs artifact, with TRL; writes an adapter artifact.

Everything TRL-specific is in dpo_trainer.py (imported only to train), so a change of TRL's API touches one
module (tested with trl 1.16). Every logged step goes into the store's `dpo_steps` table.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import LettingoError, UsageError, require
from lettingo_cli.options import option, stable_key
from lettingo_cli.store import Artifact, Store

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
        checkpoint = resume_point(store, run.artifact, work) if resume else None
        output = work / "adapter"
        from lettingo_cli.dpo_trainer import train

        steps = train(
            store, run.artifact, records, base, tokenizer, options, work, output, checkpoint, CHECKPOINTS, True
        )
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
        checkpoint = latest_checkpoint(store, pending, work / "resume") if pending is not None else None
        from lettingo_cli.dpo_trainer import train

        train(store, None, records, base, tokenizer, options, work, work / "adapter", checkpoint, CHECKPOINTS, False)
    return None


def resume_point(store: Store, artifact: Artifact, work: Path) -> Path | None:
    """`--resume`: the pending adapter's newest checkpoint, materialized under `work`, saying which on stderr."""
    checkpoint = latest_checkpoint(store, artifact, work / "resume")
    if checkpoint is None:
        log("no checkpoint to resume from: training from the start")
    else:
        log(f"resuming from {checkpoint.name}")
    return checkpoint


def latest_checkpoint(store: Store, artifact: Artifact, destination: Path) -> Path | None:
    """Materialize the newest checkpoint stored with a pending adapter artifact."""
    steps = sorted(
        {int(f["path"].split("/")[1].split("-")[1]) for f in store.files(artifact) if f["path"].startswith(CHECKPOINTS)}
    )
    if not steps:
        return None
    newest = f"checkpoint-{steps[-1]}"
    return store.materialize(artifact, destination / newest, prefix=f"{CHECKPOINTS}{newest}/")
