"""What lettingo says to people: log lines and progress bars, both on stderr (stdout carries only results)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


def log(message: str) -> None:
    """A line for the user on stderr."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def stage_progress(description: str, total: int, unit: str):
    """Yields `advance(count, tokens=0)`; shows done/total, units/s, tokens/s and the ETA."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    started = time.perf_counter()
    tokens = [0]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(count: int = 1, new_tokens: int = 0) -> None:
            tokens[0] += new_tokens
            elapsed = max(time.perf_counter() - started, 1e-9)
            done = progress.tasks[0].completed + count
            rate = f"{done / elapsed:.2f} {unit}/s"
            if tokens[0]:
                rate += f", {tokens[0] / elapsed:.0f} tok/s"
            progress.update(task, advance=count, rate=rate)

        yield advance
