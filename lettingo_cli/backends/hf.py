"""transformers backend (`hf:MODEL_DIR_OR_ID`): batched sampling, bf16 on CPU (faster here: docs/pitfalls.md),
the GPU when there is one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from lettingo_cli.backends.base import Generation, Request, SamplingOptions, cut_at_stop
from lettingo_cli.errors import LettingoError, UsageError, require
from lettingo_cli.specs import Kind

HF_BATCH = 16  # prompts per batch (the spec's batch=N)


class TransformersBackend:
    exact_label_logprobs = True
    streams_requests = False

    def __init__(self, model: str, spec: str, name: str, batch_size: int = 16, chat: bool | None = None):
        torch = self.torch = require("torch")
        transformers = require("transformers")
        self.spec, self.name, self.batch_size = spec, name, batch_size
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).to(self.device)
        except (OSError, ValueError) as error:
            raise LettingoError(f"transformers could not load {model!r}: {str(error).splitlines()[0]}") from None
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.chat = bool(self.tokenizer.chat_template) if chat is None else chat
        self.details = {
            "backend": "transformers",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "model": str(Path(model).resolve()) if Path(model).exists() else model,
            "dtype": "bfloat16",
            "device": self.device,
        }

    def _text(self, prompt) -> str:
        return prompt if isinstance(prompt, str) else self.chat_text(prompt)

    def chat_text(self, messages: list[dict]) -> str:
        """The model's chat template applied to `messages`, ending where the assistant's answer starts."""
        if not self.tokenizer.chat_template:
            raise UsageError(f"{self.spec}: the model has no chat template (use a completion-style prompt)")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[Request], options: SamplingOptions) -> Iterator[tuple[int, Generation]]:
        torch = self.torch
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            encoded = self.tokenizer(
                [self._text(r.prompt) for r in chunk], return_tensors="pt", padding=True, add_special_tokens=True
            ).to(self.device)
            torch.manual_seed(chunk[0].seed)  # the same requests in the same batches sample the same text
            sampling = {"do_sample": True, "temperature": options.temperature, "top_k": 0, "top_p": 1.0}
            with torch.inference_mode():
                output = self.model.generate(
                    **encoded,
                    max_new_tokens=options.max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    stopping_criteria=self._stop_criteria(encoded["input_ids"].shape[1], options.stop),
                    **(sampling if options.temperature > 0 else {"do_sample": False}),
                )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for offset, row in enumerate(new_tokens.tolist()):
                eos = [i for i, token in enumerate(row) if token in self._stop_ids()]
                ended = bool(eos)
                row = row[: eos[0]] if eos else row
                text, stopped = cut_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), options.stop)
                n_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if stopped else len(row)
                yield start + offset, Generation(text=text, n_tokens=n_tokens, finished=ended or stopped)

    def label_logprobs(self, prefix: str, suffixes: Sequence[str], labels: Sequence[str]):
        """log P(label | prefix + suffix): one batched forward pass of the three label continuations per suffix
        (no prefix reuse here; the llama.cpp backend is the fast predictor)."""
        torch, tokenizer = self.torch, self.tokenizer
        prefix_ids = tokenizer(prefix, add_special_tokens=True)["input_ids"]
        label_ids = {label: tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels}
        results = []
        for suffix in suffixes:
            context = prefix_ids + tokenizer(suffix, add_special_tokens=False)["input_ids"]
            rows = [context + label_ids[label] for label in labels]
            width = max(len(row) for row in rows)
            input_ids = torch.tensor(
                [row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows], device=self.device
            )
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows], device=self.device)
            with torch.inference_mode():
                logprobs = torch.log_softmax(
                    self.model(input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1
                )
            scores = {}
            for row, label in enumerate(labels):
                positions = range(len(context) - 1, len(context) - 1 + len(label_ids[label]))
                scores[label] = float(sum(logprobs[row, p, t] for p, t in zip(positions, label_ids[label])))
            results.append(scores)
        return results

    def _stop_criteria(self, prompt_length: int, stops: Sequence[str]):
        """Stop each sequence at a stop string (transformers' own stop_strings fails on some tokenizers)."""
        transformers = require("transformers")
        torch, tokenizer = self.torch, self.tokenizer

        class StopStrings(transformers.StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
                return torch.tensor([any(s in t for s in stops) for t in texts], device=input_ids.device)

        return transformers.StoppingCriteriaList([StopStrings()] if stops else [])

    def _stop_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in ids if i is not None} | {self.tokenizer.eos_token_id}

    def close(self) -> None:
        self.model = None


def load(spec, store=None) -> TransformersBackend:
    from lettingo_cli.backends import stable_name

    return TransformersBackend(
        spec.target,
        spec.text,
        stable_name(spec, f"hf:{Path(spec.target).name}"),
        batch_size=spec.int_option("batch", HF_BATCH),
        chat=spec.style,
    )


KINDS = (Kind("hf", "hf:MODEL_DIR", load),)
