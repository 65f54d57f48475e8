"""Predictors behind one interface (base.py):

- llm:BACKEND_SPEC[?prior=train|none]: a frozen LLM read through its label log-probs (llm.py)
- emb:minilm: sentence embeddings and a small head (embedding.py)
- head:minilm[?profiles=REF]: a head over user, item and profile features fitted on train users (head.py)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lettingo_cli.errors import UsageError

if TYPE_CHECKING:
    from lettingo_cli.predictors.base import Predictor
    from lettingo_cli.store import Artifact, Store

# Chosen by bench/predictor_accuracy.py: the only design above the trivial baselines without a profile.
DEFAULT_PREDICTOR = "head:minilm"


def _pop_option(spec: str, name: str, default: str) -> tuple[str, str]:
    """`spec` without the query option `name`, and that option's value (a predictor's own, not the backend's)."""
    from urllib.parse import parse_qsl

    body, _, query = spec.partition("?")
    options = parse_qsl(query, keep_blank_values=True)
    value = next((v for k, v in options if k == name), default)
    rest = "&".join(f"{k}={v}" for k, v in options if k != name)
    return body + (f"?{rest}" if rest else ""), value


def make_predictor(spec: str, store: Store, split: Artifact, calibrate: bool = False) -> Predictor:
    """`llm:BACKEND_SPEC` (e.g. llm:gemma-3-270m) or `emb:minilm`."""
    kind, sep, rest = spec.partition(":")
    if kind == "llm" and sep:
        from lettingo_cli.backends import load_backend
        from lettingo_cli.predictors.llm import LLMPredictor

        backend_spec, prior = _pop_option(rest, "prior", "train")
        if prior not in ("train", "none"):
            raise UsageError(f"bad predictor {spec!r}: prior must be train (default) or none")
        return LLMPredictor(load_backend(backend_spec, store=store), store, split, calibrate, prior == "train")
    if kind == "emb" and rest == "minilm":
        from lettingo_cli.predictors.embedding import EmbeddingPredictor

        return EmbeddingPredictor(store, split)
    model, _, query = rest.partition("?")
    if kind == "head" and model == "minilm" and (not query or query.startswith("profiles=")):
        from lettingo_cli.predictors.head import HeadPredictor

        profiles = store.resolve(query.removeprefix("profiles="), kind="profiles") if query else None
        return HeadPredictor(store, split, profiles)
    raise UsageError(
        f"bad predictor {spec!r}: use llm:BACKEND_SPEC (e.g. llm:gemma-3-270m), emb:minilm or "
        "head:minilm[?profiles=REF]"
    )
