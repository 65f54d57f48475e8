"""Stage `dpo`: LoRA-DPO of the profile generator on a pairs artifact, with TRL; writes an adapter artifact.

The options are training/options.py's DPOOptions; everything TRL-specific is in training/dpo_trainer.py (imported
only to train), and what every training stage does alike (base model, checkpoints, resume, ranks, the adapter's
files and report) in training/common.py. Every logged step goes into the store's training log.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from lettingo_cli.errors import LettingoError, require
from lettingo_cli.options import stable_key
from lettingo_cli.store import Artifact, Store, Verbs
from lettingo_cli.training.common import (
    length_limit,
    refuse_test_users,
    train_adapter,
)
from lettingo_cli.training.data import pair_prompts, preference_records
from lettingo_cli.training.options import DPOOptions

VERBS = Verbs("train", "trained")
METHOD = "DPO, offline from preference pairs of stored profiles"
# options that change how fast or how often, never what is trained: not part of the run key
SPEED_ONLY = ("save_steps", "gradient_checkpointing", "shared_prompt")
LATER_OPTIONS = {"ld_alpha": 1.0, "sft_weight": 0.0}  # options added later, with their defaults (options.stable_key)


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
    prompts = pair_prompts(store, pairs)
    if "profiles" in pairs.params:  # pairs made by `pair` (a hand-made pairs artifact names no split)
        profiles = pairs.params["profiles"]  # one profiles artifact, or a pool's (one split)
        split = store.get(store.get(profiles[0] if isinstance(profiles, list) else profiles).params["split"])
        refuse_test_users(store, split, [p["user_id"] for p in prompts], pairs.ref)
    records = preference_records(store, pairs)
    if not records:
        raise LettingoError(f"{pairs.ref} has no pairs: nothing to train on (try another --rule or more profiles)")
    transformers = require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    options = replace(options, max_length=length_limit(records, tokenizer, options.max_length, pairs.ref))
    params = {"pairs": pairs.id, "base": str(base), **{k: v for k, v in asdict(options).items() if k not in SPEED_ONLY}}
    key = stable_key(params, LATER_OPTIONS, name)
    run = store.stage(
        "dpo", "adapter", name, params, {"pairs": pairs.id}, key_params=key, force=force, resumable=True, verbs=VERBS
    )
    if run.cached:
        return run.cached

    def train(artifact: Artifact | None, work: Path, output: Path, checkpoint: Path | None) -> int:
        from lettingo_cli.training.dpo_trainer import train

        return train(store, artifact, records, base, tokenizer, options, work, output, checkpoint)

    def summary(steps: int, seconds: float) -> tuple[dict, dict, dict]:
        stats = {
            "seconds": round(seconds, 1),
            "pairs": len(records),
            "steps": steps,
            "pairs_per_s": round(len(records) * options.epochs / seconds, 3),
        }
        return {"pairs": len(records), "steps": steps}, stats, {}

    provenance = {f"lettingo.pairs.{k}": v for k, v in (("id", str(pairs.id)), ("ref", pairs.ref))}
    provenance["lettingo.pairs.hash"] = pairs.content_hash or ""
    return train_adapter(store, run, train, prompts, METHOD, provenance, summary, resume)
