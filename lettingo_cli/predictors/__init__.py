"""Predictors behind one interface (base.py); each module declares its kinds in `KINDS` and the registry
(specs.py) finds them, so a new predictor is one new module (or, from outside, a distribution with an entry point in
the group `lettingo.predictors`):

- llm:BACKEND_SPEC[?prior=train|none]: a frozen LLM read through its label log-probs (llm.py)
- emb:minilm: sentence embeddings and a small head (embedding.py)
- head:minilm[?profiles=REF]: a head over user, item and profile features fitted on train users (head.py)
- reader:bow[?profiles=REF][&user_mean=1][&values=0][&without=REF]: a small network reading the profile, fitted
  once on train users (less those of `without`) and stored as a `predictor` artifact (reader.py); `predictor:REF`
  names such an artifact directly
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lettingo_cli.specs import Registry

if TYPE_CHECKING:
    from lettingo_cli.predictors.base import Predictor
    from lettingo_cli.store import Artifact, Store

# Chosen by bench/predictor_accuracy.py: the only design above the trivial baselines without a profile (10H).
DEFAULT_PREDICTOR = "head:minilm"
# Chosen by bench/profile_only.py for splits without recent history (--recent 0), where the profile is the user.
PROFILE_ONLY_PREDICTOR = "reader:bow"
REGISTRY = Registry("lettingo_cli.predictors", "predictor", "lettingo.predictors")


def default_predictor(split: Artifact) -> str:
    """The predictor `score` and `eval` use when none is given: it depends on the split's protocol."""
    from lettingo_cli.split_data import profile_only

    return PROFILE_ONLY_PREDICTOR if profile_only(split) else DEFAULT_PREDICTOR


def make_predictor(spec: str | None, store: Store, split: Artifact, calibrate: bool = False) -> Predictor:
    """The predictor a spec names (see the module's docstring; None: the split's default)."""
    return REGISTRY.load(spec or default_predictor(split), store=store, split=split, calibrate=calibrate)
