"""Stage `score`: task-driven evaluation of profiles. A frozen predictor (predictors/) sees a user's recent
history, ONE profile and a held-out target item, and gives a distribution over like / neutral / dislike; each
(profile, target) becomes a score row: the predicted label, whether it is right, and P(true label).

Resumable in whole chunks of users, like gen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lettingo_cli.console import stage_progress
from lettingo_cli.errors import UsageError
from lettingo_cli.options import option
from lettingo_cli.predictors.base import NO_PROFILE, Predictor
from lettingo_cli.split_data import load_recent_and_targets
from lettingo_cli.store import Artifact, Store, Verbs

VERBS = Verbs("score", "scored")

CHUNK_USERS = 8  # users per resumable unit of work


@dataclass(frozen=True)
class ScoreOptions:
    """The options of `lettingo score` and `lettingo eval` (each field is also a flag and a --config YAML key)."""

    predictor: str | None = option(
        None,
        "head:minilm (default; reader:bow on a --recent 0 split) | head:minilm?profiles=REF | "
        "reader:bow[?profiles=REF][&user_mean=1][&values=0][&without=REF] | predictor:REF | llm:BACKEND_SPEC "
        "(llm:gemma-3-270m, llm:qwen2.5-1.5b, llm:gguf:PATH; ?prior=none) | emb:minilm.",
    )
    targets: int = option(1, "Held-out targets per user to score against.")
    calibrate: bool = option(
        False,
        "Divide out the prompt's own label bias, measured on a content-free query (contextual calibration).",
        "--calibrate/--no-calibrate",
    )

    def __post_init__(self) -> None:
        if self.targets < 1:
            raise UsageError("--targets must be >= 1")


NO_PROFILE_GENERATOR = "none"  # the generator column of 10H (no-profile) scores


def score_with(
    store: Store,
    profiles: Artifact,
    predictor_spec: str,
    targets: int,
    name: str,
    calibrate: bool = False,
    force: bool = False,
) -> Artifact:
    """The stage as the CLI runs it: build the predictor for the profiles' split, score every profile, close."""
    from lettingo_cli.predictors import make_predictor

    split = store.get(profiles.params["split"])
    predictor = make_predictor(predictor_spec, store, split, calibrate)
    try:
        return score_profiles(store, split, predictor, profiles, profiles.params["users"], targets, name, force)
    finally:
        predictor.close()


def score_profiles(
    store: Store,
    split: Artifact,
    predictor: Predictor,
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
        "predictor": {"label": predictor.name, **predictor.details},
        "targets": targets,
        "users": users,
    }
    inputs = {"profiles": profiles.id} if profiles else {"split": split.id}
    key_params = {**params, "predictor": predictor.name, "name": name}
    run = store.stage(
        "score", "scores", name, params, inputs, key_params=key_params, force=force, resumable=True, verbs=VERBS
    )
    if run.cached:
        return run.cached

    by_user: dict[str, list[dict]] = {u: [] for u in users}
    if profiles is not None:
        for row in store.rows(profiles, "profiles"):
            if row["user_id"] in by_user:
                by_user[row["user_id"]].append(row)
    else:
        for user in users:
            by_user[user] = [{"generator": NO_PROFILE_GENERATOR, "sample_index": 0, "text": NO_PROFILE}]
    recent, held_out = load_recent_and_targets(store, split, users, targets)

    with run:
        done = {user for (user,) in store.distinct(run.artifact, "scores", ("user_id",))}
        todo = [u for u in users if u not in done and by_user[u] and held_out[u]]
        chunks = [todo[i : i + CHUNK_USERS] for i in range(0, len(todo), CHUNK_USERS)]
        total = sum(len(by_user[u]) * len(held_out[u]) for u in todo)
        started = time.perf_counter()
        with stage_progress(f"score {len(todo)} users", total, "evaluations") as advance:
            for chunk in chunks:
                rows = []
                for user in chunk:
                    texts = [p["text"] for p in by_user[user]]
                    answers = predictor.predict(user, recent[user], held_out[user], texts)
                    for target, distributions in zip(held_out[user], answers):
                        rows += [_score_row(user, p, target, d) for p, d in zip(by_user[user], distributions)]
                    advance(len(texts) * len(held_out[user]))
                with store.transaction():
                    store.insert_rows(run.artifact, "scores", rows)
        elapsed = time.perf_counter() - started
        per_s = round(total / elapsed, 2) if total and elapsed else None
        correct = sum(row["correct"] for row in store.rows(run.artifact, "scores"))
        counts = {"users": len(users), "correct": correct}
        return run.finish(counts=counts, stats={"seconds": round(elapsed, 2), "evaluations_per_s": per_s})


def _score_row(user: str, profile: dict, target, distribution: dict[str, float]) -> dict:
    predicted = max(distribution, key=distribution.get)
    return {
        "user_id": user,
        "generator": profile["generator"],
        "sample_index": profile["sample_index"],
        "target_position": target.position,
        "predicted": predicted,
        "truth": target.sentiment,
        "correct": int(predicted == target.sentiment),
        "p_true": round(distribution[target.sentiment], 6),
    }
