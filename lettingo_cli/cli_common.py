"""What every command of the command line shares: the common options, opening the store, reading references
(`-` from stdin), printing results (stdout) and logs (stderr)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from lettingo_cli.errors import UsageError

if TYPE_CHECKING:
    from lettingo_cli.store import Artifact, Store

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
# the prompt a writer is given: a built-in one by name, or a template file (prompts.template_for)
PromptOption = Annotated[
    Optional[str],
    typer.Option(
        "--prompt",
        help="broad (default) | levels | genres | recent (built-in prompts, in each writer's style) | a template file "
        "(text with {history}).",
    ),
]
# the options of every command that trains the generator
BaseOption = Annotated[
    Optional[str],
    typer.Option("--base", help="gemma-3-270m (default), an HF model directory, or export:NAME (another round)."),
]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]
ModelFreeOption = Annotated[
    bool,
    typer.Option(
        "--allow-model-free",
        help="Also take profiles of a writer without a model (history-text, stats-text, swap): controls, refused "
        "by default.",
    ),
]
DEFAULT_STORE = Path("lettingo.db")


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


def emit(artifact: Artifact, as_json: bool) -> None:
    typer.echo(json.dumps(artifact.to_json()) if as_json else artifact.ref)


def log(message: str) -> None:
    typer.echo(message, err=True)
