"""The one backend interface, whatever runs the model: text generation (gen) and label scoring (the LLM
predictor of score and eval)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, Union

# A prompt is completion text for base models, or chat messages for models with a chat template.
Prompt = Union[str, list[dict]]


@dataclass(frozen=True)
class Request:
    prompt: Prompt
    seed: int


@dataclass(frozen=True)
class Generation:
    text: str
    n_tokens: int
    finished: bool  # True when the model stopped by itself (EOS or a stop string), False at max_tokens


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int = 200
    temperature: float = 1.0
    stop: tuple[str, ...] = ()


class Backend(Protocol):
    spec: str  # what the user wrote, e.g. "gguf:gemma-3-270m"
    name: str  # the stable name stored with every profile, e.g. "gguf:gemma-3-270m-q4_k_m@a5fd3b62"
    chat: bool  # True: prompts are chat messages; False: completion text
    details: dict  # what to record in the artifact's parameters (file hash, backend version, ...)
    # True: label_logprobs are the model's own log-probabilities; False: a backend that cannot read them
    # approximates them from a greedy answer (the label it names gets log-prob 0, the others a large negative).
    exact_label_logprobs: bool
    # True: each request samples with its own seed (the batch can change only rounding) and generate() keeps
    # its work full across a long request list, so gen passes every request at once; False: sampling is seeded
    # per batch, so gen passes one resumable chunk at a time (the same texts after a resume).
    streams_requests: bool

    def generate(self, requests: Sequence[Request], options: SamplingOptions) -> Iterator[tuple[int, Generation]]:
        """Generate one completion per request; yield (request index, generation) as each finishes."""
        ...

    def chat_text(self, messages: list[dict]) -> str:
        """The text of `messages` in the model's chat template, up to where the assistant's answer starts (for
        label scoring with a chat prompt); a backend that does not know the template raises UsageError."""
        ...

    def label_logprobs(self, prefix: str, suffixes: Sequence[str], labels: Sequence[str]) -> list[dict[str, float]]:
        """log P(label | prefix + suffix) for each suffix (in order) and each label (the answer's token text,
        e.g. " like"). Completion text, not chat: the prefix is shared by all suffixes, so a backend may read
        it once."""
        ...

    def close(self) -> None: ...


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    positions = [text.find(s) for s in stop if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True
