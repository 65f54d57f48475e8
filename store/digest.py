"""The one JSON spelling that content hashes are computed over, and file hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HASH_CHUNK_BYTES = 1 << 20  # files are hashed in 1 MiB reads: flat memory whatever their size


def canonical_json(value) -> str:
    """Sorted keys, no spaces, UTF-8: the same value always gives the same text, hence the same hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
