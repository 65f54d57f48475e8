"""Stage `score`: task-driven evaluation of profiles. A frozen predictor sees a user's recent history, ONE
profile and a held-out target item, and gives log-probabilities for like / neutral / dislike.

The shared part of the prompt (instructions, worked examples, the user's recent history, the target) comes
first and is identical for all profiles of a user and target, so the predictor reads it once and only the
profile + answer suffix per profile (backend.label_logprobs). Resumable in whole chunks of users, like gen.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from lettingo_cli.errors import UsageError
from lettingo_cli.prompts import clean_field, history_line
from lettingo_cli.split import SENTIMENTS
from lettingo_cli.store import Artifact, Store, log

CHUNK_USERS = 8
LABELS = {" like": "like", " neutral": "neutral", " dislike": "dislike"}  # answer token text -> label
PROFILE_CHARS = 1500
NO_PROFILE = "(none)"
NO_PROFILE_GENERATOR = "none"  # the generator column of 10H (no-profile) scores
PREDICTOR_INTRO = (
    "For each user: their most recent ratings (oldest first), a new item, a profile of the user, and how the "
    "user felt about the new item: like, neutral or dislike.\n\n"
)
PREDICTOR_TEMPLATE = "predictor-v1"


@dataclass(frozen=True)
class Target:
    position: int
    text: str
    sentiment: str


def load_split_rows(store: Store, split: Artifact, users: list[str], targets: int) -> tuple[dict, dict]:
    """Recent-history rows (text, sentiment, rating) and the first `targets` held-out targets of each user."""
    dataset = store.get(split.params["dataset"])
    wanted = set(users)
    recent: dict[str, list[dict]] = {u: [] for u in users}
    held_out: dict[str, list[Target]] = {u: [] for u in users}
    sql = """SELECT s.user_id, s.role, s.position, s.rating, s.sentiment, i.text
             FROM split_interactions s JOIN items i ON i.artifact_id = ? AND i.item_id = s.item_id
             WHERE s.artifact_id = ? AND s.role IN ('recent', 'target') ORDER BY s.user_id, s.role, s.position"""
    for row in store.db.query(sql, [dataset.id, split.id]):
        if row["user_id"] not in wanted:
            continue
        if row["role"] == "recent":
            recent[row["user_id"]].append({k: row[k] for k in ("text", "sentiment", "rating")})
        elif len(held_out[row["user_id"]]) < targets:
            held_out[row["user_id"]].append(Target(row["position"], clean_field(row["text"]), row["sentiment"]))
    return recent, held_out


class WorkedExamples:
    """Three worked examples from train users, one per label (the first train users by id whose first target
    has that label), so the base-model predictor sees the format and all three answers. A user is never shown
    their own target as an example."""

    def __init__(self, store: Store, split: Artifact):
        train = sorted(row["user_id"] for row in store.rows(split, "split_users", "partition = 'train'"))
        recent, held_out = load_split_rows(store, split, train, 1)
        self.candidates: dict[str, list[tuple[str, str]]] = {label: [] for label in SENTIMENTS}
        for user in train:
            if not held_out[user] or not recent[user]:
                continue
            label = held_out[user][0].sentiment
            if len(self.candidates[label]) < 2:
                self.candidates[label].append((user, block(recent[user], held_out[user][0].text, NO_PROFILE) + f" {label}\n\n"))

    @property
    def users(self) -> list[str]:
        return [user for options in self.candidates.values() for user, _ in options]

    def prefix_for(self, user: str | None) -> str:
        blocks = []
        for options in self.candidates.values():
            chosen = next((text for example_user, text in options if example_user != user), None)
            if chosen:
                blocks.append(chosen)
        return PREDICTOR_INTRO + "".join(blocks)


def block(recent_rows: list[dict], target_text: str, profile: str | None = None) -> str:
    """A user's block; without `profile` it stops before the profile line (the shared prefix)."""
    lines = [history_line(r["text"], r["sentiment"], r["rating"]) for r in recent_rows]
    text = "Recent ratings:\n" + "\n".join(lines) + f'\nNew item: "{target_text}"\n'
    return text if profile is None else text + profile_suffix(profile)


def profile_suffix(profile: str) -> str:
    return f"Profile: {clean_field(profile, PROFILE_CHARS) or NO_PROFILE}\nAnswer:"


def probabilities(logprobs: dict[str, float], calibration: dict[str, float] | None = None) -> dict[str, float]:
    """Normalise the three label log-probabilities into a distribution over the labels; with `calibration`
    (the log-probs for a content-free input), divide out the prompt's own label bias first (contextual
    calibration, Zhao et al. 2021)."""
    if calibration:
        logprobs = {token: value - calibration[token] for token, value in logprobs.items()}
    top = max(logprobs.values())
    weights = {LABELS[token]: math.exp(value - top) for token, value in logprobs.items()}
    total = sum(weights.values())
    return {label: weight / total for label, weight in weights.items()}


CONTENT_FREE = "N/A"


class Calibration:
    """Label log-probs of a content-free query (recent ratings, item and profile all "N/A") after the same
    worked examples: the bias the prompt alone puts on each label. Computed once per examples prefix."""

    def __init__(self, predictor, examples: "WorkedExamples"):
        self.predictor, self.examples, self.cache = predictor, examples, {}

    def for_user(self, user: str) -> dict[str, float]:
        head = self.examples.prefix_for(user)
        if head not in self.cache:
            prefix = head + block([{"text": CONTENT_FREE, "sentiment": "neutral", "rating": 3.0}], CONTENT_FREE)
            self.cache[head] = self.predictor.label_logprobs(prefix, [profile_suffix(CONTENT_FREE)], list(LABELS))[0]
        return self.cache[head]


