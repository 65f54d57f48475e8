"""The LLM predictor `llm:BACKEND_SPEC[?prior=train|none]`: a frozen LLM answers like / neutral / dislike and we
read the label log-probabilities. Two prompts, chosen by the backend's style:

    predictor-v1  base models (completion): a few-shot prompt with one worked example per label from train
                  users, then the user's recent ratings, the new item, the profile and "Answer:"
    predictor-v2  instruct models (chat): zero-shot; instruction and recent ratings first (shared by all of a
                  user's profiles and targets, so the backend reads them once per user), then the profile, the
                  new item and "Answer with one word: like, neutral or dislike."

A label prior is fitted once on TRAIN users (never test users): additive log-prob biases that make the
predictor's no-profile answers on up to PRIOR_USERS train users' first targets as likely as they can be
(cross-entropy). It is what cures a prompt's own lean (predictor-v1's worked examples made every model answer
"dislike"; a zero-shot instruct model hardly ever says "like"), and it is stored with every score artifact.
"""

from __future__ import annotations

import math

from lettingo_cli.errors import UsageError
from lettingo_cli.predictors.base import NO_PROFILE
from lettingo_cli.prompts import clean_field, history_text
from lettingo_cli.sentiments import SENTIMENTS
from lettingo_cli.specs import Kind
from lettingo_cli.split_data import Target, load_recent_and_targets, train_users
from lettingo_cli.store import Artifact, Store

PROFILE_CHARS = 1500  # a profile is cut here in the predictor's prompt (200 tokens of profile are ~1,000 chars)
EXAMPLES_PER_LABEL = 2  # worked-example candidates kept per label, so a user is never their own example
PRIOR_USERS = 60  # train users whose no-profile answers fit the label prior (3 numbers)
PRIOR_STEPS = 500  # gradient steps of the prior's fit (a convex problem in 3 numbers)
PRIOR_STEP_SIZE = 0.5
CONTENT_FREE = "N/A"  # the content-free input of contextual calibration
SPLIT_MARK = "\u0000SHARED-END\u0000"  # where the shared prefix of a rendered chat prompt ends

# predictor-v1 (completion)
V1_LABELS = {" like": "like", " neutral": "neutral", " dislike": "dislike"}  # answer token text -> label
V1_INTRO = (
    "For each user: their most recent ratings (oldest first), a new item, a profile of the user, and how the "
    "user felt about the new item: like, neutral or dislike.\n\n"
)
# predictor-v2 (chat)
V2_LABELS = {"like": "like", "neutral": "neutral", "dislike": "dislike"}
V2_HEAD = "Here are a user's most recent ratings, oldest first:\n{recent}\n\n"
V2_TAIL = (
    "A profile of the user: {profile}\n\n"
    'New item: "{target}"\n\n'
    "How will the user feel about the new item? Answer with one word: like, neutral or dislike."
)


def block(recent_rows: list[dict], target_text: str, profile: str | None = None) -> str:
    """predictor-v1: a user's block; without `profile` it stops before the profile line (the shared prefix)."""
    recent = "Recent ratings:\n" + history_text(recent_rows) + "\n" if recent_rows else ""  # none: profile only
    text = recent + f'New item: "{target_text}"\n'
    return text if profile is None else text + profile_suffix(profile)


def profile_suffix(profile: str) -> str:
    return f"Profile: {clean_field(profile, PROFILE_CHARS) or NO_PROFILE}\nAnswer:"


class WorkedExamples:
    """predictor-v1's three worked examples from train users, one per label (the first train users by id whose
    first target has that label). A user is never shown their own target as an example."""

    def __init__(self, store: Store, split: Artifact):
        train = train_users(store, split)
        recent, held_out = load_recent_and_targets(store, split, train, 1)
        self.candidates: dict[str, list[tuple[str, str]]] = {label: [] for label in SENTIMENTS}
        for user in train:
            if not held_out[user]:
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
        return V1_INTRO + "".join(blocks)


