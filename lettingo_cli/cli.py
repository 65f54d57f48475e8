"""The `lettingo` command line: parses options, resolves artifact references, calls a stage, prints refs.

stdout carries only results (an artifact reference per line, or JSON with --json); everything for people
goes to stderr. Heavy modules (the store, the stages, torch, llama.cpp) are imported inside the commands,
so `lettingo --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from lettingo_cli.cli_common import (
    DEFAULT_STORE,
    ForceOption,
    JsonOption,
    ModelFreeOption,
    NameOption,
    PromptOption,
    StoreOption,
    emit,
    input_ref,
    log,
    open_store,
    read_refs,
)
from lettingo_cli.cli_ingest import ingest_app
from lettingo_cli.cli_tools import completion_command, doctor_command, profile_command, store_app
from lettingo_cli.cli_train import dpo_command, grpo_command, sft_command
from lettingo_cli.errors import LettingoError, UsageError
from lettingo_cli.export import ExportOptions
from lettingo_cli.gen import GenOptions
from lettingo_cli.options import command_options
from lettingo_cli.pair import PairOptions
from lettingo_cli.predictors.fitted import FitOptions
from lettingo_cli.score import ScoreOptions
from lettingo_cli.split import SplitOptions
from lettingo_cli.version import __version__

# Nothing reaches a model hub at run time: set before any Hugging Face library is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# llama.cpp and torch both run their work on OpenMP threads, which by default spin while they wait for more; two
# lettingo processes on the same cores then preempt each other's spinning threads (two `gen` at once took 13x one's
# time). Idle threads sleep instead, unless the user chose a policy (bench/contention.py measures both). Set before
# either library loads its OpenMP runtime, which reads it once.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 failure, 2 usage, 3 missing/ambiguous artifact, 4 integrity error, "
    "5 missing optional dependency."
)


# --help lists the pipeline in the order it runs, then the tools around it.
COMMAND_ORDER = (
    "ingest", "split", "gen", "score", "fit", "pair", "eval", "sft", "dpo", "grpo", "export", "profile",
    "store", "doctor", "completion",
)  # fmt: skip


class LettingoGroup(TyperGroup):
    """Turns the errors a user can cause into one stderr line and the documented exit code."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(names))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LettingoError as error:
            fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; finished work is kept, rerun the same command to resume", 130)
        except BrokenPipeError:  # e.g. `lettingo store ls | head -1`
            sys.stderr.close()
            raise typer.Exit(0) from None
        except (OSError, sqlite3.Error) as error:  # a full disk, a locked or unreadable store, ...
            from lettingo_cli.store import Store, broken_store, disk_full

            if (broken := broken_store(Store.last_path, error)) is not None:  # SQLite found damage after the opening
                fail(str(broken), broken.exit_code)
            if (full := disk_full(Store.last_path, error)) is not None:
                fail(str(full), full.exit_code)
            fail(str(error), 1)
        except Exception as error:
            if type(error).__module__.startswith("typer") or os.environ.get("LETTINGO_DEBUG"):
                raise  # typer's own exits and usage errors, or a traceback on request
            fail(f"internal error: {type(error).__name__}: {error} (LETTINGO_DEBUG=1 shows the traceback)", 1)


def fail(message: str, exit_code: int) -> None:
    typer.echo(f"lettingo: error: {message}", err=True)
    raise typer.Exit(exit_code) from None


