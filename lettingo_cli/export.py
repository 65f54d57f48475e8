"""Stage `export`: merge an adapter into its float base, convert to GGUF, quantize, verify; writes an export artifact.

The steps: PEFT `merge_and_unload` on the float base (never a quantized one) -> HF checkpoint (`hf/`, also a
`--base` for another dpo round) -> `convert-hf-to-gguf --outtype f16` -> provenance (`lettingo.*` keys) and,
for the default generator, the tokenizer of the GGUF it came from -> `llama_model_quantize` per type ->
verification. Nothing is recorded unless every check passes; the report is stored with the artifact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import IntegrityError, LettingoError, UsageError, require
from lettingo_cli.export_layout import CHECKPOINT, LORA, LORA_BASE, REPORT, TOKENIZER_MARKER, gguf_name
from lettingo_cli.gguf_files import convert_to_gguf, quantize, rewrite_gguf, write_lora_gguf
from lettingo_cli.options import option
from lettingo_cli.store import Artifact, Store, Verbs
from lettingo_cli.store.digest import sha256_file
from lettingo_cli.training.common import trained_prompts
from lettingo_cli.version import __version__

VERBS = Verbs("export", "exported")
EXPORT_TYPES = ("f16", "q8_0", "q4_k_m")
DEFAULT_QUANTS = ("q8_0", "q4_k_m")
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "added_tokens.json",
)


@dataclass(frozen=True)
class ExportOptions:
    """The options of `lettingo export` (each field is also its flag and a key of its --config YAML)."""

    quant: str = option(",".join(DEFAULT_QUANTS), "Comma-separated GGUF types: q8_0, q4_k_m, f16.")
    lora_only: bool = option(False, "A GGUF LoRA over the base GGUF instead of a merge.")
    # pair prompts used for the agreement check (each ~900 tokens on MovieLens)
    prompts: int = option(3, "Pair prompts the verification continues greedily.")
    continuation: int = option(16, "Greedy tokens compared after each verification prompt.")

    @property
    def quants(self) -> tuple[str, ...]:
        return tuple(q.strip().lower() for q in self.quant.split(",") if q.strip())

    def __post_init__(self) -> None:
        if self.prompts < 1 or self.continuation < 1:
            raise UsageError("--prompts and --continuation must be >= 1")
        unknown = [q for q in self.quants if q not in EXPORT_TYPES]
        if unknown or not self.quants:
            known = ", ".join(EXPORT_TYPES)
            raise UsageError(f"--quant: unknown type(s) {', '.join(unknown) or '(none)'}; known: {known}")


def check_dependencies() -> None:
    """Export needs llama-cpp-python (quantize, verify), PEFT (merge) and the converter's gguf module."""
    for module, package in (("llama_cpp", "llama-cpp-python"), ("peft", "peft"), ("gguf", "convert-hf-to-gguf")):
        require(module, package)


