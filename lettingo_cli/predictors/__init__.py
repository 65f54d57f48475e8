"""Predictors behind one interface (base.py):

- llm:BACKEND_SPEC[?prior=train|none]: a frozen LLM read through its label log-probs (llm.py)
- emb:minilm: sentence embeddings and a small head (embedding.py)
- head:minilm[?profiles=REF]: a head over user, item and profile features fitted on train users (head.py)
- reader:bow[?profiles=REF][&user_mean=1]: a small network that reads the profile's words, fitted once on train
  users and stored as a `predictor` artifact (reader.py); `predictor:REF` names such an artifact directly
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lettingo_cli.errors import UsageError

if TYPE_CHECKING:
    from lettingo_cli.predictors.base import Predictor
    from lettingo_cli.store import Artifact, Store

# Chosen by bench/predictor_accuracy.py: the only design above the trivial baselines without a profile (10H).
DEFAULT_PREDICTOR = "head:minilm"
# Chosen by bench/profile_only.py for splits without recent history (--recent 0), where the profile is the user.
PROFILE_ONLY_PREDICTOR = "reader:bow"


def default_predictor(split: Artifact) -> str:
    """The predictor `score` and `eval` use when none is given: it depends on the split's protocol."""
    from lettingo_cli.split import profile_only

    return PROFILE_ONLY_PREDICTOR if profile_only(split) else DEFAULT_PREDICTOR


def _pop_option(spec: str, name: str, default: str) -> tuple[str, str]:
    """`spec` without the query option `name`, and that option's value (a predictor's own, not the backend's)."""
    from urllib.parse import parse_qsl

    body, _, query = spec.partition("?")
    options = parse_qsl(query, keep_blank_values=True)
    value = next((v for k, v in options if k == name), default)
    rest = "&".join(f"{k}={v}" for k, v in options if k != name)
    return body + (f"?{rest}" if rest else ""), value


def make_predictor(spec: str | None, store: Store, split: Artifact, calibrate: bool = False) -> Predictor:
    """The predictor a spec names (see the module's docstring; None: the split's default)."""
    spec = spec or default_predictor(split)
    kind, sep, rest = spec.partition(":")
    if kind in ("reader", "predictor") and sep:
        from lettingo_cli.predictors.reader import ReaderPredictor, fit_reader, parse_reader_spec

        if kind == "predictor":
            fitted = store.resolve(rest, kind="predictor")
        else:
            fitted = fit_reader(store, split, parse_reader_spec(spec, store))
        return ReaderPredictor(store, split, fitted)
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
        f"bad predictor {spec!r}: use llm:BACKEND_SPEC (e.g. llm:gemma-3-270m), emb:minilm, "
        "head:minilm[?profiles=REF], reader:bow[?profiles=REF][&user_mean=1] or predictor:REF"
    )