app = typer.Typer(
    cls=LettingoGroup,
    name="lettingo",
    help="Align LLM-written user profiles with what recommenders need (LettinGo, KDD 2025).\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lettingo {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Align LLM-written user profiles with what recommenders need."""


# --- split ---------------------------------------------------------------------------------------------------


@app.command("split")
@command_options(SplitOptions)
def split_command(
    options: SplitOptions,
    dataset: Annotated[Optional[str], typer.Argument(help="Dataset reference (default: the latest dataset).")] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Split users into disjoint train/test sets and each user's history into profile history, recent, targets."""
    from lettingo_cli import api
    from lettingo_cli.split import format_balance

    artifact = api.split(
        open_store(store_path), input_ref(dataset, "dataset"), name=name, force=force, **asdict(options)
    )
    counts = artifact.counts
    log(
        f"{artifact.ref}: {counts['train_users']} train users, {counts['test_users']} test users "
        f"({counts['skipped_users']} with too few interactions left out)"
    )
    for line in format_balance(artifact.report["class_balance"]):
        log(f"  {line}")
    emit(artifact, as_json)


# --- gen -----------------------------------------------------------------------------------------------------


@app.command("gen")
@command_options(GenOptions)
def gen_command(
    options: GenOptions,
    users: Annotated[
        str,
        typer.Option(
            "--users",
            help="all | train | test | N (first N by id) | test:N, train:N | train:A:B (users A..B-1 by id) "
            "| id,id,... | - (ids on stdin).",
        ),
    ] = "all",
    split: Annotated[
        Optional[str], typer.Option("--split", help="Split reference (default: the latest split).")
    ] = None,
    generator: Annotated[
        Optional[list[str]],
        typer.Option(
            "--generator",
            help="gemma-3-270m (default) | gguf:PATH | gguf:EXPORT | hf:MODEL_DIR | openai:MODEL@URL; "
            "without a model: history-text[?tokens=N] | stats-text | swap:PROFILES_REF; repeat for several.",
        ),
    ] = None,
    prompt: PromptOption = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Write free-form profiles of each selected user from their profile history: N per generator."""
    from lettingo_cli import api

    artifact = api.gen(
        open_store(store_path),
        input_ref(split, "split"),
        users=users,
        listed=sys.stdin.read().split() if users == "-" else None,
        generator=generator,
        prompt=prompt,
        name=name,
        force=force,
        **asdict(options),
    )
    for label, figures in artifact.report["diversity"].items():
        flags = artifact.report["flags"].get(label) or {}
        flagged = ", ".join(f"{count} {flag}" for flag, count in flags.items()) or "none flagged"
        log(
            f"{label}: {figures['profiles']} profiles, distinct-1 {figures['distinct_1']}, distinct-2 "
            f"{figures['distinct_2']}, mean pairwise similarity {figures['mean_pairwise_similarity']}; {flagged}"
        )
    emit(artifact, as_json)


# --- score, pair, eval -----------------------------------------------------------------------------------------


@app.command("score")
@command_options(ScoreOptions)
def score_command(
    options: ScoreOptions,
    profiles: Annotated[
        Optional[str], typer.Argument(help="Profiles reference (default: the latest profiles).")
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Score every profile: the predictor's label for each held-out target, whether it is right, P(true label)."""
    from lettingo_cli import api

    store = open_store(store_path)
    source = input_ref(profiles, "profiles")
    artifact = api.score(store, source, name=name, force=force, **asdict(options))
    counts = artifact.counts
    if counts["rows"]:
        log(f"{artifact.ref}: {counts['rows']} evaluations, {counts['correct']} right")
    emit(artifact, as_json)


# --- fit: a trained predictor, used by score and eval -----------------------------------------------------------


@app.command("fit")
@command_options(FitOptions)
def fit_command(
    options: FitOptions,
    split: Annotated[Optional[str], typer.Argument(help="Split reference (default: the latest split).")] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Fit a trained predictor once on the split's train users; writes a predictor artifact (score reuses it)."""
    from lettingo_cli import api

    store = open_store(store_path)
    artifact = api.fit(store, input_ref(split, "split"), force=force, **asdict(options))
    for kind, figures in artifact.report.get("out_of_fold", {}).items():
        log(f"  out of fold, {kind:12s} accuracy {figures['accuracy']:.3f}, macro F1 {figures['macro_f1']:.3f}")
    emit(artifact, as_json)


@app.command("pair")
@command_options(PairOptions)
def pair_command(
    options: PairOptions,
    scores: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Scores reference(s) (default: the latest scores; several: a pool, with --for; - reads stdin)."
        ),
    ] = None,
    jsonl: Annotated[Optional[Path], typer.Option("--jsonl", help="Also write TRL's preference format here.")] = None,
    allow_model_free: ModelFreeOption = False,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Turn scored profiles into DPO preference pairs (chosen = helped the predictor, rejected = did not)."""
    from lettingo_cli import api

    refs = read_refs(scores) if scores else [None]
    for ref in refs:
        if ref is not None and not ref.strip():  # an empty "$(...)" in a script must not mean "the latest"
            raise UsageError("empty scores reference")
    artifact = api.pair(
        open_store(store_path), refs, jsonl=jsonl, name=name, force=force, allow_model_free=allow_model_free,
        **asdict(options),
    )  # fmt: skip
    counts = artifact.counts
    log(
        f"{artifact.ref}: {counts['rows']} pairs from {counts['users_with_pairs']} users; no pairs from "
        f"{counts['all_right']} all-right, {counts['all_wrong']} all-wrong and {counts['no_pair_other']} other users"
    )
    if options.max_length_ratio is not None:
        log(
            f"  {counts['dropped_for_length']} candidate pairs dropped by --max-length-ratio {options.max_length_ratio}"
        )
    if options.max_stated_error is not None:
        log(
            f"  {counts['unfaithful_profiles']} profiles never chosen: their stated values are off by more than "
            f"--max-stated-error {options.max_stated_error}"
        )
    if artifact.report.get("length_ratio"):
        log(f"  chosen / rejected mean tokens: {artifact.report['length_ratio']}")
    if options.for_generator is not None:
        log(f"  chosen sides by writer / prompt: {artifact.report.get('chosen_by_writer')}")
    if jsonl:
        log(f"wrote {counts['rows']} pairs to {jsonl}")
    emit(artifact, as_json)


@app.command("eval")
@command_options(ScoreOptions)
def eval_command(
    options: ScoreOptions,
    profiles: Annotated[
        Optional[str], typer.Argument(help="Profiles reference (default: the latest profiles).")
    ] = None,
    no_profile: Annotated[
        bool, typer.Option("--no-profile", help="No profile: the 10H baseline (item only on a --recent 0 split).")
    ] = False,
    split: Annotated[Optional[str], typer.Option("--split", help="Split for --no-profile (default: latest).")] = None,
    users: Annotated[
        str, typer.Option("--users", help="Which users to evaluate: test | train | all | N | id,id,... | - (stdin).")
    ] = "test",
    compare: Annotated[
        Optional[list[str]],
        typer.Option("--compare", help="Two eval references: print A, B and A - B (give it twice)."),
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Accuracy, macro and weighted F1 with 95% bootstrap intervals and the confusion matrix."""
    from lettingo_cli import api
    from lettingo_cli.eval import below_baselines, compare_evals, comparison_lines, report_lines

    store = open_store(store_path)
    if compare:
        if len(compare) != 2:
            raise UsageError("--compare needs two eval references: --compare A --compare B")
        first, second = (store.resolve(ref, kind="eval") for ref in compare)
        result = compare_evals(store, first, second)
        if as_json:
            typer.echo(json.dumps({"a": first.to_json(), "b": second.to_json(), "a_minus_b": result}))
            return
        for line in comparison_lines(first, second, result):
            typer.echo(line)
        return
    artifact = api.evaluate(
        store,
        input_ref(profiles, "profiles"),
        no_profile=no_profile,
        split=input_ref(split, "split") if no_profile else None,
        users=users,
        listed=sys.stdin.read().split() if users == "-" else None,
        name=name,
        force=force,
        **asdict(options),
    )
    report = artifact.report
    for line in report_lines(artifact):
        log(line)
    if no_profile and (below := below_baselines(report)):
        log(f"warning: without a profile this predictor is below {', '.join(below)} on the same users")
    emit(artifact, as_json)


# --- export --------------------------------------------------------------------------------------------------


@app.command("export")
@command_options(ExportOptions)
def export_command(
    options: ExportOptions,
    adapter: Annotated[Optional[str], typer.Argument(help="Adapter reference (default: the latest adapter).")] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Also copy the GGUF files and report here, with a model card (README.md), an Ollama Modelfile "
            "and the prompt template.",
        ),
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Merge an adapter into its base, convert to GGUF, quantize and verify; writes an export artifact."""
    from lettingo_cli import api

    source = input_ref(adapter, "adapter")
    emit(api.export(open_store(store_path), source, out=out, name=name, force=force, **asdict(options)), as_json)


# --- the training commands, the command groups and the tools around the pipeline (cli_train.py, cli_ingest.py,
# cli_tools.py) --------------------------------------------------------------------------------------------------

app.command("dpo")(dpo_command)
app.command("grpo")(grpo_command)
app.command("sft")(sft_command)
app.add_typer(ingest_app, name="ingest")
app.add_typer(store_app, name="store")
app.command("profile")(profile_command)
app.command("doctor")(doctor_command)
app.command("completion")(completion_command)


def main() -> None:
    if "_LETTINGO_COMPLETE" in os.environ:  # a completion script is asking: register Typer's shell classes
        from typer._completion_classes import completion_init

        completion_init()
    app(prog_name="lettingo")


if __name__ == "__main__":
    main()