def export_adapter(
    store: Store, adapter: Artifact, options: ExportOptions, name: str, out: Path | None = None, force: bool = False
) -> Artifact:
    """The stage (its caller checks the dependencies first: api.export does, before reading the store)."""
    from lettingo_cli.export_verify import verify_export

    training = store.run(adapter.run_id) if adapter.run_id is not None else None
    if training is None or "base" not in training["params"]:
        raise LettingoError(f"{adapter.ref} was not written by a training stage: no base model on record")
    base = Path(training["params"]["base"])
    if not (base / "config.json").exists():
        raise LettingoError(f"{adapter.ref}'s base {base} is gone (rebuild it, or train again with another --base)")
    params = {
        "adapter": adapter.id,
        "quants": [] if options.lora_only else list(options.quants),
        "lora_only": options.lora_only,
        "prompts": options.prompts,
        "continuation": options.continuation,
    }
    run = store.stage("export", "export", name, params, {"adapter": adapter.id}, force=force, verbs=VERBS)
    if run.cached:
        if out is not None:
            _copy_out(store, run.cached, out)
        return run.cached
    timings: dict[str, float] = {}
    with run, tempfile.TemporaryDirectory(dir=store.path.parent) as work:
        work = Path(work)
        started = time.perf_counter()
        merged = _merge(store, adapter, base, work)
        timings["merge_s"] = _lap(started)
        started = time.perf_counter()
        source = _source_gguf(base)
        provenance = {
            "lettingo.version": __version__,
            "lettingo.adapter.id": str(adapter.id),
            "lettingo.adapter.ref": adapter.ref,
            "lettingo.adapter.hash": adapter.content_hash or "",
            # names and hashes only: the files go to other people's machines, never this one's paths
            "lettingo.base.name": _base_name(base),
            "lettingo.base.sha256": _weights_hash(base),
            "lettingo.base.tokenizer_from": source.name if source else "",
            "lettingo.base.tokenizer_sha256": sha256_file(source) if source else "",
            "lettingo.trained_by": training["stage"],
            **_training_provenance(store, adapter),
        }
        texts = trained_prompts(store, adapter, options.prompts)
        if options.lora_only:
            lora_file, base_file = _lora_files(adapter, base, work, provenance, source)
            timings["convert_s"] = _lap(started)
            started = time.perf_counter()
            kept = {LORA: lora_file} | ({LORA_BASE: base_file} if source is None else {})
            report = verify_export(merged, {"lora": (base_file, lora_file)}, texts, options.continuation)
        else:
            converted = convert_to_gguf(merged, work / "converted-f16.gguf")
            timings["convert_s"] = _lap(started)
            started = time.perf_counter()
            f16 = rewrite_gguf(converted, work / gguf_name("f16"), provenance, source)
            converted.unlink()
            files = {"f16": f16}
            for quant in options.quants:
                if quant != "f16":
                    files[quant] = quantize(f16, work / gguf_name(quant), quant)  # each from f16
            timings["quantize_s"] = _lap(started)
            started = time.perf_counter()
            kept = {quant: path for quant, path in files.items() if quant in options.quants}  # what ships is verified
            report = verify_export(merged, kept, texts, options.continuation)
        timings["verify_s"] = _lap(started)
        if not report["passed"]:
            raise IntegrityError(f"export verification failed: {'; '.join(report['failures'])}")
        (work / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        store.add_file(run.artifact, work / REPORT, REPORT)
        for path in kept.values():
            store.add_file(run.artifact, path, path.name)
        store.add_dir(run.artifact, merged, prefix=CHECKPOINT)  # a --base for another dpo round
        timings["total_s"] = round(sum(timings.values()), 1)
        result = run.finish(counts={"files": len(kept)}, report=report, stats=timings)
    sizes = ", ".join(
        f"{q} {f['mb']} MB, agreement {f['agreement']} ({f.get('decided_agreement')} without near-ties)"
        for q, f in report["files"].items()
    )
    log(f"{result.ref}: {sizes}; {timings['total_s']} s")
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


def _source_gguf(base: Path) -> Path | None:
    """The GGUF a base checkpoint was dequantized from (the default generator), whose tokenizer the export keeps."""
    from lettingo_cli.models import default_gguf, default_hf_dir_path

    if base.resolve() == default_hf_dir_path().resolve():
        return default_gguf()
    marker = base / TOKENIZER_MARKER  # a previous export's checkpoint (dpo --base export:NAME)
    if not marker.exists():
        return None
    from lettingo_cli.models import cached_gguf

    return cached_gguf(marker.read_text(encoding="utf-8").strip())


def _base_name(base: Path) -> str:
    """The name a base goes by in shipped files: the default generator's, or its checkpoint folder's."""
    from lettingo_cli.models import DEFAULT_GENERATOR, default_hf_dir_path

    return DEFAULT_GENERATOR if base.resolve() == default_hf_dir_path().resolve() else base.name


def _weights_hash(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]:
        digest.update(file.name.encode() + b"\0" + sha256_file(file).encode())
    return digest.hexdigest()


def _lora_files(
    adapter: Artifact, base: Path, work: Path, provenance: dict[str, str], source: Path | None
) -> tuple[Path, Path]:
    """The adapter as a GGUF LoRA, and the base GGUF it applies to: the default model's (bf16 copy of the GGUF
    it was dequantized from) or the base converted to f16 here, which then ships with it."""
    from lettingo_cli.models import default_gguf_bf16

    lora = write_lora_gguf(work / "adapter", base, work / gguf_name(LORA), provenance)
    if source is not None:
        return lora, default_gguf_bf16()
    converted = convert_to_gguf(base, work / "converted-base.gguf")
    return lora, rewrite_gguf(converted, work / gguf_name(LORA_BASE), {}, None)


def _training_provenance(store: Store, adapter: Artifact) -> dict[str, str]:
    """What the adapter learned from, by reference and hash, as its training stage recorded it (adapters trained
    before it recorded one: the inputs of the run that made them)."""
    if "provenance" in adapter.report:
        return dict(adapter.report["provenance"])
    found = {}
    for role, source in store.run_inputs(adapter.run_id):
        found |= {f"lettingo.{role}.id": str(source.id), f"lettingo.{role}.ref": source.ref,
                  f"lettingo.{role}.hash": source.content_hash or ""}  # fmt: skip
    return found


def _copy_out(store: Store, artifact: Artifact, out: Path) -> None:
    """The GGUFs and the report, and beside them a model card, an Ollama Modelfile and the prompt template."""
    from lettingo_cli.model_card import write_bundle

    out.mkdir(parents=True, exist_ok=True)
    ggufs = []
    for entry in store.files(artifact):
        if entry["path"].endswith(".gguf") or entry["path"] == REPORT:
            shutil.copyfile(store.blob_path(entry["blob_hash"]), out / entry["path"])
            log(f"wrote {out / entry['path']}")
            if entry["path"].endswith(".gguf"):
                ggufs.append(entry["path"])
    write_bundle(store, artifact, out, ggufs)
