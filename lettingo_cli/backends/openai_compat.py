"""OpenAI-compatible backend (`openai:MODEL@URL`): vLLM, the llama.cpp server, hosted APIs.

This is how generation scales out past one machine: requests run `concurrency` at a time. The API key comes
from an environment variable ($LETTINGO_OPENAI_API_KEY, else $OPENAI_API_KEY, or the one named by
key_env=VAR) and is never written to the store.

`repeat_penalty=X` is sent as the llama.cpp servers' own field: llama-cpp-python's server penalises repeats by
1.1 unless told otherwise (llama.cpp's llama-server and lettingo's own sampling by 1.0), so `repeat_penalty=1.0`
gives the same greedy text as `gguf:FILE`. Hosted APIs refuse fields they do not know: leave it out there.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import urlsplit

from lettingo_cli.backends.base import Generation, Request, SamplingOptions, cut_at_stop
from lettingo_cli.errors import LettingoError, UsageError
from lettingo_cli.specs import Kind

RETRIES = 3
ANSWER_MISS = -30.0  # the log-prob given to the labels a greedy answer did not name
TOP_LOGPROBS = 20  # next-token candidates asked for when scoring labels (OpenAI's own API allows at most 20)
LOGPROB_FLOOR_GAP = 1.0  # a label outside the candidates: below the least likely candidate by this much
TIMEOUT_S = 600
CONCURRENCY = 4  # requests in flight (the spec's concurrency=N)


class OpenAIBackend:
    # first-token log-probs among the server's top candidates (exact for one-token labels); a greedy answer when the
    # server returns none (label_logprobs)
    exact_label_logprobs = False
    streams_requests = True

    def __init__(
        self,
        model: str,
        url: str,
        spec: str,
        name: str,
        concurrency: int = 4,
        chat: bool = True,
        key_env: str | None = None,
        repeat_penalty: float | None = None,
    ):
        self.model, self.spec, self.name, self.chat = model, spec, name, chat
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise LettingoError(f"{spec}: the server URL must start with http:// or https://")
        self.base_url = url.rstrip("/") if parts.path.strip("/") else url.rstrip("/") + "/v1"
        self.concurrency = max(1, concurrency)
        self.extra = {} if repeat_penalty is None else {"repeat_penalty": repeat_penalty}
        names = [key_env] if key_env else ["LETTINGO_OPENAI_API_KEY", "OPENAI_API_KEY"]
        self.api_key = next((os.environ[name] for name in names if os.environ.get(name)), None)
        if key_env and not self.api_key:
            raise LettingoError(f"{spec}: the environment variable {key_env} is not set")
        self.details = {
            "backend": "openai-compatible",
            "model": model,
            "base_url": self.base_url,
            "endpoint": "chat/completions" if chat else "completions",
        }

    def _post(self, endpoint: str, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/{endpoint}", data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        for attempt in range(RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                body = error.read().decode(errors="replace")[:200]
                if error.code in (429, 500, 502, 503, 504) and attempt < RETRIES:
                    time.sleep(2**attempt)
                    continue
                raise LettingoError(f"{self.base_url}/{endpoint} answered {error.code}: {body}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                refused = isinstance(getattr(error, "reason", error), ConnectionRefusedError)
                if attempt < RETRIES and not refused:  # nothing listening: say so at once
                    time.sleep(2**attempt)
                    continue
                reason = getattr(error, "reason", error)
                raise LettingoError(f"cannot reach {self.base_url}: {reason}") from None
        raise AssertionError("unreachable")

    def _one(self, request: Request, options: SamplingOptions) -> Generation:
        common = {
            "model": self.model,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "seed": request.seed,
            **self.extra,
        }
        if options.stop:
            common["stop"] = list(options.stop)[:4]  # the OpenAI API takes at most 4
        if self.chat:
            messages = (
                request.prompt if isinstance(request.prompt, list) else [{"role": "user", "content": request.prompt}]
            )
            answer = self._post("chat/completions", {**common, "messages": messages})
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
        else:
            answer = self._post("completions", {**common, "prompt": request.prompt})
            choice = answer["choices"][0]
            text = choice.get("text") or ""
        text, stopped = cut_at_stop(text, options.stop)
        n_tokens = int((answer.get("usage") or {}).get("completion_tokens") or 0)
        return Generation(text=text, n_tokens=n_tokens, finished=stopped or choice.get("finish_reason") == "stop")

    def label_logprobs(self, prefix: str, suffixes: Sequence[str], labels: Sequence[str]):
        """The server's log-probs of each label's first token among the TOP_LOGPROBS most likely next tokens
        (the completions endpoint: llama.cpp's server and vLLM return them); a label outside them gets the
        smallest returned log-prob minus LOGPROB_FLOOR_GAP. A server that returns no log-probs gets a greedy
        answer instead (see _greedy_labels)."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            tops = list(pool.map(lambda suffix: self._top_logprobs(prefix + suffix), suffixes))
        if any(top is None for top in tops):
            return self._greedy_labels(prefix, suffixes, labels)
        return [_labels_from_top(top, labels) for top in tops]

    def _top_logprobs(self, prompt: str) -> dict[str, float] | None:
        """{token text: log-prob} of the next token's most likely candidates, or None if the server gives none."""
        payload = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        choice = self._post("completions", payload)["choices"][0]
        top = ((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0]
        return {token: float(value) for token, value in top.items()} if top else None

    def _greedy_labels(self, prefix: str, suffixes: Sequence[str], labels: Sequence[str]):
        """For servers without log-probs: a greedy text answer; the label the answer starts with gets log-prob 0
        and the others ANSWER_MISS; an answer naming no label gives every label the same value (P = 1/3 each)."""
        requests = [Request(prefix + suffix, seed=0) for suffix in suffixes]
        options = SamplingOptions(max_tokens=4, temperature=0.0, stop=("\n",))
        answers = dict(self.generate(requests, options))
        results = []
        for index in range(len(suffixes)):
            said = answers[index].text.strip().lower()
            named = next((label for label in labels if said.startswith(label.strip().lower())), None)
            results.append({label: 0.0 if named in (None, label) else ANSWER_MISS for label in labels})
        return results

    def chat_text(self, messages: list[dict]) -> str:
        raise UsageError(
            f"{self.spec}: lettingo does not know the served model's chat template; score with a completion "
            "prompt (?style=completion) or run the model through gguf: or hf:"
        )

    def generate(self, requests: Sequence[Request], options: SamplingOptions) -> Iterator[tuple[int, Generation]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._one, request, options): index for index, request in enumerate(requests)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        pass


def _labels_from_top(top: dict[str, float], labels: Sequence[str]) -> dict[str, float]:
    """Each label's log-prob: the most likely candidate token that starts the label's text (" dis" for
    " dislike"), else the floor below every candidate."""
    floor = min(top.values()) - LOGPROB_FLOOR_GAP
    scores = {}
    for label in labels:
        matches = [
            value
            for token, value in top.items()
            if token.strip()
            and label.lstrip().startswith(token.lstrip())
            and token.startswith(" ") == label.startswith(" ")
        ]
        scores[label] = max(matches, default=floor)
    return scores


def load(spec, store=None) -> OpenAIBackend:
    from lettingo_cli.backends import stable_name

    model, at, url = spec.target.partition("@")
    if not at or not model or not url:
        raise UsageError(
            f"bad generator {spec.text!r}: openai needs MODEL@URL, e.g. openai:gpt-4o-mini@https://api.openai.com/v1"
        )
    host = urlsplit(url).netloc or url
    return OpenAIBackend(
        model,
        url,
        spec.text,
        stable_name(spec, f"openai:{model}@{host}"),
        concurrency=spec.int_option("concurrency", CONCURRENCY),
        chat=True if spec.style is None else spec.style,
        key_env=spec.options.get("key_env"),
        repeat_penalty=spec.float_option("repeat_penalty") if "repeat_penalty" in spec.options else None,
    )


KINDS = (Kind("openai", "openai:MODEL@URL", load),)
