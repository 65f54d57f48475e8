"""The commands that train the profile generator (sft, dpo, grpo): each parses its options, calls one function of
api.py and prints; cli.py registers them in pipeline order."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Optional

import typer

from lettingo_cli.cli_common import (
    DEFAULT_STORE,
    BaseOption,
    ForceOption,
    JsonOption,
    ModelFreeOption,
    NameOption,
    ResumeOption,
    StoreOption,
    emit,
    input_ref,
    log,
    open_store,
    read_refs,
)
from lettingo_cli.options import command_options
from lettingo_cli.training.options import DPOOptions, GRPOOptions, SFTOptions

# --- sft -----------------------------------------------------------------------------------------------------


@command_options(SFTOptions)
def sft_command(
    options: SFTOptions,
    pools: Annotated[
        Optional[list[str]],
        typer.Argument(help="Scores references: the scored profile pool (default: the latest scores; - reads stdin)."),
    ] = None,
    no_profile_scores: Annotated[
        Optional[str],
        typer.Option("--no-profile-scores", help="The users' scores without a profile (for --min-gain)."),
    ] = None,
    base: BaseOption = None,
    resume: ResumeOption = False,
    allow_model_free: ModelFreeOption = False,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """LoRA-SFT the profile generator on each train user's best-scored profile of a pool (TRL); writes an adapter."""
    from lettingo_cli import api
    from lettingo_cli.training.common import last_step

    store = open_store(store_path)
    refs = read_refs(pools) if pools else None
    baseline = input_ref(no_profile_scores, "scores")
    artifact = api.sft(
        store, refs, no_profile_scores=baseline, base=base, resume=resume, name=name, force=force,
        allow_model_free=allow_model_free, **asdict(options),
    )  # fmt: skip
    if artifact is None:  # a worker rank under `accelerate launch`: rank 0 reports
        return
    step = last_step(store, artifact)
    if step:
        log(
            f"{artifact.ref}: {artifact.counts['steps']} steps on {artifact.counts['examples']} profiles; last step "
            f"loss {step['loss']:.4f}, token accuracy {step.get('mean_token_accuracy')}"
        )
    emit(artifact, as_json)


# --- dpo -----------------------------------------------------------------------------------------------------


@command_options(DPOOptions)
def dpo_command(
    options: DPOOptions,
    pairs: Annotated[Optional[str], typer.Argument(help="Pairs reference (default: the latest pairs).")] = None,
    base: BaseOption = None,
    resume: ResumeOption = False,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """LoRA-DPO-train the profile generator on preference pairs (TRL); writes an adapter artifact."""
    from lettingo_cli import api
    from lettingo_cli.training.common import last_step

    store = open_store(store_path)
    artifact = api.dpo(
        store, input_ref(pairs, "pairs"), base=base, resume=resume, name=name, force=force, **asdict(options)
    )
    if artifact is None:  # a worker rank under `accelerate launch`: rank 0 reports
        return
    step = last_step(store, artifact)
    if step:
        log(
            f"{artifact.ref}: {artifact.counts['steps']} steps on {artifact.counts['pairs']} pairs; last step loss "
            f"{step['loss']:.4f}, margin {step['rewards_margins']}, accuracy {step['rewards_accuracies']}"
        )
    emit(artifact, as_json)


# --- grpo ----------------------------------------------------------------------------------------------------


@command_options(GRPOOptions)
def grpo_command(
    options: GRPOOptions,
    split: Annotated[Optional[str], typer.Argument(help="Split reference (default: the latest split).")] = None,
    base: BaseOption = None,
    resume: ResumeOption = False,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """GRPO-train the profile generator online: a frozen predictor rewards the profiles it samples (TRL)."""
    from lettingo_cli import api

    store = open_store(store_path)
    artifact = api.grpo(
        store, input_ref(split, "split"), base=base, resume=resume, name=name, force=force, **asdict(options)
    )
    if artifact is None:  # a worker rank under `accelerate launch`: rank 0 reports
        return
    report = artifact.report
    log(
        f"{artifact.ref}: {artifact.counts['steps']} steps on {artifact.counts['prompts']} prompts; reward "
        f"{report.get('first_reward')} at the first step, {report.get('last_reward')} at the last"
    )
    emit(artifact, as_json)
