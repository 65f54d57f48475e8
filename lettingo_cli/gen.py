"""Stage `gen`: free-form profiles of each selected user, N per generator, from the user's profile history.

Several generators = the paper's collaborative exploration. The work is cut into fixed chunks of users; each
chunk's profiles are written in one transaction into a pending artifact, so an interrupted run keeps every
finished chunk and the same command resumes with the rest (and, the chunks being the same, gives the same
artifact). The artifact is sealed with a diversity report per generator.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from lettingo_cli.backends.base import Request, SamplingOptions
from lettingo_cli.errors import UsageError
from lettingo_cli.prompts import COMPLETION_STOPS, Template, builtin_template, load_template, prompt_hash, render
from lettingo_cli.store import Artifact, Store, canonical_json, log

CHUNK_USERS = 4  # users per resumable unit of work


@dataclass(frozen=True)
class GenOptions:
    n: int = 4
    temperature: float = 1.0
    max_tokens: int = 200
    history: int = 30
    seed: int = 0

    def check(self) -> None:
        if self.n < 1 or self.max_tokens < 1 or self.history < 1:
            raise UsageError("--n, --max-tokens and --history must be >= 1")
        if self.temperature < 0:
            raise UsageError("--temperature must be >= 0")


# --- which users ------------------------------------------------------------------------------------------


def select_users(store: Store, split: Artifact, selector: str, listed: list[str] | None = None) -> list[str]:
    """all | train | test | N (the first N users of the split by id) | id,id,... | - (ids given in `listed`)."""
    partitions = {row["user_id"]: row["partition"] for row in store.rows(split, "split_users")}
    if selector in ("all", "train", "test"):
        users = [u for u, p in partitions.items() if selector == "all" or p == selector]
    elif selector.isdigit():
        users = sorted(partitions)[: int(selector)]
    else:
        wanted = listed if selector == "-" else [u.strip() for u in selector.split(",") if u.strip()]
        unknown = [u for u in wanted if u not in partitions]
        if unknown:
            raise UsageError(f"user(s) not in {split.ref}: {', '.join(unknown[:5])}")
        users = list(dict.fromkeys(wanted))
    if not users:
        raise UsageError(f"--users {selector} selects no user of {split.ref}")
    return sorted(users)


def load_histories(store: Store, split: Artifact, users: list[str], history: int) -> dict[str, list[dict]]:
    """Each user's profile history (never the recent history or the targets), the most recent `history`
    rows, oldest first, with the item text from the split's dataset."""
    dataset = store.get(split.params["dataset"])
    wanted = set(users)
    rows: dict[str, list[dict]] = {u: [] for u in users}
    sql = """SELECT s.user_id, s.position, s.rating, s.sentiment, i.text
             FROM split_interactions s JOIN items i ON i.artifact_id = ? AND i.item_id = s.item_id
             WHERE s.artifact_id = ? AND s.role = 'history' ORDER BY s.user_id, s.position"""
    for row in store.db.query(sql, [dataset.id, split.id]):
        if row["user_id"] in wanted:
            rows[row["user_id"]].append(row)
    return {user: events[-history:] for user, events in rows.items()}


