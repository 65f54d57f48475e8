"""dpo on the tiny model: a few steps on an obvious preference, the adapter loads with PEFT, refusals."""

from __future__ import annotations


from lettingo_cli.store import Store


def write_pairs(store_path, name, count, chosen="liked drama and war films.", rejected="zz qq xx"):
    store = Store(store_path)
    artifact = store.begin("pairs", name, {}, None)
    store.insert_rows(artifact, "pairs", [
        {"user_id": f"u{i}", "pair_index": 0, "prompt": f"Ratings:\n- \"Movie {i}\": liked (5/5)\nProfile:",
         "chosen": chosen, "rejected": rejected, "chosen_score": 0.9, "rejected_score": 0.1}
        for i in range(count)
    ])
    return store.finalize(artifact)


def test_dpo_moves_margins_and_the_adapter_loads(lettingo, store_path, tiny_model, tmp_path):
    write_pairs(store_path, "obvious", 8)
    result = lettingo("dpo", "pairs:obvious", "--base", tiny_model.hf_dir, "--lr", "5e-3", "--max-steps", "8",
                      "--batch-size", "2", "--lora-r", "4", "--lora-alpha", "8", "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "adapter:obvious@v1\n"
    store = Store(store_path)
    adapter = store.resolve("adapter:obvious")
    steps = list(store.db.query("SELECT * FROM dpo_steps WHERE run_id = ? ORDER BY step", [adapter.run_id]))
    assert [s["step"] for s in steps] == list(range(1, 9))
    assert steps[-1]["rewards_margins"] > steps[0]["rewards_margins"]
    assert steps[-1]["loss"] < steps[0]["loss"] and steps[-1]["rewards_accuracies"] == 1.0
    assert {f["path"] for f in store.files(adapter)} >= {"adapter_config.json", "adapter_model.safetensors"}

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = store.materialize(adapter, tmp_path / "adapter")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model.hf_dir), folder)
    lora = [name for name, _ in model.named_parameters() if "lora_" in name]
    assert lora and not any("embed" in name or "lm_head" in name for name in lora)


def test_dpo_refusals(lettingo, store_path, tiny_model):
    write_pairs(store_path, "empty", 0)
    empty = lettingo("dpo", "pairs:empty", "--base", tiny_model.hf_dir)
    assert empty.exit_code == 1 and "has no pairs" in empty.stderr
    write_pairs(store_path, "long", 2)
    long = lettingo("dpo", "pairs:long", "--base", tiny_model.hf_dir, "--max-length", "8")
    assert long.exit_code == 1 and "not under --max-length 8" in long.stderr
    assert lettingo("dpo", "pairs:long", "--base", "/no/such/dir").exit_code == 2
    assert lettingo("dpo", "pairs:long", "--beta", "0").exit_code == 2
