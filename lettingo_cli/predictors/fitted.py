"""Predictors fitted once and stored: stage `fit` for any kind that declares fitting (`Kind.fit`: reader:bow,
head:minilm), and `predictor:REF`, which names such a predictor artifact directly."""

from __future__ import annotations

from dataclasses import dataclass

from lettingo_cli.errors import UsageError
from lettingo_cli.options import option
from lettingo_cli.specs import Kind
from lettingo_cli.store import Artifact, Store, Verbs

VERBS = Verbs("fit", "fitted")  # the stage of every kind that is fitted (reader.py's, head.py's fit)


@dataclass(frozen=True)
class FitOptions:
    """The options of `lettingo fit` (each field is also its flag and a key of its --config YAML)."""

    predictor: str = option(
        "reader:bow",
        "The predictor to fit: reader:bow[?profiles=REF][&user_mean=1][&values=0][&without=REF] | "
        "head:minilm[?profiles=REF].",
    )


def fit_predictor(spec: str, store: Store, split: Artifact, force: bool = False) -> Artifact:
    """The predictor artifact of `spec` on `split`: fitted on its train users once, then found in the store."""
    from lettingo_cli.predictors import REGISTRY

    parsed, kind = REGISTRY.spec(spec)
    if kind.fit is None:
        fitted = ", ".join(sorted(k.name for k in REGISTRY.kinds().values() if k.fit is not None))
        raise UsageError(f"{spec}: a {kind.name} predictor is not fitted (the kinds fitted once: {fitted})")
    return kind.fit(parsed, store, split, force)


def load_fitted(spec, store: Store, split: Artifact, calibrate: bool = False):
    """predictor:REF: the predictor a fitted artifact holds, whichever kind fitted it."""
    from lettingo_cli.predictors import REGISTRY

    artifact = store.resolve(spec.target, kind="predictor")
    _, kind = REGISTRY.spec(artifact.params["predictor"])
    if kind.from_artifact is None:
        raise UsageError(f"{artifact.ref}: its kind {kind.name} does not load from a predictor artifact")
    return kind.from_artifact(store, split, artifact)


KINDS = (Kind("predictor", "predictor:REF", load_fitted),)
