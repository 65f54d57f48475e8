"""The stage protocol, written once: every stage runs through a StageRun.

    run = store.stage("gen", "profiles", name, params, {"split": split.id}, force=force, resumable=True, verbs=VERBS)
    if run.cached:                     # the same run finished before: its artifact, nothing redone
        return run.cached
    with run:                          # a new pending artifact, or the one an interrupted run left
        ... add rows / files to run.artifact ...
        return run.finish(counts=..., report=..., stats=...)

What happens to a run that fails (an error, Ctrl-C) depends on how the stage works, and the stage says so:
  resumable=True   its pending artifact stays; the same command resumes it (gen, score, dpo, grpo: long stages
                   that write finished chunks as they go)
  atomic=True      everything from the run record to the sealed artifact is one transaction: it lands
                   whole or not at all (ingest, split, pair, eval: short stages that write rows only)
  neither          the pending artifact is deleted (export: long, but nothing to resume)
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from lettingo_cli.store.artifact import Artifact


class Verbs(NamedTuple):
    """How the protocol's messages name what a stage does; each stage declares its own (gen: generate, generated)."""

    verb: str = "run"
    done: str = "ran"


def say(message: str) -> None:
    """A line for the user on stderr (stdout carries only results)."""
    print(message, file=sys.stderr, flush=True)


class StageRun:
    def __init__(
        self,
        store,  # the Store (store.py makes a StageRun through Store.stage: no type import back to it)
        stage: str,
        kind: str,
        name: str,
        params: dict,
        inputs: dict,
        *,
        key_params: dict | None = None,
        force: bool = False,
        resumable: bool = False,
        atomic: bool = False,
        quiet: bool = False,
        verbs: Verbs = Verbs(),
    ):
        """`params` are recorded with the run and the artifact; the run key is computed over `key_params`
        (default: params and the name) and `inputs` ({role: artifact id or ids}); `verbs` word its messages."""
        if resumable and atomic:
            raise ValueError("a run is either resumable or atomic")
        self.store, self.stage, self.kind, self.name = store, stage, kind, name
        self.params, self.inputs = params, inputs
        self.resumable, self.atomic, self.force = resumable, atomic, force
        self.key = store.run_key(stage, inputs, {**params, "name": name} if key_params is None else key_params)
        self.cached: Artifact | None = None if force else store.cached(self.key)
        self.artifact: Artifact | None = None  # the pending artifact, inside `with`
        self.resumed = False
        self.result: Artifact | None = None
        self._transaction = ExitStack()
        if self.cached is not None and not quiet:
            say(f"already {verbs.done} as {self.cached.ref} (use --force to {verbs.verb} again)")

    @property
    def pending(self) -> Artifact | None:
        """The pending artifact an interrupted run with this key left, if any (never with --force)."""
        return None if self.force else self.store.pending(self.key)

    def __enter__(self) -> StageRun:
        if self.cached is not None:
            raise RuntimeError(f"{self.stage}: the run is cached as {self.cached.ref}; return it instead")
        if self.resumable and (pending := self.pending) is not None:
            self.artifact, self.resumed = pending, True
            say(f"resuming an interrupted {self.stage} run of {self.name}")
            return self
        if self.atomic:
            self._transaction.enter_context(self.store.transaction())
        run_id = self.store.start_run(self.stage, self.key, self.params, self.inputs)
        self.artifact = self.store.begin(self.kind, self.name, self.params, run_id)
        return self

    def finish(self, counts: dict | None = None, report: dict | None = None, stats: dict | None = None) -> Artifact:
        """Seal the pending artifact (see Store.finalize) and record the run's stats."""
        self.result = self.store.finalize(self.artifact, counts=counts, report=report, stats=stats)
        return self.result

    def __exit__(self, error_type, error, traceback) -> bool:
        failed = error_type is not None or self.result is None
        if self.atomic:  # rolls back everything on an error, commits otherwise
            self._transaction.__exit__(error_type, error, traceback)
        elif failed and not self.resumable and self.artifact is not None:
            self.store.discard(self.artifact)
        if error_type is None and self.result is None:
            raise RuntimeError(f"{self.stage}: the run ended without finish()")
        return False
