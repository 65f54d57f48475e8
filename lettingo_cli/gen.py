"""Stage `gen`: free-form profiles of each selected user, N per generator, from the user's profile history.

Several generators = the paper's collaborative exploration. The work is cut into fixed chunks of users; each
chunk's profiles are written in one transaction into a pending artifact, so an interrupted run keeps every
finished chunk and the same command resumes with the rest, completing the same artifact (on llama.cpp the
profiles written after the resume can differ from an uninterrupted run's in rounding: the batch mixes chunks).
The artifact is sealed with a diversity report per generator.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass

from lettingo_cli.backends.base import Request, SamplingOptions
from lettingo_cli.backends.written import WrittenGenerator
from lettingo_cli.console import stage_progress
from lettingo_cli.errors import UsageError
from lettingo_cli.options import option
from lettingo_cli.profiles import clean_profile, diversity, profile_flags
from lettingo_cli.prompts import (
    COMPLETION_STOPS,
    HISTORY_LINES,
    PROFILE_TOKENS,
    TEMPERATURE,
    Template,
    prompt_hash,
    render,
    template_for,
)
from lettingo_cli.split_data import load_histories, value_words
from lettingo_cli.store import Artifact, Store, Verbs
from lettingo_cli.store.digest import canonical_json

VERBS = Verbs("generate", "generated")

CHUNK_USERS = 4  # users per resumable unit of work: a crash loses at most this many users' profiles


@dataclass(frozen=True)
class GenOptions:
    """The options of `lettingo gen` (each field is also its flag and a key of its --config YAML)."""

    n: int = option(4, "Profiles per user per generator.")
    temperature: float = option(TEMPERATURE, "Sampling temperature (the paper: 1.0).")
    max_tokens: int = option(PROFILE_TOKENS, "Most new tokens per profile.")
    history: int = option(HISTORY_LINES, "Most profile-history interactions shown per user.")
    seed: int = option(0, "Seed; each profile's seed derives from it, the user and the sample.")

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_tokens < 1 or self.history < 1:
            raise UsageError("--n, --max-tokens and --history must be >= 1")
        if self.temperature < 0:
            raise UsageError("--temperature must be >= 0")


def profile_seed(seed: int, user_id: str, generator: str, sample_index: int) -> int:
    digest = hashlib.sha256(canonical_json([seed, user_id, generator, sample_index]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# --- the stage --------------------------------------------------------------------------------------------------


def generate_profiles(
    store: Store,
    split: Artifact,
    generator_specs: list[str | None],
    users: list[str],
    options: GenOptions,
    name: str,
    prompt: str | None = None,
    force: bool = False,
) -> Artifact:
    """The stage: load each generator's backend (None: the default generator), write the profiles, close."""
    from lettingo_cli.backends import load_backend

    backends = []
    try:
        for spec in generator_specs:
            backends.append(load_backend(spec, store=store))
        return write_profiles(store, split, backends, users, options, name, prompt, force)
    finally:
        for backend in backends:
            backend.close()


def write_profiles(
    store: Store,
    split: Artifact,
    backends: list,
    users: list[str],
    options: GenOptions,
    name: str,
    prompt: str | None = None,
    force: bool = False,
) -> Artifact:
    templates: dict[str, Template] = {b.name: template_for(prompt, b.chat) for b in backends}
    histories = load_histories(store, split, users, options.history)
    empty = [user for user, rows in histories.items() if not rows]
    if empty:
        raise UsageError(f"{len(empty)} selected user(s) have no profile history in {split.ref}, e.g. {empty[0]}")

    params = {
        "split": split.id,
        "users": users,
        "generators": [{"label": b.name, "spec": b.spec, "chat": b.chat, **b.details} for b in backends],
        "templates": {label: {"ref": t.ref, "name": t.name, "text": t.text} for label, t in templates.items()},
        **asdict(options),
    }
    key_params = {**params, "name": name, "generators": [b.name for b in backends]}
    inputs = {"split": split.id}
    run = store.stage(
        "gen", "profiles", name, params, inputs, key_params=key_params, force=force, resumable=True, verbs=VERBS
    )
    if run.cached:
        return run.cached
    with run:
        artifact = run.artifact
        done = store.distinct(artifact, "profiles", ("user_id", "generator"))
        chunks = [users[i : i + CHUNK_USERS] for i in range(0, len(users), CHUNK_USERS)]
        todo = [(b, chunk) for b in backends for chunk in chunks if not all((u, b.name) in done for u in chunk)]
        total = sum(len(chunk) for _, chunk in todo) * options.n
        started, tokens = time.perf_counter(), 0
        words = value_words(split)
        with stage_progress(f"gen {len(users)} users x {len(backends)} generator(s)", total, "profiles") as advance:
            for backend in backends:
                mine = [chunk for b, chunk in todo if b is backend]
                template = templates[backend.name]
                for rows in profile_rows(backend, template, mine, histories, options, words, advance):
                    tokens += sum(row["n_tokens"] for row in rows)
                    with store.transaction():  # a chunk is kept whole or not at all
                        store.insert_rows(artifact, "profiles", rows)

        report = {"diversity": {}, "flags": {}}
        for backend in backends:
            texts: dict[str, list[str]] = {}
            flag_counts: Counter = Counter()
            lengths = []
            for row in store.rows(artifact, "profiles", generator=backend.name):
                texts.setdefault(row["user_id"], []).append(row["text"])
                flag_counts.update(json.loads(row["flags"]))
                lengths.append(row["n_tokens"])
            report["diversity"][backend.name] = diversity(texts)
            report["diversity"][backend.name]["mean_tokens"] = round(sum(lengths) / len(lengths), 2) if lengths else 0
            report["flags"][backend.name] = dict(sorted(flag_counts.items()))
        elapsed = time.perf_counter() - started
        tokens_per_s = round(tokens / elapsed, 1) if elapsed and tokens else None
        stats = {"seconds": round(elapsed, 2), "new_tokens": tokens, "tokens_per_s": tokens_per_s}
        counts = {"users": len(users), "generators": len(backends)}
        return run.finish(counts=counts, report=report, stats=stats)