class CompletionPrompt:
    """predictor-v1: one backend call per target (the target is inside the shared part)."""

    name = "predictor-v1"
    labels = V1_LABELS

    def __init__(self, backend, store: Store, split: Artifact):
        self.examples = WorkedExamples(store, split)
        self.details = {"example_users": self.examples.users}

    def queries(self, user: str, recent: list[dict], targets: list[Target], profiles: list[str]):
        """[(prefix, suffixes)] whose answers, in order, are targets x profiles."""
        head = self.examples.prefix_for(user)
        suffixes = [profile_suffix(text) for text in profiles]
        return [(head + block(recent, target.text), suffixes) for target in targets]


class ChatPrompt:
    """predictor-v2: one backend call per user (instruction and recent ratings shared by every profile and target)."""

    name = "predictor-v2"
    labels = V2_LABELS

    def __init__(self, backend, store: Store, split: Artifact):
        self.backend = backend
        self.details = {}

    def queries(self, user: str, recent: list[dict], targets: list[Target], profiles: list[str]):
        head = V2_HEAD.format(recent=history_text(recent)) if recent else ""  # profile only: no recent ratings
        prefix, suffixes = None, []
        for target in targets:
            for profile in profiles:
                tail = V2_TAIL.format(profile=clean_field(profile, PROFILE_CHARS) or NO_PROFILE, target=target.text)
                text = self.backend.chat_text([{"role": "user", "content": head + SPLIT_MARK + tail}])
                shared, _, rest = text.partition(SPLIT_MARK)
                prefix = shared if prefix is None else prefix
                suffixes.append(rest)
        return [(prefix, suffixes)]


def probabilities(
    logprobs: dict[str, float], labels: dict[str, str], shift: dict[str, float] | None = None
) -> dict[str, float]:
    """The label log-probabilities (keyed by answer text) as a distribution over the labels, after adding
    `shift` (per label: the prior's biases, or minus a calibration's log-probs)."""
    scores = {labels[answer]: value + (shift or {}).get(labels[answer], 0.0) for answer, value in logprobs.items()}
    top = max(scores.values())
    weights = {label: math.exp(value - top) for label, value in scores.items()}
    total = sum(weights.values())
    return {label: weight / total for label, weight in weights.items()}


def fit_prior(logprobs: list[dict[str, float]], truths: list[str]) -> dict[str, float]:
    """Per-label additive biases b minimising the cross-entropy of softmax(log-probs + b) on (answers, truths);
    the biases sum to zero (only their differences matter)."""
    bias = dict.fromkeys(SENTIMENTS, 0.0)
    for _ in range(PRIOR_STEPS):
        gradient = dict.fromkeys(SENTIMENTS, 0.0)
        for scores, truth in zip(logprobs, truths):
            shifted = {label: scores[label] + bias[label] for label in SENTIMENTS}
            top = max(shifted.values())
            total = sum(math.exp(v - top) for v in shifted.values())
            for label in SENTIMENTS:
                gradient[label] += math.exp(shifted[label] - top) / total - (label == truth)
        for label in SENTIMENTS:
            bias[label] -= PRIOR_STEP_SIZE * gradient[label] / len(truths)
    center = sum(bias.values()) / len(bias)
    return {label: round(value - center, 6) for label, value in bias.items()}