class LLMPredictor:
    """llm:BACKEND_SPEC: a frozen LLM answers like / neutral / dislike; we read the label log-probs."""

    def __init__(self, backend, store: Store, split: Artifact, calibrate: bool = False):
        if not hasattr(backend, "label_logprobs"):
            raise UsageError(f"predictor {backend.spec} cannot read label log-probabilities; use a gguf: model")
        self.backend = backend
        self.examples = WorkedExamples(store, split)
        self.calibration = Calibration(backend, self.examples) if calibrate else None
        self.label = f"llm:{backend.label}" + ("?calibrate" if calibrate else "")
        self.details = {"spec": backend.spec, "prompt": PREDICTOR_TEMPLATE, "calibrate": calibrate,
                        "example_users": self.examples.users, **backend.details}

    def predict(self, user: str, recent: list[dict], target: Target, profile_texts: list[str]) -> list[dict]:
        prefix = self.examples.prefix_for(user) + block(recent, target.text)
        suffixes = [profile_suffix(text) for text in profile_texts]
        calibration = self.calibration.for_user(user) if self.calibration else None
        return [probabilities(lp, calibration) for lp in self.backend.label_logprobs(prefix, suffixes, list(LABELS))]

    def close(self) -> None:
        self.backend.close()


def make_predictor(spec: str, store: Store, split: Artifact, calibrate: bool = False):
    """`llm:BACKEND_SPEC` (e.g. llm:gemma-3-270m) or `emb:minilm`."""
    kind, sep, rest = spec.partition(":")
    if kind == "llm" and sep:
        from lettingo_cli.backends import load_backend

        return LLMPredictor(load_backend(rest, store=store), store, split, calibrate)
    if kind == "emb" and rest == "minilm":
        from lettingo_cli.embedding_predictor import EmbeddingPredictor

        return EmbeddingPredictor(store, split)
    raise UsageError(f"bad predictor {spec!r}: use llm:BACKEND_SPEC (e.g. llm:gemma-3-270m) or emb:minilm")


def score_profiles(
    store: Store,
    split: Artifact,
    predictor,
    profiles: Artifact | None,
    users: list[str],
    targets: int,
    name: str,
    force: bool = False,
) -> Artifact:
    """Score every profile of `users` in `profiles` (or, with profiles=None, the no-profile 10H baseline)."""
    if targets < 1:
        raise UsageError("--targets must be >= 1")
    params = {
        "split": split.id,
        "profiles": profiles.id if profiles else None,
        "predictor": {"label": predictor.label, **predictor.details},
        "targets": targets,
        "users": users,
    }
    inputs = {"profiles": profiles.id} if profiles else {"split": split.id}
    key = store.run_key("score", inputs, {**params, "predictor": predictor.label, "name": name})
    if not force and (cached := store.cached(key)) is not None:
        log(f"already scored as {cached.ref} (use --force to score again)")
        return cached
    artifact, resumed = store.begin_or_resume("score", "scores", name, params, inputs, key, force)
    if resumed:
        log(f"resuming an interrupted run of {name}")
    done = {row["user_id"] for row in store.db.query("SELECT DISTINCT user_id FROM scores WHERE artifact_id = ?", [artifact.id])}

    by_user: dict[str, list[dict]] = {u: [] for u in users}
    if profiles is not None:
        for row in store.rows(profiles, "profiles"):
            if row["user_id"] in by_user:
                by_user[row["user_id"]].append(row)
    else:
        for user in users:
            by_user[user] = [{"generator": NO_PROFILE_GENERATOR, "sample_index": 0, "text": NO_PROFILE}]
    recent, held_out = load_split_rows(store, split, users, targets)
    todo = [u for u in users if u not in done and by_user[u] and held_out[u]]
    chunks = [todo[i : i + CHUNK_USERS] for i in range(0, len(todo), CHUNK_USERS)]
    total = sum(len(by_user[u]) * len(held_out[u]) for u in todo)
    started = time.perf_counter()
    from lettingo_cli.progress import stage_progress

    with stage_progress(f"score {len(todo)} users", total, "evaluations") as advance:
        for chunk in chunks:
            rows = []
            for user in chunk:
                for target in held_out[user]:
                    texts = [p["text"] for p in by_user[user]]
                    for profile, distribution in zip(by_user[user], predictor.predict(user, recent[user], target, texts)):
                        predicted = max(distribution, key=distribution.get)
                        rows.append(
                            {
                                "user_id": user,
                                "generator": profile["generator"],
                                "sample_index": profile["sample_index"],
                                "target_position": target.position,
                                "predicted": predicted,
                                "truth": target.sentiment,
                                "correct": int(predicted == target.sentiment),
                                "p_true": round(distribution[target.sentiment], 6),
                            }
                        )
                    advance(len(texts))
            with store.db.atomic():
                store.insert_rows(artifact, "scores", rows)
    elapsed = time.perf_counter() - started
    stats = {"seconds": round(elapsed, 2), "evaluations_per_s": round(total / elapsed, 2) if total and elapsed else None}
    return store.finalize(artifact, counts={"users": len(users)}, stats=stats)
