"""Helpers shared by the benchmark scripts: machine facts and writing results under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MOVIELENS_100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k"


def movielens_split(folder: Path):
    """A store in `folder` with MovieLens 100K ingested and split with the defaults: (store, split)."""
    from lettingo_cli.ingest import read_movielens, write_dataset
    from lettingo_cli.split import SplitOptions, split_dataset
    from lettingo_cli.store import Store

    if not MOVIELENS_100K.exists():
        sys.exit(f"{MOVIELENS_100K} is not present: this benchmark needs MovieLens 100K")
    store = Store(Path(folder) / "lettingo.db")
    dataset = write_dataset(store, read_movielens(MOVIELENS_100K), "movielens-100k", {})
    return store, split_dataset(store, dataset, "movielens-100k", SplitOptions())


def movielens_test_histories(count: int, history: int = 30) -> tuple[list[str], dict]:
    """The first `count` test users of MovieLens 100K's default split and their profile histories of `history`
    ratings (the store is made in a temporary folder and dropped)."""
    import tempfile

    from lettingo_cli.split_data import load_histories, select_users

    with tempfile.TemporaryDirectory() as tmp:
        store, split = movielens_split(Path(tmp))
        users = select_users(store, split, "test")[:count]
        return users, load_histories(store, split, users, history)


def profile_requests(backend, users: list[str], histories: dict, n: int) -> list:
    """The requests `gen` makes (seed 0): the built-in template for the backend's style, n samples per user."""
    from lettingo_cli.backends.base import Request
    from lettingo_cli.gen import profile_seed
    from lettingo_cli.prompts import builtin_template, render

    template = builtin_template(backend.chat)
    return [
        Request(render(template, histories[user], backend.chat), profile_seed(0, user, backend.name, sample))
        for user in users
        for sample in range(n)
    ]


CHOSEN = (
    "Enjoys tense crime thrillers, war films and fast action from the eighties and nineties, and rates them "
    "generously when the story is tight. Finds period romances and musicals dull and scores them low. "
) * 2
REJECTED = (
    "Likes movies. Watches many movies and gives them ratings. Some movies are good and some movies are "
    "not good, and the user rates the good ones higher than the ones that are not good. "
) * 2


def movielens_pairs(folder: Path, count: int):
    """A store with MovieLens 100K split and a pairs artifact of `count` train users: their real generation
    prompts (profile-completion-v1, 30 ratings) with two fixed ~100-token profiles (for speed, not learning)."""
    from lettingo_cli.prompts import builtin_template, render
    from lettingo_cli.split_data import load_histories, select_users

    store, split = movielens_split(folder)
    users = select_users(store, split, "train")[:count]
    histories = load_histories(store, split, users, 30)
    pairs = store.begin("pairs", "bench", {}, None)
    template = builtin_template(False)
    store.insert_rows(
        pairs,
        "pairs",
        [
            {
                "user_id": u,
                "pair_index": 0,
                "prompt": render(template, histories[u], False),
                "chosen": CHOSEN,
                "rejected": REJECTED,
            }
            for u in users
        ],
    )
    return store, store.finalize(pairs)


def cpu_model() -> str:
    """The CPU's model name (machines of one kind differ: an Intel Xeon with AMX, an AMD EPYC without)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def generated_by() -> dict:
    """The script and the command that are writing a results file (run as `python -m bench.NAME ...`)."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    module = spec.name if spec is not None else Path(sys.argv[0]).with_suffix("").name
    return {"script": module.replace(".", "/") + ".py", "command": shlex.join(["python3", "-m", module, *sys.argv[1:]])}


def write_result(name: str, payload: dict, folder: Path = RESULTS) -> Path:
    """bench/results/NAME.json: the machine, the script and command that wrote it, and the payload."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "generated_by": generated_by(), **payload}, indent=2) + "\n")
    return path


def stage_seconds(times: Path) -> dict[str, float]:
    """Each stage's seconds from an experiment's times file ("NAME START END" lines, appended as stages finish).
    A stage appears once however often its script ran: its longest run, the one that did the work (a rerun that
    finds the stage in the store's cache takes seconds; a stage resumed after a crash counts its longer part)."""
    seconds: dict[str, float] = {}
    for line in times.read_text().splitlines():
        if line.strip():
            name, start, end = line.split()
            seconds[name] = max(seconds.get(name, 0.0), round(float(end) - float(start), 1))
    return seconds


def paired_difference(compared: dict, metrics) -> dict:
    """eval's paired comparison (`compare_evals`) as results files hold it: the users, and per metric the difference
    with its 95% interval, rounded to 4 places ({"users": 0} when no user was in both)."""
    if not compared.get("users"):
        return {"users": 0}
    out = {"users": compared["users"]}
    for metric in metrics:
        low, high = compared["ci95"][metric]
        value = round(compared["difference"][metric], 4)
        out[metric] = {"value": value, "ci_low": round(low, 4), "ci_high": round(high, 4)}
    return out


def estimate(report: dict, metric: str) -> dict:
    """An eval report's figure as results files hold it: {value, ci_low, ci_high}, rounded to 4 places."""
    low, high = report["ci95"][metric]
    return {"value": round(report[metric], 4), "ci_low": round(low, 4), "ci_high": round(high, 4)}


def mean_tokens(store, profiles) -> float | None:
    """The mean tokens of a profiles artifact's profiles, to one place (None when it holds none)."""
    tokens = [row["n_tokens"] or 0 for row in store.rows(profiles, "profiles")]
    return round(sum(tokens) / len(tokens), 1) if tokens else None


LAST_STEPS = 10  # one summary of a training curve everywhere: the mean of its last 10 logged steps


def last_steps(steps: list[dict], keys: tuple[str, ...]) -> dict:
    """The mean of each key over the last LAST_STEPS logged steps (None where no step logged it)."""
    last = steps[-LAST_STEPS:]
    out = {}
    for key in keys:
        values = [s[key] for s in last if s.get(key) is not None]
        out[key] = round(sum(values) / len(values), 4) if values else None
    return {"steps_averaged": len(last), **out}


def print_table(headers: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    for line in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)))
