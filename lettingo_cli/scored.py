"""What a scores artifact says of each profile it judged, for every stage that chooses among profiles (pair, sft):
the profile's text and flags from its profiles artifact, and its score over the user's targets; and a pool of
scores artifacts (several writers, several prompts) judged on one split."""

from __future__ import annotations

import json

from lettingo_cli.errors import UsageError
from lettingo_cli.profiles import UNUSABLE_FLAGS
from lettingo_cli.store import Artifact, Store


def scored_profiles(store: Store, scores: Artifact) -> dict[str, list[dict]]:
    """Per user (by id), each scored profile: `key` (generator, sample), `generator`, `text`, `prompt_hash`,
    `score` (its mean P(true label) over the user's scored targets), `right` (True when most of its targets were
    predicted right, False when most were wrong, None on a tie), `flagged` (it holds no profile: UNUSABLE_FLAGS)
    and `tokens`. Profiles in (generator, sample) order."""
    profiles = store.get(scores.params["profiles"])
    by_profile: dict[tuple, list[dict]] = {}
    for row in store.rows(scores, "scores"):
        by_profile.setdefault((row["user_id"], row["generator"], row["sample_index"]), []).append(row)
    texts = {(r["user_id"], r["generator"], r["sample_index"]): r for r in store.rows(profiles, "profiles")}
    found: dict[str, list[dict]] = {}
    for (user, generator, sample), results in sorted(by_profile.items()):
        accuracy = sum(r["correct"] for r in results) / len(results)
        profile = texts[(user, generator, sample)]
        found.setdefault(user, []).append(
            {
                "key": (generator, sample),
                "generator": generator,
                "text": profile["text"],
                "prompt_hash": profile["prompt_hash"],
                "score": sum(r["p_true"] for r in results) / len(results),
                "right": True if accuracy > 0.5 else False if accuracy < 0.5 else None,
                "flagged": any(flag in UNUSABLE_FLAGS for flag in json.loads(profile["flags"])),
                "tokens": profile["n_tokens"] or len(profile["text"].split()),
            }
        )
    return dict(sorted(found.items()))


def no_profile_scores(store: Store, scores: Artifact, split: Artifact) -> dict[str, float]:
    """Each user's score without a profile (a no-profile scores artifact of `split`: `eval --no-profile`'s), as
    profiles are scored: the mean P(true label) over the user's scored targets."""
    if scores.params.get("profiles") or scores.params.get("split") != split.id:
        raise UsageError(f"{scores.ref}: not the no-profile scores of {split.ref}")
    by_user: dict[str, list[float]] = {}
    for row in store.rows(scores, "scores"):
        by_user.setdefault(row["user_id"], []).append(row["p_true"])
    return {user: sum(values) / len(values) for user, values in sorted(by_user.items())}


def model_free_writers(profiles: Artifact) -> list[str]:
    """The specs of a profiles artifact's writers that need no model (their kind says so: backends/written.py)."""
    from lettingo_cli.backends import REGISTRY

    return [g["spec"] for g in profiles.params["generators"] if REGISTRY.model_free(g["spec"])]


def pool_split(store: Store, pools: list[Artifact], allow_model_free: bool = False) -> Artifact:
    """The one split every scores artifact of the pool judged its profiles on. A pool's writers are LLMs: profiles
    of a model-free writer (history-text, stats-text, swap) are controls, taken only with `allow_model_free`, and a
    result trained on them is reported beside the same run without them."""
    splits = set()
    for scores in pools:
        if not scores.params.get("profiles"):
            raise UsageError(f"{scores.ref} scores no profiles (a no-profile baseline): not a pool")
        profiles = store.get(scores.params["profiles"])
        splits.add(profiles.params["split"])
        free = model_free_writers(profiles)
        if free and not allow_model_free:
            raise UsageError(
                f"{scores.ref} scores profiles of {free[0]}, a writer without a model (a control, not a writer to "
                "learn from): give --allow-model-free to take it, and report the result beside a run without it"
            )
    if len(splits) != 1:
        raise UsageError("the pool's scores judge profiles of different splits: give scores of one split")
    return store.get(splits.pop())