def profile_rows(
    backend, template: Template, chunks: list[list[str]], histories: dict, options: GenOptions, words: str, advance
):
    """The profile rows of each chunk of users, yielded as each chunk is whole: sampled by a backend, or written by
    a generator that needs no model (`words`: how it shows a value). gen stores them; `lettingo profile` prints."""
    if isinstance(backend, WrittenGenerator):
        return _written_chunks(backend, template, chunks, histories, words, options.n, advance)
    return _generate_chunks(backend, template, chunks, histories, options, advance)


def _written_chunks(
    generator, template: Template, chunks: list[list[str]], histories: dict, words: str, n: int, advance
):
    """The profile rows of each chunk from a generator that needs no model (history-text, stats-text, swap); the
    progress bar counts `n` per user, as it does for sampled profiles."""
    for chunk in chunks:
        rows = []
        for user in chunk:
            prompt = render(template, histories[user], generator.chat)
            for sample, (text, n_tokens) in enumerate(generator.write(user, histories[user], words)):
                rows.append(
                    {
                        "user_id": user,
                        "generator": generator.name,
                        "sample_index": sample,
                        "seed": 0,
                        "prompt_hash": prompt_hash(prompt),
                        "text": text,
                        "n_tokens": n_tokens,
                        "flags": canonical_json(profile_flags(text, True)),
                    }
                )
            advance(n, 0)
        yield rows


def _generate_chunks(
    backend, template: Template, chunks: list[list[str]], histories: dict, options: GenOptions, advance
):
    """Yield the profile rows of each chunk (the N profiles of each of its users) as soon as all are in, advancing
    the progress bar as each profile finishes. A backend that streams requests gets every chunk's requests at
    once, so its batch stays full across chunk boundaries; any other gets one chunk at a time."""
    stops = () if backend.chat else COMPLETION_STOPS
    sampling = SamplingOptions(options.max_tokens, options.temperature, stops)
    for calls in [chunks] if backend.streams_requests else [[chunk] for chunk in chunks]:
        prompts = {user: render(template, histories[user], backend.chat) for chunk in calls for user in chunk}
        slots = [
            (number, user, sample)
            for number, chunk in enumerate(calls)
            for user in chunk
            for sample in range(options.n)
        ]
        requests = [Request(prompts[u], profile_seed(options.seed, u, backend.name, s)) for _, u, s in slots]
        rows: dict[int, list[dict]] = {number: [] for number in range(len(calls))}
        for index, generation in backend.generate(requests, sampling):
            number, user, sample = slots[index]
            text = clean_profile(generation.text)
            rows[number].append(
                {
                    "user_id": user,
                    "generator": backend.name,
                    "sample_index": sample,
                    "seed": requests[index].seed,
                    "prompt_hash": prompt_hash(prompts[user]),
                    "text": text,
                    "n_tokens": generation.n_tokens,
                    "flags": canonical_json(profile_flags(text, generation.finished)),
                }
            )
            advance(1, generation.n_tokens)
            if len(rows[number]) == len(calls[number]) * options.n:  # the chunk is whole
                yield rows.pop(number)
