"""Backends: `KIND:TARGET[?option=value&...]` (specs.py's grammar) -> a Backend (base.py's interface). Each module
here declares its kinds in `KINDS`; the registry finds them, so a new backend is one new module (or, from outside,
a distribution with an entry point in the group `lettingo.backends`: see specs.py).

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
Performance options do not change the stored generator name; style does.
"""

from __future__ import annotations

from lettingo_cli.specs import Registry, Spec

# Performance options do not change the stored generator name (style, dtype and quant do: they change the numbers).
PERFORMANCE_OPTIONS = {"parallel", "ctx", "batch", "concurrency", "key_env", "threads", "sample_threads", "kv"}
REGISTRY = Registry("lettingo_cli.backends", "generator", "lettingo.backends")


def stable_name(spec: Spec, base: str) -> str:
    """The generator's stable name stored with every profile: `base` and the spec's options that change the
    output."""
    kept = sorted((k, v) for k, v in spec.options.items() if k not in PERFORMANCE_OPTIONS)
    return base + ("?" + "&".join(f"{k}={v}" for k, v in kept) if kept else "")


def load_backend(text: str | None, store=None):
    """Build the backend a spec names (None: the default generator). `store` resolves gguf:EXPORT references."""
    from lettingo_cli.models import DEFAULT_GENERATOR

    return REGISTRY.load(text or DEFAULT_GENERATOR, store=store)
