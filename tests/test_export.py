"""export on the tiny model: merge, GGUF, quantize, verification, provenance, and the exported generator runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from lettingo_cli.store import Store
from tests.test_dpo import write_pairs


def train(lettingo, store_path, base, name="obvious"):
    write_pairs(store_path, name, 4)
    result = lettingo("dpo", f"pairs:{name}", "--base", base, "--max-steps", "2", "--lora-r", "4", "--lr", "5e-3")
    assert result.exit_code == 0, result.stderr
    return Store(store_path).resolve(f"adapter:{name}")


def test_export_round_trip_verifies_and_the_gguf_generates(split_store, store_path, tiny_model, tmp_path):
    adapter = train(split_store, store_path, tiny_model.hf_dir)
    out = tmp_path / "laptop"
    result = split_store("export", "adapter:obvious", "--quant", "q8_0,q4_k_m", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["kind"], record["name"], record["version"]) == ("export", "obvious", 1)

    store = Store(store_path)
    export = store.resolve("export:obvious")
    report = export.report
    assert report["passed"] and report["failures"] == []
    assert set(report["files"]) == {"q8_0", "q4_k_m"}  # what ships is verified
    for quant in ("q8_0", "q4_k_m"):
        facts = report["files"][quant]
        assert facts["tokenizer_parity"] == f"{report['texts']}/{report['texts']}"
        assert facts["eos_token_id"] == 2 and facts["tokenizer_model"] == "llama"
        assert facts["provenance"]["lettingo.adapter.id"] == str(adapter.id)
        assert facts["provenance"]["lettingo.adapter.hash"] == adapter.content_hash
        assert facts["provenance"]["lettingo.pairs.ref"] == "pairs:obvious@v1"
        # a shipped file names its base and says its hash, but holds no path of this machine
        assert facts["provenance"]["lettingo.base.name"] == tiny_model.hf_dir.name
        assert not [v for v in facts["provenance"].values() if "/" in v or str(Path.home()) in v]
    assert report["files"]["q8_0"]["agreement"] >= 0.9 and report["files"]["q8_0"]["decided_agreement"] >= 0.9
    assert 0 <= report["files"]["q8_0"]["near_ties"] < report["prompts"] * 16
    assert report["files"]["q8_0"]["tensor_types"].get("Q8_0", 0) > 0
    # hidden size 64 is not a multiple of 256: the k-quant falls back, and the report says so
    assert "Q4_K" not in report["files"]["q4_k_m"]["tensor_types"]
    stored = {entry["path"] for entry in store.files(export)}
    assert {"model-q8_0.gguf", "model-q4_k_m.gguf", "report.json", "hf/config.json", "hf/tokenizer.model"} <= stored
    bundle = ["Modelfile", "README.md", "prompt-example.txt", "prompt-template.txt", "report.json"]  # test_laptop
    assert sorted(p.name for p in out.iterdir()) == sorted(["model-q4_k_m.gguf", "model-q8_0.gguf", *bundle])
    copied_report = (out / "report.json").read_text()
    assert str(tmp_path) not in copied_report and str(tiny_model.hf_dir) not in copied_report

    # a laptop: one file, plain llama-cpp-python
    code = (
        "from llama_cpp import Llama; m = Llama(model_path='%s', verbose=False); "
        "print(repr(m('Profile:', max_tokens=5, temperature=0)['choices'][0]['text']))" % (out / "model-q4_k_m.gguf")
    )
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("'") and len(eval(bare.stdout)) > 0  # it generated text

    # the exported model is a generator like any other
    gen = split_store(
        "gen", "--users", "test", "--generator", "gguf:export:obvious?quant=q4_k_m", "--n", "1", "--max-tokens", "8"
    )
    assert gen.exit_code == 0, gen.stderr
    rows = list(store.rows(store.resolve(gen.stdout.strip()), "profiles"))
    assert len(rows) == 5 and rows[0]["generator"].startswith("gguf:obvious-v1-q4_k_m")

    again = split_store("export", "adapter:obvious", "--quant", "q8_0,q4_k_m")
    assert again.exit_code == 0 and again.stdout == "export:obvious@v1\n" and "already exported" in again.stderr

    # a second round starts from the export's merged checkpoint
    second = split_store(
        "dpo", "pairs:obvious", "--base", "export:obvious", "--max-steps", "2", "--lora-r", "4", "--name", "round2"
    )
    assert second.exit_code == 0, second.stderr
    base = Path(Store(store_path).run(Store(store_path).resolve("adapter:round2").run_id)["params"]["base"])
    assert (base / "config.json").exists() and base != tiny_model.hf_dir
    round2 = split_store("export", "adapter:round2", "--quant", "q8_0")
    assert round2.exit_code == 0 and round2.stdout == "export:round2@v1\n", round2.stderr
    round2_report = Store(store_path).resolve("export:round2").report
    assert list(round2_report["files"]) == ["q8_0"] and round2_report["passed"]
    assert round2_report["files"]["q8_0"]["provenance"]["lettingo.adapter.ref"] == "adapter:round2@v1"


def test_a_broken_tokenizer_fails_the_parity_check(lettingo, store_path, tiny_model, tmp_path):
    base = tmp_path / "broken"
    shutil.copytree(tiny_model.hf_dir, base)
    tokenizer = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]  # piece -> id
    from transformers import AutoTokenizer

    used = AutoTokenizer.from_pretrained(base)("Profile: likes films")["input_ids"][1:3]  # two pieces every prompt has
    first, second = (next(piece for piece, index in vocab.items() if index == token) for token in used)
    vocab[first], vocab[second] = vocab[second], vocab[first]  # the HF side now disagrees with tokenizer.model
    (base / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    train(lettingo, store_path, base, "broken")
    result = lettingo("export", "adapter:broken")
    assert result.exit_code == 4, result.stderr
    assert "tokenizer differ" in result.stderr and "Traceback" not in result.stderr
    assert Store(store_path).list(kind="export") == []


def test_missing_llama_cpp_python_exits_5(tmp_path, store_path):
    hidden = tmp_path / "hide" / "llama_cpp"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named llama_cpp')\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(hidden.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "lettingo_cli", "export", "--store", str(store_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 5
    assert result.stderr.strip().count("\n") == 0 and "llama-cpp-python" in result.stderr


def test_lora_only_applies_at_run_time_and_matches_the_merged_model(split_store, store_path, tiny_model, tmp_path):
    write_pairs(store_path, "strong", 8)
    trained = split_store(
        "dpo",
        "pairs:strong",
        "--base",
        tiny_model.hf_dir,
        "--max-steps",
        "8",
        "--lr",
        "5e-3",
        "--lora-r",
        "4",
        "--lora-alpha",
        "8",
    )
    assert trained.exit_code == 0, trained.stderr
    out = tmp_path / "lora"
    result = split_store("export", "adapter:strong", "--lora-only", "--out", out)
    assert result.exit_code == 0, result.stderr
    report = Store(store_path).resolve("export:strong").report
    facts = report["files"]["lora"]
    # the adapter moved the model: the base alone is measurably off, the base + LoRA is not
    assert facts["lora"]["base_alone_mean_abs_logprob_diff"] > 0.01
    assert facts["mean_abs_logprob_diff"] < 0.2 * facts["lora"]["base_alone_mean_abs_logprob_diff"]
    assert facts["agreement"] >= 0.9 and facts["lora"]["provenance"]["lettingo.pairs.ref"] == "pairs:strong@v1"
    bundle = ["Modelfile", "README.md", "prompt-example.txt", "prompt-template.txt", "report.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["adapter-lora.gguf", "base-f16.gguf", *bundle])
    modelfile = (out / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./base-f16.gguf\nADAPTER ./adapter-lora.gguf\n" in modelfile
    assert tiny_model.hf_dir.name in (out / "README.md").read_text(encoding="utf-8")  # the base, by name

    code = (
        f"from llama_cpp import Llama; m = Llama(model_path='{out / 'base-f16.gguf'}', "
        f"lora_path='{out / 'adapter-lora.gguf'}', verbose=False); "
        "print(repr(m('Profile:', max_tokens=4, temperature=0)['choices'][0]['text']))"
    )
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    gen = split_store("gen", "--users", "2", "--generator", "gguf:export:strong", "--n", "1", "--max-tokens", "6")
    assert gen.exit_code == 0, gen.stderr
    rows = list(Store(store_path).rows(Store(store_path).resolve(gen.stdout.strip()), "profiles"))
    assert rows and rows[0]["generator"].startswith("gguf:strong-v1-lora")


def test_metadata_rewrite_and_facts_agree_with_the_gguf_library(tiny_model, tmp_path):
    """rewrite_gguf and gguf_facts walk the file's bytes (no per-element parsing of the tokenizer arrays); the
    reference reader, gguf-py's GGUFReader, must read the rewritten file as the source plus the new keys, with
    the donor's tokenizer and every tensor's bytes unchanged, and find the facts gguf_facts finds."""
    import numpy as np
    from gguf import GGUFReader

    from lettingo_cli.gguf_files import gguf_facts, rewrite_gguf

    donor = rewrite_gguf(tiny_model.gguf, tmp_path / "donor.gguf", {"tokenizer.chat_template": "{{ x }}"}, None)
    target = rewrite_gguf(tiny_model.gguf, tmp_path / "out.gguf", {"lettingo.adapter.ref": "adapter:a@v1"}, donor)

    def fields(path):
        reader = GGUFReader(path)
        found = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
        return found, {t.name: (t.tensor_type.name, np.asarray(t.data).tobytes()) for t in reader.tensors}

    source, source_tensors = fields(tiny_model.gguf)
    written, written_tensors = fields(target)
    assert written == {**source, "tokenizer.chat_template": "{{ x }}", "lettingo.adapter.ref": "adapter:a@v1"}
    assert len(source["tokenizer.ggml.tokens"]) > 100  # the arrays walked over are real
    assert written_tensors == source_tensors and len(written_tensors) > 5

    reader = GGUFReader(target)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    facts = gguf_facts(target)
    assert facts["tensors"] == types
    assert facts["eos_token_id"] == int(reader.get_field("tokenizer.ggml.eos_token_id").contents())
    assert facts["tokenizer_model"] == reader.get_field("tokenizer.ggml.model").contents()
    assert facts["chat_template"] is True and gguf_facts(tiny_model.gguf)["chat_template"] is False
    assert facts["provenance"] == {"lettingo.adapter.ref": "adapter:a@v1"}


def test_verification_fails_a_file_of_another_model(tiny_model, tmp_path):
    """The agreement check can fail: a GGUF of another model (same tokenizer, other weights) disagrees on the
    decided positions and the report says so; near-ties are counted, not held against the file."""
    from bench.tiny_model import build_tiny_model, convert_to_gguf
    from lettingo_cli.export_verify import verify_export

    other = convert_to_gguf(build_tiny_model(tmp_path / "other", seed=7), tmp_path / "other.gguf")
    prompts = ["Ratings: liked drama, disliked horror. Profile:", "the user enjoys tense crime films and"]
    same = verify_export(tiny_model.hf_dir, {"q8_0": tiny_model.gguf}, prompts)
    wrong = verify_export(tiny_model.hf_dir, {"q8_0": other}, prompts)
    assert same["passed"] and same["files"]["q8_0"]["decided_agreement"] >= 0.9
    assert not wrong["passed"] and wrong["files"]["q8_0"]["decided_agreement"] < 0.9
    assert any("greedy agreement" in failure for failure in wrong["failures"])
