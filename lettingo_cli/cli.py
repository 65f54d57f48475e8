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
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.core import TyperGroup

from lettingo_cli.dpo import DPOOptions
from lettingo_cli.errors import LettingoError, MissingDependency, UsageError
from lettingo_cli.export import ExportOptions
from lettingo_cli.gen import GenOptions
from lettingo_cli.options import command_options
from lettingo_cli.pair import PairOptions
from lettingo_cli.score import ScoreOptions
from lettingo_cli.split import SplitOptions
from lettingo_cli.store import KINDS
from lettingo_cli.version import __version__

if TYPE_CHECKING:
    from lettingo_cli.store import Artifact, Store

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
    "ingest", "split", "gen", "score", "fit", "pair", "eval", "dpo", "export", "profile",
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

            if (broken := broken_store(Store.opened, error)) is not None:  # SQLite found damage after the opening
                fail(str(broken), broken.exit_code)
            if (full := disk_full(Store.opened, error)) is not None:
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
ingest_app = typer.Typer(help="Read a ratings data set into the store as a dataset artifact.", no_args_is_help=True)
store_app = typer.Typer(help="Inspect and maintain the artifact store.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(store_app, name="store")

StoreOption = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="LETTINGO_STORE",
        help="The store's SQLite file; its blobs live beside it in <name>.blobs/.",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line) instead of references.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Redo the work even if the same run already finished.")]
NameOption = Annotated[Optional[str], typer.Option("--name", help="Artifact name (default: derived from the input).")]
DEFAULT_STORE = Path("lettingo.db")


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


# --- shared helpers ------------------------------------------------------------------------------------------


def open_store(path: Path, create: bool = True) -> Store:
    from lettingo_cli.store import Store

    return Store(path, create=create)


def read_refs(refs: list[str]) -> list[str]:
    """Expand `-` into the references on stdin (one per line or whitespace-separated, or --json lines)."""
    expanded = []
    for ref in refs:
        if ref != "-":
            expanded.append(ref)
            continue
        for line in sys.stdin.read().splitlines():
            line = line.strip()
            if line.startswith("{"):
                record = json.loads(line)
                expanded.append(str(record.get("ref") or record["id"]))
            elif line:
                expanded.extend(line.split())
    if not expanded:
        raise UsageError("no artifact reference given (stdin was empty)")
    return expanded


def input_ref(ref: Optional[str], kind: str) -> Optional[str]:
    """The one reference a command reads (None: the latest of its kind), with `-` read from stdin."""
    if ref is None:
        return None
    if not ref.strip():  # an empty "$(...)" in a script must not silently mean "the latest"
        raise UsageError(f"empty {kind} reference")
    refs = read_refs([ref])
    if len(refs) != 1:
        raise UsageError(f"expected one {kind} reference, got {len(refs)}: {' '.join(refs)}")
    return refs[0]


def resolve_input(store: Store, ref: Optional[str], kind: str) -> Artifact:
    """The artifact a command reads: the reference given, or the latest artifact of the kind it needs."""
    from lettingo_cli.api import resolve

    return resolve(store, input_ref(ref, kind), kind)


def emit(artifact: Artifact, as_json: bool) -> None:
    typer.echo(json.dumps(artifact.to_json()) if as_json else artifact.ref)


def log(message: str) -> None:
    typer.echo(message, err=True)


# --- ingest --------------------------------------------------------------------------------------------------


def _ingest(store_path: Path, source_format: str, source: Optional[Path], as_json: bool, **options) -> None:
    from lettingo_cli import api

    artifact = api.ingest(open_store(store_path), source_format, source, **options)
    counts = artifact.counts
    log(
        f"{artifact.ref}: {counts.get('users', 0):,} users, {counts.get('items', 0):,} items, "
        f"{counts.get('interactions', 0):,} interactions"
    )
    emit(artifact, as_json)


