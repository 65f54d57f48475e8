"""The commands around the pipeline: `profile` (a history file's profiles, no store), `store` (inspect and maintain
the artifact store), `doctor` and `completion`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lettingo_cli.cli_common import (
    DEFAULT_STORE,
    JsonOption,
    PromptOption,
    StoreOption,
    emit,
    log,
    open_store,
    read_refs,
)
from lettingo_cli.errors import MissingDependency
from lettingo_cli.options import command_options
from lettingo_cli.profile_file import ProfileOptions
from lettingo_cli.store import KINDS

# The column options of `lettingo profile`, as ingest csv's (JsonColumns) but `--user`, `--item` and `--rating`
# default to those names.
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


store_app = typer.Typer(help="Inspect and maintain the artifact store.", no_args_is_help=True)


@command_options(ProfileOptions)
def profile_command(
    options: ProfileOptions,
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
    prompt: PromptOption = None,
    dislike_max: Annotated[int, typer.Option(help="Ratings at or below this are 'disliked'.")] = 2,
    like_min: Annotated[int, typer.Option(help="Ratings at or above this are 'liked'.")] = 4,
    value_words: Annotated[str, typer.Option(help="How a rating is shown, with {value}.")] = "{value}/5",
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Profiles of the users of a history file, printed (no store needed): the prompt, history window, seeds and
    cleaning of gen. --json: one line per profile with user, sample, profile, tokens, flags."""
    from lettingo_cli.ingest import read_table
    from lettingo_cli.profile_file import file_format as format_of
    from lettingo_cli.profile_file import histories, load_generator, write_profiles
    from lettingo_cli.split import SplitOptions

    thresholds = SplitOptions(dislike_max=dislike_max, like_min=like_min, value_words=value_words)  # checked
    chosen = format_of(file, file_format)
    parsed = read_table(file, chosen, user, item, rating, time, title, tuple(text or ()), delimiter)
    rows = histories(parsed, options.history, thresholds)
    backend = load_generator(generator, store_path)
    try:
        for record in write_profiles(backend, rows, options, prompt, thresholds.value_words):
            if as_json:
                typer.echo(json.dumps(record, ensure_ascii=False))
            else:
                header = f"user {record['user']}" + (f" (profile {record['sample'] + 1})" if options.n > 1 else "")
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
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """List complete artifacts, oldest first: `kind:name@vN` per line (or NDJSON)."""
    store = open_store(store_path, create=False)
    for artifact in store.list(kind=kind.value if kind else None):
        emit(artifact, as_json)


@store_app.command("show")
def store_show(
    ref: Annotated[str, typer.Argument(help="Artifact reference: id, name@vN, name:latest, kind:name, or -.")],
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Show one artifact: counts, parameters, report, versions, hash."""
    store = open_store(store_path, create=False)
    refs = read_refs([ref])
    for one in refs:
        artifact = store.resolve(one)
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
        for entry in store.files(artifact):
            typer.echo(f"  file      {entry['path']}  {entry['size']:,} bytes  {entry['blob_hash'][:12]}")
        typer.echo(f"  packages  {json.dumps(artifact.package_versions)}")


@store_app.command("lineage")
def store_lineage(
    ref: Annotated[str, typer.Argument(help="Artifact reference (or - for stdin).")],
    as_json: Annotated[bool, typer.Option("--json", help="NDJSON: one line per artifact in the chain.")] = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Print the chain of runs and inputs that produced an artifact, back to the dataset."""
    store = open_store(store_path, create=False)
    for one in read_refs([ref]):
        for node in store.lineage(store.resolve(one)):
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
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Rehash every blob and artifact; exit 4 if anything does not match its recorded hash."""
    from lettingo_cli.errors import IntegrityError

    report = open_store(store_path, create=False).verify()
    if as_json:
        typer.echo(json.dumps(report))
    for problem in report["problems"]:
        log(f"  {problem}")
    summary = f"{report['artifacts']} artifacts, {report['blobs']} blobs, {report['pending']} pending"
    if not report["ok"]:
        raise IntegrityError(f"{len(report['problems'])} problem(s) in {store_path}: {summary}")
    if not as_json:
        typer.echo(f"ok: {summary}")


@store_app.command("gc")
def store_gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    as_json: JsonOption = False,
    store_path: StoreOption = DEFAULT_STORE,
) -> None:
    """Remove blobs no artifact refers to (and temp files of interrupted writes)."""
    result = open_store(store_path, create=False).gc(dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for path in result["removed"]:
        typer.echo(path)
    verb = "would free" if dry_run else "freed"
    log(f"{len(result['removed'])} file(s), {verb} {result['bytes']:,} bytes")


# --- doctor and completion -----------------------------------------------------------------------------------


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


def completion_command(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the shell completion script.

    e.g. `lettingo completion bash > ~/.local/share/bash-completion/completions/lettingo`"""
    typer.echo(completion_script(shell.value), nl=False)