def profile_seed(seed: int, user_id: str, generator: str, sample_index: int) -> int:
    digest = hashlib.sha256(canonical_json([seed, user_id, generator, sample_index]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# --- cleaning and flags ---------------------------------------------------------------------------------------


def clean_profile(text: str) -> str:
    """Strip whitespace and a leading echo of the prompt's last line ("Profile:")."""
    text = text.strip()
    text = re.sub(r"^(?:\**\s*profile\s*\**\s*:\s*)+", "", text, flags=re.IGNORECASE)
    return text.strip()


def is_degenerate(text: str) -> bool:
    """A loop: few distinct word trigrams, one line repeated, or one word many times in a row."""
    words = re.findall(r"\w+", text.lower())
    if len(words) >= 12:
        trigrams = list(zip(words, words[1:], words[2:]))
        if len(set(trigrams)) / len(trigrams) < 0.5:
            return True
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and Counter(lines).most_common(1)[0][1] >= 3:
        return True
    return any(len(list(group)) >= 6 for _, group in itertools.groupby(words))


def profile_flags(text: str, finished: bool) -> list[str]:
    flags = []
    if len(re.findall(r"[^\W\d_]", text)) < 10:
        flags.append("empty")
    elif is_degenerate(text):
        flags.append("degenerate")
    if not finished:
        flags.append("truncated")
    return flags


# --- diversity --------------------------------------------------------------------------------------------------


def diversity(profiles_by_user: dict[str, list[str]]) -> dict:
    """distinct-1/2 over all profiles, and the mean pairwise cosine similarity (bag of words) of the profiles
    of the same user: the point of exploration is diverse profiles of each user."""
    unigrams, bigrams, similarities = [], [], []
    for texts in profiles_by_user.values():
        bags = []
        for text in texts:
            words = re.findall(r"\w+", text.lower())
            unigrams.extend(words)
            bigrams.extend(zip(words, words[1:]))
            bags.append(Counter(words))
        for a, b in itertools.combinations(bags, 2):
            similarities.append(_cosine(a, b))
    return {
        "profiles": sum(len(texts) for texts in profiles_by_user.values()),
        "distinct_1": round(len(set(unigrams)) / len(unigrams), 4) if unigrams else 0.0,
        "distinct_2": round(len(set(bigrams)) / len(bigrams), 4) if bigrams else 0.0,
        "mean_pairwise_similarity": round(sum(similarities) / len(similarities), 4) if similarities else None,
    }


def _cosine(a: Counter, b: Counter) -> float:
    dot = sum(count * b[word] for word, count in a.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm if norm else 0.0


# --- the stage --------------------------------------------------------------------------------------------------


def generate_profiles(
    store: Store,
    split: Artifact,
    backends: list,
    users: list[str],
    options: GenOptions,
    name: str,
    prompt_file: Path | None = None,
    force: bool = False,
) -> Artifact:
    options.check()
    custom = load_template(prompt_file) if prompt_file else None
    templates: dict[str, Template] = {b.label: custom or builtin_template(b.chat) for b in backends}
    histories = load_histories(store, split, users, options.history)
    empty = [user for user, rows in histories.items() if not rows]
    if empty:
        raise UsageError(f"{len(empty)} selected user(s) have no profile history in {split.ref}, e.g. {empty[0]}")

    params = {
        "split": split.id,
        "users": users,
        "generators": [{"label": b.label, "spec": b.spec, "chat": b.chat, **b.details} for b in backends],
        "templates": {label: {"ref": t.ref, "name": t.name, "text": t.text} for label, t in templates.items()},
        **asdict(options),
    }
    key_params = {**params, "name": name, "generators": [b.label for b in backends]}
    key = store.run_key("gen", {"split": split.id}, key_params)
    if not force and (cached := store.cached(key)) is not None:
        log(f"already generated as {cached.ref} (use --force to generate again)")
        return cached
    artifact, resumed = store.begin_or_resume("gen", "profiles", name, params, {"split": split.id}, key, force)
    if resumed:
        log(f"resuming an interrupted run of {name}")
    done = {
        (row["user_id"], row["generator"])
        for row in store.db.query("SELECT DISTINCT user_id, generator FROM profiles WHERE artifact_id = ?", [artifact.id])
    }

    chunks = [users[i : i + CHUNK_USERS] for i in range(0, len(users), CHUNK_USERS)]
    todo = [(b, chunk) for b in backends for chunk in chunks if not all((u, b.label) in done for u in chunk)]
    total = sum(len(chunk) for _, chunk in todo) * options.n
    started, tokens = time.perf_counter(), 0
    from lettingo_cli.progress import stage_progress

    with stage_progress(f"gen {len(users)} users x {len(backends)} generator(s)", total, "profiles") as advance:
        for backend, chunk in todo:
            template = templates[backend.label]
            stops = () if backend.chat else COMPLETION_STOPS
            sampling = SamplingOptions(options.max_tokens, options.temperature, stops)
            prompts = {user: render(template, histories[user], backend.chat) for user in chunk}
            slots = [(user, sample) for user in chunk for sample in range(options.n)]
            requests = [Request(prompts[u], profile_seed(options.seed, u, backend.label, s)) for u, s in slots]
            rows = []
            for index, generation in backend.generate(requests, sampling):
                user, sample = slots[index]
                text = clean_profile(generation.text)
                rows.append(
                    {
                        "user_id": user,
                        "generator": backend.label,
                        "sample_index": sample,
                        "seed": requests[index].seed,
                        "prompt_hash": prompt_hash(prompts[user]),
                        "text": text,
                        "n_tokens": generation.n_tokens,
                        "flags": canonical_json(profile_flags(text, generation.finished)),
                    }
                )
                tokens += generation.n_tokens
                advance(1, generation.n_tokens)
            with store.db.atomic():  # a chunk is kept whole or not at all
                store.insert_rows(artifact, "profiles", rows)

    report = {"diversity": {}, "flags": {}}
    for backend in backends:
        texts: dict[str, list[str]] = {}
        flag_counts: Counter = Counter()
        for row in store.rows(artifact, "profiles", "generator = ?", [backend.label]):
            texts.setdefault(row["user_id"], []).append(row["text"])
            flag_counts.update(json.loads(row["flags"]))
        report["diversity"][backend.label] = diversity(texts)
        report["flags"][backend.label] = dict(sorted(flag_counts.items()))
    elapsed = time.perf_counter() - started
    stats = {"seconds": round(elapsed, 2), "new_tokens": tokens,
             "tokens_per_s": round(tokens / elapsed, 1) if elapsed and tokens else None}
    return store.finalize(artifact, counts={"users": len(users), "generators": len(backends)}, report=report, stats=stats)
