"""Predictors: `llm:BACKEND_SPEC` (a frozen LLM read through its label log-probs, llm.py) and `emb:minilm`
(sentence embeddings and a small head, embedding.py), behind one interface (base.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lettingo_cli.errors import UsageError

if TYPE_CHECKING:
    from lettingo_cli.predictors.base import Predictor
    from lettingo_cli.store import Artifact, Store

DEFAULT_PREDICTOR = "llm:gemma-3-270m"


def make_predictor(spec: str, store: Store, split: Artifact, calibrate: bool = False) -> Predictor:
    """`llm:BACKEND_SPEC` (e.g. llm:gemma-3-270m) or `emb:minilm`."""
    kind, sep, rest = spec.partition(":")
    if kind == "llm" and sep:
        from lettingo_cli.backends import load_backend
        from lettingo_cli.predictors.llm import LLMPredictor

        return LLMPredictor(load_backend(rest, store=store), store, split, calibrate)
    if kind == "emb" and rest == "minilm":
        from lettingo_cli.predictors.embedding import EmbeddingPredictor

        return EmbeddingPredictor(store, split)
    raise UsageError(f"bad predictor {spec!r}: use llm:BACKEND_SPEC (e.g. llm:gemma-3-270m) or emb:minilm")
