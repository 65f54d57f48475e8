"""What every stage that trains the generator does the same way, without TRL: the base model it trains, the
train-users-only rule, `--resume` from the newest stored checkpoint, rank 0 alone writing under a multi-process
launch, and the adapter artifact a training run leaves: the LoRA files, the generation prompts it trained on
(`export` verifies on them) and, in its report, how it was trained (`method`) and what it learned from
(`provenance`), so nothing downstream asks which stage made it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import ArtifactNotFound, LettingoError, UsageError
from lettingo_cli.split_data import train_users
from lettingo_cli.store import Artifact, StageRun, Store

CHECKPOINTS = "checkpoints/"  # where a pending adapter keeps its newest checkpoint in the store
PROMPTS_FILE = "training-prompts.jsonl"  # an adapter's generation prompts, one {"user_id", "prompt"} per line


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


def refuse_test_users(store: Store, split: Artifact, users, what: str) -> None:
    """Training reads train users only: test users are for eval (their targets must never shape a generator)."""
    train = set(train_users(store, split))
    test = sorted({u for u in users if u not in train})
    if test:
        shown = ", ".join(test[:5]) + (", ..." if len(test) > 5 else "")
        raise UsageError(
            f"{what} holds {len(test)} test user(s) of {split.ref} ({shown}): training reads train users only"
        )


def is_main_process() -> bool:
    """True unless this is a worker (rank > 0) of a multi-process launch (`accelerate launch`, torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def refuse_unresumed(run: StageRun, resume: bool) -> None:
    """An interrupted run of the same training is in the store: continue it (--resume) or start over (--force)."""
    if run.pending is not None and not resume and is_main_process():
        raise LettingoError(
            "an interrupted run of this training is in the store: add --resume to continue it, or --force to start over"
        )


def latest_checkpoint(store: Store, artifact: Artifact, destination: Path) -> Path | None:
    """Materialize the newest checkpoint stored with a pending adapter artifact."""
    steps = sorted(
        {int(f["path"].split("/")[1].split("-")[1]) for f in store.files(artifact) if f["path"].startswith(CHECKPOINTS)}
    )
    if not steps:
        return None
    newest = f"checkpoint-{steps[-1]}"
    return store.materialize(artifact, destination / newest, prefix=f"{CHECKPOINTS}{newest}/")


def resume_point(store: Store, artifact: Artifact, work: Path) -> Path | None:
    """`--resume`: the pending adapter's newest checkpoint, materialized under `work`, saying which on stderr."""
    checkpoint = latest_checkpoint(store, artifact, work / "resume")
    if checkpoint is None:
        log("no checkpoint to resume from: training from the start")
    else:
        log(f"resuming from {checkpoint.name}")
    return checkpoint


LENGTH_STEP = 64  # the default --max-length: the longest example's tokens, rounded up to a multiple of this


def length_limit(records: list[dict], tokenizer, given: int | None, source: str) -> int:
    """The length limit of training: `given` (--max-length), refused when a prompt does not fit under it; by
    default the longest prompt + completion of the records (TRL's formats: prompt with chosen / rejected, or with
    completion), rounded up, so the defaults of the stages work together (the default 30-rating prompt alone has
    ~1,000 tokens of the default model)."""
    longest = 0
    for index, record in enumerate(records):
        prompt = record["prompt"] if isinstance(record["prompt"], str) else json.dumps(record["prompt"])
        length = len(tokenizer(prompt)["input_ids"])
        if given is not None and length >= given:
            raise LettingoError(
                f"example {index} of {source}: its prompt has {length} tokens, not under --max-length {given}"
            )
        completions = [record[k] for k in ("chosen", "rejected", "completion") if k in record]
        texts = [c if isinstance(c, str) else json.dumps(c) for c in completions]
        longest = max(longest, length + max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts))
    return given if given is not None else -(-(longest + 1) // LENGTH_STEP) * LENGTH_STEP


# train(artifact, work, output, checkpoint) -> optimizer steps; artifact None on a worker rank, which writes nothing
Train = Callable[[Artifact | None, Path, Path, Path | None], int]


def train_adapter(
    store: Store,
    run: StageRun,
    train: Train,
    prompts: list[dict],
    method: str,
    provenance: dict[str, str],
    summary: Callable[[int, float], tuple[dict, dict, dict]],
    resume: bool,
) -> Artifact | None:
    """A training stage's run, after its cache check: train into a pending adapter (checkpoints go into it as they
    are saved), then seal it with the LoRA files, the prompts file and a report that says how it was trained
    (`summary(steps, seconds)` gives the stage's counts, stats and report). An interrupted run of the same training
    is continued only with `resume`. Under a multi-process launch a worker rank trains its shard, writes nothing
    and returns None."""
    if not is_main_process():  # under `accelerate launch`: only rank 0 writes to the store
        train_on_worker_rank(store, run.pending if resume else None, train)
        return None
    refuse_unresumed(run, resume)
    started = time.perf_counter()
    with run, tempfile.TemporaryDirectory(dir=store.path.parent) as work:
        work = Path(work)
        checkpoint = resume_point(store, run.artifact, work) if resume else None
        output = work / "adapter"
        steps = train(run.artifact, work, output, checkpoint)
        lines = "".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in prompts)
        (work / PROMPTS_FILE).write_text(lines, encoding="utf-8")
        with store.transaction():
            store.remove_files(run.artifact, CHECKPOINTS)
            store.add_dir(run.artifact, output)
            store.add_file(run.artifact, work / PROMPTS_FILE, PROMPTS_FILE)
            counts, stats, report = summary(steps, time.perf_counter() - started)
            report = {**report, "method": method, "provenance": provenance}
            return run.finish(counts=counts, stats=stats, report=report)


def train_on_worker_rank(store: Store, pending: Artifact | None, train: Train) -> None:
    """A rank > 0 trains its shard of every batch and writes nothing: rank 0 records steps, checkpoints and the
    adapter. `pending`: the interrupted run to resume (its checkpoint), if any."""
    with tempfile.TemporaryDirectory(dir=store.path.parent) as work:
        work = Path(work)
        checkpoint = latest_checkpoint(store, pending, work / "resume") if pending is not None else None
        train(None, work, work / "adapter", checkpoint)


def trained_prompts(store: Store, adapter: Artifact, count: int) -> list[str]:
    """The first `count` users' generation prompts an adapter was trained on (as stored: a chat prompt is its JSON).
    Adapters trained before the prompts file: the prompts of the pairs their run read."""
    stored = next((f for f in store.files(adapter) if f["path"] == PROMPTS_FILE), None)
    if stored is not None:
        lines = store.blob_path(stored["blob_hash"]).read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["prompt"] for line in lines[:count]]
    from lettingo_cli.training.data import pair_prompts

    inputs = dict(store.run_inputs(adapter.run_id)) if adapter.run_id is not None else {}
    if "pairs" not in inputs:
        raise LettingoError(f"{adapter.ref} records no training prompts (made by an older lettingo): train it again")
    return [entry["prompt"] for entry in pair_prompts(store, inputs["pairs"])[:count]]


def last_step(store: Store, adapter: Artifact) -> dict | None:
    """The last logged training step of the run that made an adapter (loss and the trainer's named metrics)."""
    steps = store.training_steps(adapter.run_id) if adapter.run_id is not None else []
    return steps[-1] if steps else None
