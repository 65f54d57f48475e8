"""The LLM predictor `llm:BACKEND_SPEC`: a frozen LLM answers like / neutral / dislike; we read the label
log-probabilities (prompt predictor-v1: a few-shot completion prompt with worked examples from train users).

The shared part of the prompt (instructions, worked examples, the user's recent history, the target) comes
first and is identical for all profiles of a user and target, so the backend reads it once and only the
profile + answer suffix per profile.
"""

from __future__ import annotations

import math

from lettingo_cli.predictors.base import NO_PROFILE
from lettingo_cli.prompts import clean_field, history_line
from lettingo_cli.split import SENTIMENTS, Target, load_recent_and_targets
from lettingo_cli.store import Artifact, Store

LABELS = {" like": "like", " neutral": "neutral", " dislike": "dislike"}  # answer token text -> label
PROFILE_CHARS = 1500  # a profile is cut here in the predictor's prompt (200 tokens of profile are ~1,000 chars)
EXAMPLES_PER_LABEL = 2  # worked-example candidates kept per label, so a user is never their own example
PREDICTOR_INTRO = (
    "For each user: their most recent ratings (oldest first), a new item, a profile of the user, and how the "
    "user felt about the new item: like, neutral or dislike.\n\n"
)
PREDICTOR_TEMPLATE = "predictor-v1"
CONTENT_FREE = "N/A"  # the content-free input of contextual calibration


class WorkedExamples:
    """Three worked examples from train users, one per label (the first train users by id whose first target
    has that label), so the base-model predictor sees the format and all three answers. A user is never shown
    their own target as an example."""

    def __init__(self, store: Store, split: Artifact):
        train = sorted(row["user_id"] for row in store.rows(split, "split_users", "partition = 'train'"))
        recent, held_out = load_recent_and_targets(store, split, train, 1)
        self.candidates: dict[str, list[tuple[str, str]]] = {label: [] for label in SENTIMENTS}
        for user in train:
            if not held_out[user] or not recent[user]:
                continue
            label = held_out[user][0].sentiment
            if len(self.candidates[label]) < EXAMPLES_PER_LABEL:
                example = block(recent[user], held_out[user][0].text, NO_PROFILE) + f" {label}\n\n"
                self.candidates[label].append((user, example))

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


class Calibration:
    """Label log-probs of a content-free query (recent ratings, item and profile all "N/A") after the same
    worked examples: the bias the prompt alone puts on each label. Computed once per examples prefix."""

    def __init__(self, backend, examples: WorkedExamples):
        self.backend, self.examples, self.cache = backend, examples, {}

    def for_user(self, user: str) -> dict[str, float]:
        head = self.examples.prefix_for(user)
        if head not in self.cache:
            content_free = [{"text": CONTENT_FREE, "sentiment": "neutral", "rating": 3.0}]
            prefix = head + block(content_free, CONTENT_FREE)
            self.cache[head] = self.backend.label_logprobs(prefix, [profile_suffix(CONTENT_FREE)], list(LABELS))[0]
        return self.cache[head]


class LLMPredictor:
    """llm:BACKEND_SPEC over any backend (every backend scores labels; see backends/base.py)."""

    def __init__(self, backend, store: Store, split: Artifact, calibrate: bool = False):
        self.backend = backend
        self.examples = WorkedExamples(store, split)
        self.calibration = Calibration(backend, self.examples) if calibrate else None
        self.label = f"llm:{backend.label}" + ("?calibrate" if calibrate else "")
        self.details = {
            "spec": backend.spec,
            "prompt": PREDICTOR_TEMPLATE,
            "calibrate": calibrate,
            "example_users": self.examples.users,
            **backend.details,
        }

    def predict(self, user: str, recent: list[dict], target: Target, profile_texts: list[str]) -> list[dict]:
        prefix = self.examples.prefix_for(user) + block(recent, target.text)
        suffixes = [profile_suffix(text) for text in profile_texts]
        calibration = self.calibration.for_user(user) if self.calibration else None
        return [probabilities(lp, calibration) for lp in self.backend.label_logprobs(prefix, suffixes, list(LABELS))]

    def close(self) -> None:
        self.backend.close()
