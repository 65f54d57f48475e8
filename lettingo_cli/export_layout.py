"""An export artifact's files, named and read in one place (export writes them; the gguf backend, dpo's
`--base export:NAME` and the model card read them).

    model-<quant>.gguf      a merged, quantized GGUF per type (f16, q8_0, q4_k_m)
    adapter-lora.gguf       --lora-only: the adapter as a GGUF LoRA
    base-f16.gguf           --lora-only over a base other than the default model: that base, shipped with it
    report.json             the verification report
    hf/...                  the merged HF checkpoint (a --base for another dpo round)
"""

from __future__ import annotations

from dataclasses import dataclass, field

LORA = "adapter-lora"
LORA_BASE = "base-f16"
REPORT = "report.json"
CHECKPOINT = "hf/"
# In a checkpoint unpacked for `dpo --base export:NAME`: the name of the GGUF whose tokenizer its export keeps.
TOKENIZER_MARKER = "lettingo-tokenizer-gguf.txt"


def gguf_name(role: str) -> str:
    """The file name of a GGUF: a quant type's merged model, or the LoRA / its base."""
    return f"{role}.gguf" if role in (LORA, LORA_BASE) else f"model-{role}.gguf"


def role_of(file_name: str) -> str:
    return file_name.removesuffix(".gguf").removeprefix("model-")


@dataclass(frozen=True)
class ExportLayout:
    ggufs: dict[str, dict] = field(default_factory=dict)  # role (quant type, LORA, LORA_BASE) -> {path, blob_hash}
    has_checkpoint: bool = False

    @property
    def lora_only(self) -> bool:
        return LORA in self.ggufs

    def quants(self) -> list[str]:
        return [role for role in self.ggufs if role not in (LORA, LORA_BASE)]


def read_layout(store, export) -> ExportLayout:
    files = store.files(export)
    ggufs = {role_of(entry["path"]): entry for entry in files if entry["path"].endswith(".gguf")}
    return ExportLayout(ggufs, any(entry["path"] == CHECKPOINT + "config.json" for entry in files))


def provenance(export) -> dict[str, str]:
    """The `lettingo.*` keys the export wrote into its files (the first file's; --lora-only nests them)."""
    first = next(iter(export.report.get("files", {}).values()), {})
    return first.get("provenance") or first.get("lora", {}).get("provenance", {})
