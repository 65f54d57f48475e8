"""dpo on the tiny model: a few steps on an obvious preference, the adapter loads with PEFT, refusals."""

from __future__ import annotations

import pytest

from lettingo_cli.store import Store


def write_pairs(store_path, name, count, chosen="liked drama and war films.", rejected="zz qq xx"):
    store = Store(store_path)
    artifact = store.begin("pairs", name, {}, None)
    store.insert_rows(
        artifact,
        "pairs",
        [
            {
                "user_id": f"u{i}",
                "pair_index": 0,
                "prompt": f'Ratings:\n- "Movie {i}": liked (5/5)\nProfile:',
                "chosen": chosen,
                "rejected": rejected,
                "chosen_score": 0.9,
                "rejected_score": 0.1,
            }
            for i in range(count)
        ],
    )
    return store.finalize(artifact)


def test_dpo_moves_margins_and_the_adapter_loads(lettingo, store_path, tiny_model, tmp_path):
    write_pairs(store_path, "obvious", 8)
    result = lettingo(
        "dpo",
        "pairs:obvious",
        "--base",
        tiny_model.hf_dir,
        "--lr",
        "5e-3",
        "--max-steps",
        "8",
        "--batch-size",
        "2",
        "--lora-r",
        "4",
        "--lora-alpha",
        "8",
        "--epochs",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "adapter:obvious@v1\n"
    store = Store(store_path)
    adapter = store.resolve("adapter:obvious")
    steps = store.training_steps(adapter.run_id)
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


def test_length_desensitized_dpo_trains_differently_and_is_its_own_run(lettingo, store_path, tiny_model):
    """--ld-alpha reaches TRL: with a long chosen and a short rejected profile, the second step's loss differs
    from plain DPO's; the plain run's key is the one it had before the option existed (a cache hit)."""
    write_pairs(store_path, "lengths", 4, chosen="liked drama and war films, " * 6, rejected="zz")
    common = ["dpo", "pairs:lengths", "--base", tiny_model.hf_dir, "--lr", "5e-3", "--max-steps", "2", "--lora-r", "4"]
    plain = lettingo(*common, "--name", "plain")
    desensitized = lettingo(*common, "--ld-alpha", "0.3", "--name", "ld")
    assert plain.exit_code == 0 and desensitized.exit_code == 0, desensitized.stderr
    store = Store(store_path)

    def losses(name):
        run = store.resolve(f"adapter:{name}").run_id
        return [r["loss"] for r in store.training_steps(run)]

    first, second = losses("plain"), losses("ld")
    assert first[0] == pytest.approx(second[0], abs=1e-4)  # policy = reference at step 1: log 2 either way
    assert abs(first[1] - second[1]) > 1e-3
    assert store.resolve("adapter:ld").params["ld_alpha"] == 0.3
    again = lettingo(*common, "--name", "plain")
    assert "already" in again.stderr and again.stdout == plain.stdout
    adapter = store.resolve("adapter:plain")
    later = ("ld_alpha", "sft_weight")  # options added after this run's key was first made
    earlier = {k: v for k, v in adapter.params.items() if k not in later}  # the params before they existed
    key = store.run_key("dpo", {"pairs": adapter.params["pairs"]}, {**earlier, "name": "plain"})
    assert store.cached(key).id == adapter.id
    assert lettingo(*common, "--ld-alpha", "1.5").exit_code == 2
    # --sft-weight W adds W x the chosen profile's mean NLL to DPO's loss: at step 1 (policy = reference) plain DPO's
    # loss is log 2, and this one is log 2 plus a positive term
    anchored = lettingo(*common, "--sft-weight", "1.0", "--name", "anchored")
    assert anchored.exit_code == 0, anchored.stderr
    with_nll = losses("anchored")
    assert with_nll[0] > first[0] + 0.5 and store.resolve("adapter:anchored").params["sft_weight"] == 1.0
    assert lettingo(*common, "--sft-weight", "-1").exit_code == 2


def test_the_shared_prompt_pass_trains_as_trls_own(lettingo, store_path, tiny_model):
    """One packed pass per pair (the default) gives the steps TRL's two rows per pair give: the same losses,
    margins and reward accuracies (fp32), and is the same run (a speed option, not in the run key)."""
    write_pairs(store_path, "shared", 4, chosen="liked drama and war films, " * 3, rejected="zz qq")
    common = ["dpo", "pairs:shared", "--base", tiny_model.hf_dir, "--lr", "5e-3", "--max-steps", "3", "--lora-r", "4"]
    common += ["--precision", "fp32", "--batch-size", "2"]
    packed = lettingo(*common, "--name", "packed")
    twice = lettingo(*common, "--no-shared-prompt", "--name", "twice")
    assert packed.exit_code == 0 and twice.exit_code == 0, packed.stderr + twice.stderr
    assert "cannot be packed" not in packed.stderr
    store = Store(store_path)

    def steps(name):
        run = store.resolve(f"adapter:{name}").run_id
        return [(s["loss"], s["rewards_margins"], s["rewards_chosen"]) for s in store.training_steps(run)]

    found, expected = steps("packed"), steps("twice")
    assert len(found) == len(expected) == 3
    for row, want in zip(found, expected, strict=True):
        assert row == pytest.approx(want, abs=2e-4)
    assert expected[-1][1] > expected[0][1] + 1e-3  # training moved the margins: the comparison means something
    assert "already" in lettingo(*common, "--no-shared-prompt", "--name", "packed").stderr


def test_dpo_refusals(lettingo, store_path, tiny_model):
    write_pairs(store_path, "empty", 0)
    empty = lettingo("dpo", "pairs:empty", "--base", tiny_model.hf_dir)
    assert empty.exit_code == 1 and "has no pairs" in empty.stderr
    write_pairs(store_path, "long", 2)
    long = lettingo("dpo", "pairs:long", "--base", tiny_model.hf_dir, "--max-length", "8")
    assert long.exit_code == 1 and "not under --max-length 8" in long.stderr
    no_base = lettingo("dpo", "pairs:long", "--base", "/no/such/dir")
    assert no_base.exit_code == 2 and "--base /no/such/dir: not an HF model directory" in no_base.stderr
    bad_beta = lettingo("dpo", "pairs:long", "--beta", "0")
    assert bad_beta.exit_code == 2 and "must be positive" in bad_beta.stderr and bad_beta.stdout == ""


def test_kill_9_then_resume_reaches_the_same_step_count(tmp_path, tiny_model):
    import subprocess

    from tests.conftest import kill_at_first_checkpoint

    store_path = tmp_path / "lettingo.db"
    write_pairs(store_path, "many", 16)
    command = [
        "lettingo",
        "dpo",
        "pairs:many",
        "--base",
        str(tiny_model.hf_dir),
        "--max-steps",
        "40",
        "--save-steps",
        "4",
        "--batch-size",
        "2",
        "--lora-r",
        "4",
        "--store",
        str(store_path),
    ]
    kill_at_first_checkpoint(command, store_path, wait_s=180)
    store = Store(store_path)
    assert store.list(kind="adapter") == [] and store.verify()["ok"]
    logged = store.db.execute("SELECT MAX(step) FROM training_steps").fetchone()[0]
    assert logged < 40
    store.close()

    without = subprocess.run(command, capture_output=True, text=True)
    assert without.returncode == 1 and "--resume" in without.stderr
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint-" in resumed.stderr
    store = Store(store_path)
    adapter = store.resolve(resumed.stdout.strip())
    assert adapter.counts["steps"] == 40
    assert not any(f["path"].startswith("checkpoints/") for f in store.files(adapter))
    steps = [row["step"] for row in store.training_steps(adapter.run_id)]
    assert steps == list(range(1, 41))


def test_config_file_sets_options_and_flags_win(lettingo, store_path, tiny_model, tmp_path):
    import json

    write_pairs(store_path, "configured", 4)
    config = tmp_path / "dpo.yaml"
    # YAML reads 5e-3 as a string: the option's declared type converts it
    config.write_text("lora_r: 4\nlora_alpha: 8\nmax_steps: 2\nbatch_size: 2\nprecision: fp32\nlr: 5e-3\n")
    result = lettingo("dpo", "pairs:configured", "--base", tiny_model.hf_dir, "--config", config, "--max-steps", "1")
    assert result.exit_code == 0, result.stderr
    store = Store(store_path)
    adapter = store.resolve(result.stdout.strip())
    assert adapter.counts["steps"] == 1  # the flag beat the file's max_steps: 2
    assert adapter.params["lora_r"] == 4 and adapter.params["precision"] == "fp32" and adapter.params["lr"] == 0.005
    folder = store.materialize(adapter, tmp_path / "adapter")
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_rank: 4\n")
    wrong = lettingo("dpo", "pairs:configured", "--base", tiny_model.hf_dir, "--config", bad)
    assert wrong.exit_code == 2 and "unknown option(s) lora_rank" in wrong.stderr
    bad.write_text("lora_r: many\n")
    mistyped = lettingo("dpo", "pairs:configured", "--base", tiny_model.hf_dir, "--config", bad)
    assert mistyped.exit_code == 2 and "lora_r must be a int, not 'many'" in mistyped.stderr


def test_two_processes_under_torchrun_record_one_adapter(tmp_path, tiny_model):
    """The multi-process path of `accelerate launch` on several GPUs, here as two CPU ranks (gloo)."""
    import shutil
    import subprocess

    torchrun = shutil.which("torchrun")
    assert torchrun, "torch installs torchrun"
    store_path = tmp_path / "lettingo.db"
    write_pairs(store_path, "ranks", 8)
    result = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "-m",
            "lettingo_cli",
            "dpo",
            "pairs:ranks",
            "--base",
            str(tiny_model.hf_dir),
            "--max-steps",
            "4",
            "--batch-size",
            "2",
            "--save-steps",
            "2",
            "--lora-r",
            "4",
            "--store",
            str(store_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "adapter:ranks@v1\n"  # rank 1 prints nothing
    assert "2 process(es)" in result.stderr and "cannot be packed" not in result.stderr  # the packed pass, too
    store = Store(store_path)
    adapter = store.resolve("adapter:ranks")
    assert [a.id for a in store.list(kind="adapter")] == [adapter.id]
    steps = [row["step"] for row in store.training_steps(adapter.run_id)]
    assert steps == [1, 2, 3, 4]
    assert not (tmp_path / ".lettingo-work").exists() or not any((tmp_path / ".lettingo-work").iterdir())
