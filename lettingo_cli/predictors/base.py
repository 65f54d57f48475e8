"""The one interface every predictor implements: P(like / neutral / dislike) of a held-out target item, given a
user's recent history and one profile (or none)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lettingo_cli.split_data import Target

NO_PROFILE = "(none)"  # the profile slot's text when there is no profile (the 10H baseline, an empty profile)


class Predictor(Protocol):
    name: str  # the stable name stored with every score, e.g. "llm:gguf:gemma-3-270m@..." or "emb:minilm"
    details: dict  # what to record in the score artifact's parameters

    def predict(
        self, user: str, recent: list[dict], targets: list[Target], profile_texts: list[str]
    ) -> list[list[dict[str, float]]]:
        """For each target, one distribution over the labels per profile text, in order (all of a user's targets
        at once, so a predictor can read what they share once; `user` lets a predictor keep a user's own data
        out of what it shows or fits for them)."""
        ...

    def close(self) -> None: ...