class LLMPredictor:
    """llm:BACKEND_SPEC over any backend that reads label log-probabilities (see backends/base.py)."""

    def __init__(self, backend, store: Store, split: Artifact, calibrate: bool = False, prior: bool = True):
        self.backend = backend
        self.prompt = (ChatPrompt if backend.chat else CompletionPrompt)(backend, store, split)
        if calibrate and backend.chat:
            raise UsageError("--calibrate is for completion prompts (predictor-v1); predictor-v2 has a label prior")
        self.calibration: dict[str, dict[str, float]] = {} if calibrate else None
        self.prior = self._fit_prior(store, split) if prior else None
        self.name = f"llm:{backend.name}" + ("" if prior else "?prior=none") + ("?calibrate" if calibrate else "")
        self.details = {
            "spec": backend.spec,
            "prompt": self.prompt.name,
            "calibrate": calibrate,
            "prior": self.prior,
            "exact_label_logprobs": backend.exact_label_logprobs,
            **self.prompt.details,
            **backend.details,
        }

    def label_logprobs(self, user: str, recent: list[dict], targets: list[Target], profiles: list[str]) -> list[dict]:
        """The backend's label log-probs for targets x profiles, in that order, before any prior is divided out
        (predict's input; bench/predictor_accuracy.py reads them to compare with and without the prior)."""
        answers = []
        for prefix, suffixes in self.prompt.queries(user, recent, targets, profiles):
            answers += self.backend.label_logprobs(prefix, suffixes, list(self.prompt.labels))
        return answers

    def _fit_prior(self, store: Store, split: Artifact) -> dict[str, float]:
        """The label prior from train users' no-profile answers on their first target (never a test user's)."""
        train = train_users(store, split)
        recent, held_out = load_recent_and_targets(store, split, train, 1)
        users = [u for u in train if held_out[u]][:PRIOR_USERS]
        if not users:
            return dict.fromkeys(SENTIMENTS, 0.0)
        answers, truths = [], []
        for user in users:
            raw = self.label_logprobs(user, recent[user], held_out[user], [NO_PROFILE])[0]
            shift = self._calibration_shift(user)
            answers.append(
                {self.prompt.labels[a]: v + (shift or {}).get(self.prompt.labels[a], 0.0) for a, v in raw.items()}
            )
            truths.append(held_out[user][0].sentiment)
        return fit_prior(answers, truths)

    def _calibration_shift(self, user: str) -> dict[str, float] | None:
        """Contextual calibration (Zhao et al. 2021, predictor-v1): minus the log-probs of a content-free query
        after the same worked examples, i.e. the bias the prompt alone puts on each label."""
        if self.calibration is None:
            return None
        head = self.prompt.examples.prefix_for(user)
        if head not in self.calibration:
            content_free = [{"text": CONTENT_FREE, "sentiment": "neutral", "rating": 3.0, "shown": "3/5"}]
            raw = self.backend.label_logprobs(
                head + block(content_free, CONTENT_FREE), [profile_suffix(CONTENT_FREE)], list(self.prompt.labels)
            )[0]
            self.calibration[head] = {self.prompt.labels[a]: -v for a, v in raw.items()}
        return self.calibration[head]

    def predict(
        self, user: str, recent: list[dict], targets: list[Target], profile_texts: list[str]
    ) -> list[list[dict]]:
        shift = dict(self._calibration_shift(user) or {})
        for label, bias in (self.prior or {}).items():
            shift[label] = shift.get(label, 0.0) + bias
        answers = self.label_logprobs(user, recent, targets, profile_texts)
        distributions = [probabilities(raw, self.prompt.labels, shift) for raw in answers]
        n = len(profile_texts)
        return [distributions[i * n : (i + 1) * n] for i in range(len(targets))]

    def close(self) -> None:
        self.backend.close()


def load(spec, store: Store, split: Artifact, calibrate: bool = False) -> LLMPredictor:
    """llm:BACKEND_SPEC[?prior=train|none]: the backend spec is the target with the options not the predictor's."""
    from lettingo_cli.backends import load_backend

    prior = spec.options.get("prior", "train")
    if prior not in ("train", "none"):
        raise UsageError(f"bad predictor {spec.text!r}: prior must be train (default) or none")
    return LLMPredictor(load_backend(spec.without("prior"), store=store), store, split, calibrate, prior == "train")


KINDS = (Kind("llm", "llm:BACKEND_SPEC[?prior=train|none] (llm:gemma-3-270m, llm:qwen2.5-1.5b, llm:gguf:PATH)", load),)