@ingest_app.command("movielens")
def ingest_movielens(
    folder: Annotated[
        Optional[Path],
        typer.Argument(help="A MovieLens folder: 100K (u.data, u.item) or CSV (ratings.csv, movies.csv)."),
    ] = None,
    download: Annotated[
        Optional[str],
        typer.Option(
            "--download",
            help="Fetch a GroupLens release once into $LETTINGO_CACHE/data, check its sha256s, ingest it: "
            "ml-100k or ml-latest-small.",
        ),
    ] = None,
    url: Annotated[
        Optional[str], typer.Option("--url", help="Fetch --download's zip from this address (a mirror).")
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """MovieLens 100K or a CSV release (latest-small, 25M, ...); genres and year go into the item text."""
    _ingest(store, "movielens", folder, as_json, download=download, url=url, name=name, force=force)


@ingest_app.command("amazon")
def ingest_amazon(
    reviews: Annotated[Path, typer.Argument(help="Amazon Review Data 2018 reviews (JSON lines, .json.gz).")],
    meta: Annotated[
        Optional[Path], typer.Option("--meta", help="The category's metadata file (meta_*.json.gz).")
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Amazon 2018 5-core reviews: exact duplicates dropped; item text from title or brand + category + description."""
    _ingest(store, "amazon", reviews, as_json, meta=meta, name=name, force=force)


def _ingest_table(
    file_format: str, file: Path, user, item, rating, time, title, text, delimiter, name, force, as_json, store
):
    columns = {"user": user, "item": item, "rating": rating, "time": time, "title": title, "text": tuple(text or ())}
    _ingest(store, file_format, file, as_json, delimiter=delimiter, name=name, force=force, **columns)


UserCol = Annotated[str, typer.Option("--user", help="Column with the user id.")]
ItemCol = Annotated[str, typer.Option("--item", help="Column with the item id.")]
RatingCol = Annotated[str, typer.Option("--rating", help="Column with the numeric rating.")]
TimeCol = Annotated[
    Optional[str],
    typer.Option(
        "--time", help="Column with the time: unix seconds or ISO 8601 (default: the file order is the time order)."
    ),
]
TitleCol = Annotated[Optional[str], typer.Option("--title", help="Column with the item title.")]
TextCol = Annotated[Optional[list[str]], typer.Option("--text", help="Extra item-text column (repeatable).")]


@ingest_app.command("csv")
def ingest_csv(
    file: Annotated[Path, typer.Argument(help="A CSV file with a header row.")],
    user: UserCol,
    item: ItemCol,
    rating: RatingCol,
    time: TimeCol = None,
    title: TitleCol = None,
    text: TextCol = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field separator.")] = ",",
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Any CSV of (user, item, rating[, time]) rows."""
    _ingest_table("csv", file, user, item, rating, time, title, text, delimiter, name, force, as_json, store)


@ingest_app.command("jsonl")
def ingest_jsonl(
    file: Annotated[Path, typer.Argument(help="A JSON-lines file (.jsonl or .jsonl.gz), one object per line.")],
    user: UserCol,
    item: ItemCol,
    rating: RatingCol,
    time: TimeCol = None,
    title: TitleCol = None,
    text: TextCol = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Any JSON-lines file of (user, item, rating[, time]) records."""
    _ingest_table("jsonl", file, user, item, rating, time, title, text, ",", name, force, as_json, store)


# --- split ---------------------------------------------------------------------------------------------------


@app.command("split")
@command_options(SplitOptions)
def split_command(
    options: SplitOptions,
    dataset: Annotated[Optional[str], typer.Argument(help="Dataset reference (default: the latest dataset).")] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Split users into disjoint train/test sets and each user's history into profile history, recent, targets."""
    from lettingo_cli import api
    from lettingo_cli.split import format_balance

    artifact = api.split(open_store(store), input_ref(dataset, "dataset"), name=name, force=force, **asdict(options))
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
        str, typer.Option("--users", help="all | train | test | N (first N by id) | id,id,... | - (ids on stdin).")
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
    prompt: Annotated[
        Optional[Path], typer.Option("--prompt", help="Your own prompt template (text with {history}).")
    ] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Write free-form profiles of each selected user from their profile history: N per generator."""
    from lettingo_cli import api

    artifact = api.gen(
        open_store(store),
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
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Score every profile: the predictor's label for each held-out target, whether it is right, P(true label)."""
    from lettingo_cli import api

    opened = open_store(store)
    source = resolve_input(opened, profiles, "profiles")
    artifact = api.score(opened, source, name=name, force=force, **asdict(options))
    counts = artifact.counts
    if counts["rows"]:
        log(f"{artifact.ref}: {counts['rows']} evaluations, {counts['correct']} right")
    emit(artifact, as_json)


# --- fit: a trained predictor, used by score and eval -----------------------------------------------------------


@app.command("fit")
def fit_command(
    split: Annotated[Optional[str], typer.Argument(help="Split reference (default: the latest split).")] = None,
    predictor: Annotated[
        str, typer.Option("--predictor", help="The trained predictor: reader:bow[?profiles=REF][&user_mean=1].")
    ] = "reader:bow",
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Fit a trained predictor once on the split's train users; writes a predictor artifact (score reuses it)."""
    from lettingo_cli import api

    opened = open_store(store)
    artifact = api.fit(opened, resolve_input(opened, split, "split"), predictor=predictor, force=force)
    for kind, figures in artifact.report.get("out_of_fold", {}).items():
        log(f"  out of fold, {kind:12s} accuracy {figures['accuracy']:.3f}, macro F1 {figures['macro_f1']:.3f}")
    emit(artifact, as_json)


@app.command("pair")
@command_options(PairOptions)
def pair_command(
    options: PairOptions,
    scores: Annotated[Optional[str], typer.Argument(help="Scores reference (default: the latest scores).")] = None,
    jsonl: Annotated[Optional[Path], typer.Option("--jsonl", help="Also write TRL's preference format here.")] = None,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Turn scored profiles into DPO preference pairs (chosen = helped the predictor, rejected = did not)."""
    from lettingo_cli import api

    artifact = api.pair(
        open_store(store), input_ref(scores, "scores"), jsonl=jsonl, name=name, force=force, **asdict(options)
    )
    counts = artifact.counts
    log(
        f"{artifact.ref}: {counts['rows']} pairs from {counts['users_with_pairs']} users; no pairs from "
        f"{counts['all_right']} all-right, {counts['all_wrong']} all-wrong and {counts['no_pair_other']} other users"
    )
    if options.max_length_ratio is not None:
        log(
            f"  {counts['dropped_for_length']} candidate pairs dropped by --max-length-ratio {options.max_length_ratio}"
        )
    if artifact.report.get("length_ratio"):
        log(f"  chosen / rejected mean tokens: {artifact.report['length_ratio']}")
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
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Accuracy, macro and weighted F1 with 95% bootstrap intervals and the confusion matrix."""
    from lettingo_cli import api
    from lettingo_cli.eval import below_baselines, compare_evals, comparison_lines, report_lines

    opened = open_store(store)
    if compare:
        if len(compare) != 2:
            raise UsageError("--compare needs two eval references: --compare A --compare B")
        first, second = (opened.resolve(ref, kind="eval") for ref in compare)
        result = compare_evals(opened, first, second)
        if as_json:
            typer.echo(json.dumps({"a": first.to_json(), "b": second.to_json(), "a_minus_b": result}))
            return
        for line in comparison_lines(first, second, result):
            typer.echo(line)
        return
    if no_profile and profiles:
        raise UsageError("give either PROFILES or --no-profile, not both")
    artifact = api.evaluate(
        opened,
        None if no_profile else resolve_input(opened, profiles, "profiles"),
        no_profile=no_profile,
        split=resolve_input(opened, split, "split") if no_profile else None,
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


# --- dpo -----------------------------------------------------------------------------------------------------


@app.command("dpo")
@command_options(DPOOptions)
def dpo_command(
    options: DPOOptions,
    pairs: Annotated[Optional[str], typer.Argument(help="Pairs reference (default: the latest pairs).")] = None,
    base: Annotated[
        Optional[str],
        typer.Option("--base", help="gemma-3-270m (default), an HF model directory, or export:NAME (another round)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")
    ] = False,
    name: NameOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """LoRA-DPO-train the profile generator on preference pairs (TRL); writes an adapter artifact."""
    from lettingo_cli import api
    from lettingo_cli.dpo import last_step

    opened = open_store(store)
    artifact = api.dpo(
        opened, input_ref(pairs, "pairs"), base=base, resume=resume, name=name, force=force, **asdict(options)
    )
    if artifact is None:  # a worker rank under `accelerate launch`: rank 0 reports
        return
    step = last_step(opened, artifact)
    if step:
        log(
            f"{artifact.ref}: {artifact.counts['steps']} steps on {artifact.counts['pairs']} pairs; last step loss "
            f"{step['loss']:.4f}, margin {step['rewards_margins']}, accuracy {step['rewards_accuracies']}"
        )
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
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Merge an adapter into its base, convert to GGUF, quantize and verify; writes an export artifact."""
    from lettingo_cli import api

    source = input_ref(adapter, "adapter")
    emit(api.export(open_store(store), source, out=out, name=name, force=force, **asdict(options)), as_json)


# --- profile ---------------------------------------------------------------------------------------------------


@app.command("profile")
def profile_command(
    file: Annotated[Path, typer.Argument(help="A CSV or JSON lines file of (user, item, rating[, time]) rows.")],
    generator: Annotated[
        Optional[str],
        typer.Option(
            "--generator",
            help="gemma-3-270m (default) | gguf:FILE.gguf | gguf:EXPORT | openai:MODEL@URL[?style=completion] | "
            "hf:MODEL_DIR | history-text | stats-text.",
        ),
    ] = None,
    file_format: Annotated[
        Optional[str], typer.Option("--format", help="csv or jsonl (default: from the file's suffix).")
    ] = None,
    user: UserCol = "user",
    item: ItemCol = "item",
    rating: RatingCol = "rating",
    time: TimeCol = None,
    title: TitleCol = None,
    text: TextCol = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field separator (CSV).")] = ",",
    n: Annotated[int, typer.Option("--n", help="Profiles per user.")] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per profile.")] = 200,
    history: Annotated[int, typer.Option(help="The newest interactions shown per user.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed; each profile's seed derives from it, the user and the sample.")] = 0,
    prompt: Annotated[
        Optional[Path], typer.Option("--prompt", help="Your own prompt template (text with {history}).")
    ] = None,
    dislike_max: Annotated[int, typer.Option(help="Ratings at or below this are 'disliked'.")] = 2,
    like_min: Annotated[int, typer.Option(help="Ratings at or above this are 'liked'.")] = 4,
    value_words: Annotated[str, typer.Option(help="How a rating is shown, with {value}.")] = "{value}/5",
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Profiles of the users of a history file, printed (no store needed): the prompt, history window, seeds and
    cleaning of gen. --json: one line per profile with user, sample, profile, tokens, flags."""
    from lettingo_cli.gen import GenOptions
    from lettingo_cli.ingest import read_table
    from lettingo_cli.profile_file import Thresholds, histories, load_generator, write_profiles
    from lettingo_cli.profile_file import file_format as format_of

    options = GenOptions(n=n, temperature=temperature, max_tokens=max_tokens, history=history, seed=seed)
    thresholds = Thresholds(dislike_max, like_min, value_words)
    chosen = format_of(file, file_format)
    parsed = read_table(file, chosen, user, item, rating, time, title, tuple(text or ()), delimiter)
    rows = histories(parsed, history, thresholds)
    backend = load_generator(generator, store)
    try:
        for record in write_profiles(backend, rows, options, prompt):
            if as_json:
                typer.echo(json.dumps(record, ensure_ascii=False))
            else:
                header = f"user {record['user']}" + (f" (profile {record['sample'] + 1})" if n > 1 else "")
                flags = f" [{', '.join(record['flags'])}]" if record["flags"] else ""
                typer.echo(f"{header}{flags}:\n{record['profile']}\n")
    finally:
        backend.close()


# --- store ---------------------------------------------------------------------------------------------------


Kind = Enum("Kind", {kind: kind for kind in KINDS}, type=str)  # the artifact kinds, as a --kind choice


@store_app.command("ls")
def store_ls(
    kind: Annotated[Optional[Kind], typer.Option("--kind", help="Only artifacts of this kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="NDJSON: one artifact object per line.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """List complete artifacts, oldest first: `kind:name@vN` per line (or NDJSON)."""
    opened = open_store(store, create=False)
    for artifact in opened.list(kind=kind.value if kind else None):
        emit(artifact, as_json)


@store_app.command("show")
def store_show(
    ref: Annotated[str, typer.Argument(help="Artifact reference: id, name@vN, name:latest, kind:name, or -.")],
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Show one artifact: counts, parameters, report, versions, hash."""
    opened = open_store(store, create=False)
    refs = read_refs([ref])
    for one in refs:
        artifact = opened.resolve(one)
        if as_json:
            emit(artifact, True)
            continue
        typer.echo(f"{artifact.ref}  (id {artifact.id})")
        typer.echo(f"  created   {artifact.created_at} by lettingo {artifact.lettingo_version}")
        typer.echo(f"  hash      {artifact.content_hash}")
        typer.echo(f"  counts    {json.dumps(artifact.counts)}")
        typer.echo(f"  params    {json.dumps(artifact.params)}")
        if artifact.report:
            typer.echo(f"  report    {json.dumps(artifact.report)}")
        for entry in opened.files(artifact):
            typer.echo(f"  file      {entry['path']}  {entry['size']:,} bytes  {entry['blob_hash'][:12]}")
        typer.echo(f"  packages  {json.dumps(artifact.package_versions)}")


@store_app.command("lineage")
def store_lineage(
    ref: Annotated[str, typer.Argument(help="Artifact reference (or - for stdin).")],
    as_json: Annotated[bool, typer.Option("--json", help="NDJSON: one line per artifact in the chain.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Print the chain of runs and inputs that produced an artifact, back to the dataset."""
    opened = open_store(store, create=False)
    for one in read_refs([ref]):
        for node in opened.lineage(opened.resolve(one)):
            artifact, run = node["artifact"], node["run"]
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            **artifact.to_json(),
                            "depth": node["depth"],
                            "role": node["role"],
                            "run": {k: run[k] for k in ("id", "stage", "started_at", "finished_at")} if run else None,
                        }
                    )
                )
                continue
            indent = "  " * node["depth"]
            role = f"{node['role']}: " if node["role"] else ""
            made_by = f"  <- {run['stage']} (run {run['id']}, {run['finished_at'] or 'unfinished'})" if run else ""
            typer.echo(f"{indent}{role}{artifact.ref}{made_by}")


@store_app.command("verify")
def store_verify(
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Rehash every blob and artifact; exit 4 if anything does not match its recorded hash."""
    from lettingo_cli.errors import IntegrityError

    report = open_store(store, create=False).verify()
    if as_json:
        typer.echo(json.dumps(report))
    for problem in report["problems"]:
        log(f"  {problem}")
    summary = f"{report['artifacts']} artifacts, {report['blobs']} blobs, {report['pending']} pending"
    if not report["ok"]:
        raise IntegrityError(f"{len(report['problems'])} problem(s) in {store}: {summary}")
    if not as_json:
        typer.echo(f"ok: {summary}")


@store_app.command("gc")
def store_gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    as_json: JsonOption = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Remove blobs no artifact refers to (and temp files of interrupted writes)."""
    result = open_store(store, create=False).gc(dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for path in result["removed"]:
        typer.echo(path)
    verb = "would free" if dry_run else "freed"
    log(f"{len(result['removed'])} file(s), {verb} {result['bytes']:,} bytes")


# --- doctor and completion -----------------------------------------------------------------------------------


@app.command("doctor")
def doctor_command(as_json: JsonOption = False) -> None:
    """Check that the optional model stack is installed and that its fragile parts work together."""
    from lettingo_cli.doctor import run_checks

    checks = run_checks()
    for check in checks:
        if as_json:
            typer.echo(json.dumps(check))
        else:
            mark = "ok  " if check["ok"] else "FAIL"
            typer.echo(f"{mark} {check['name']}: {check['detail']}")
    failed = [check["name"] for check in checks if not check["ok"]]
    if failed:
        raise MissingDependency(f"{len(failed)} check(s) failed: {', '.join(failed)}; run ./install.sh")


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion_script(shell: str) -> str:
    """The completion script Typer generates for this CLI (completions/ holds one per shell)."""
    from typer.completion import get_completion_script

    return get_completion_script(prog_name="lettingo", complete_var="_LETTINGO_COMPLETE", shell=shell)


@app.command("completion")
def completion_command(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the shell completion script.

    e.g. `lettingo completion bash > ~/.local/share/bash-completion/completions/lettingo`"""
    typer.echo(completion_script(shell.value), nl=False)


def main() -> None:
    if "_LETTINGO_COMPLETE" in os.environ:  # a completion script is asking: register Typer's shell classes
        from typer._completion_classes import completion_init

        completion_init()
    app(prog_name="lettingo")


if __name__ == "__main__":
    main()
