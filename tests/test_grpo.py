"""grpo on the tiny model: steps and adapter in the store, the reward is the frozen predictor's own numbers, resume
after kill -9, export of its adapter, refusals."""

from __future__ import annotations

import json
import statistics

import pytest

from lettingo_cli.store import Store

SMALL = ("--users", "train:4", "--generations", "2", "--max-tokens", "12", "--lora-r", "4", "--targets", "2")


def test_grpo_records_its_steps_and_adapter_and_exports(po_store, store_path, tiny_model):
    result = po_store("grpo", "po", "--base", tiny_model.hf_dir, *SMALL, "--max-steps", "3", "--lr", "1e-3", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["ref"] == "adapter:po-grpo@v1"
    assert (payload["counts"]["prompts"], payload["counts"]["steps"]) == (4, 3)
    store = Store(store_path)
    adapter = store.resolve("adapter:po-grpo")
    run = store.run(adapter.run_id)
    assert run["stage"] == "grpo" and run["params"]["predictor"] == "reader:bow"  # the split's default judge
    assert len(run["params"]["users"]) == 4
    steps = store.training_steps(adapter.run_id)
    assert [s["step"] for s in steps] == [1, 2, 3]
    for step in steps:  # a reward is a mean P(true label) in [0, 1], or -1 for a sample with no profile
        assert -1.0 <= step["reward"] <= 1.0 and step["reward_std"] >= 0
        assert 0 < step["completion_length"] <= 12
        logged = json.loads(step["logged"])  # the step log's figures are TRL's own, under lettingo's names
        assert (step["reward"], step["completion_length"]) == (logged["reward"], logged["completions/mean_length"])
        assert "flagged" in json.loads(step["logged"])  # the share of samples with no profile, logged by the reward
    assert adapter.report["first_reward"] == steps[0]["reward"] and adapter.report["last_reward"] == steps[-1]["reward"]
    assert run["stats"]["profiles_judged"] > 0
    assert {f["path"] for f in store.files(adapter)} >= {"adapter_config.json", "adapter_model.safetensors"}
    assert not any(f["path"].startswith("checkpoints/") for f in store.files(adapter))
    assert po_store("grpo", "po", "--base", tiny_model.hf_dir, *SMALL, "--max-steps", "3", "--lr", "1e-3").stdout == (
        "adapter:po-grpo@v1\n"  # cached: the same run is not trained twice
    )

    exported = po_store("export", "adapter:po-grpo", "--quant", "q8_0", "--prompts", "2", "--json")
    assert exported.exit_code == 0, exported.stderr
    export = store.resolve(json.loads(exported.stdout)["ref"])
    from lettingo_cli.export_layout import provenance

    shipped = provenance(export)
    assert shipped["lettingo.trained_by"] == "grpo" and shipped["lettingo.grpo.predictor"] == "reader:bow"
    assert shipped["lettingo.split.ref"] == "split:po@v1"
    assert export.report["passed"] and export.report["prompts"] == 2  # verified on its training prompts


def test_the_reward_is_the_predictors_mean_p_true_and_minus_one_without_a_profile(po_store, store_path):
    from lettingo_cli.backends.base import cut_at_stop
    from lettingo_cli.grpo import ProfileReward
    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.prompts import COMPLETION_STOPS
    from lettingo_cli.split_data import load_recent_and_targets, select_users

    store = Store(store_path)
    split = store.resolve("split:po")
    users = select_users(store, split, "train")[:2]
    predictor = make_predictor("reader:bow", store, split)
    recent, targets = load_recent_and_targets(store, split, users, 2)
    reward = ProfileReward(predictor, recent, targets, flagged=-1.0)
    texts = ["Loves war films and dramas, rates most 5/5.", "Dislikes comedies; a harsh 1/5 rater of most films."]
    logged = {}
    got = reward(
        prompts=["p"] * 4,
        completions=[texts[0], texts[1] + "\n\nRatings: more", "", "the the the the the the the the the the the the"],
        user_id=[users[0], users[0], users[1], users[1]],
        log_metric=logged.__setitem__,
    )
    answers = predictor.predict(users[0], recent[users[0]], targets[users[0]], texts)
    expected = [statistics.fmean(answers[t][k][target.sentiment] for t, target in enumerate(targets[users[0]]))
                for k in range(2)]  # fmt: skip
    assert got[:2] == pytest.approx(expected)  # the text after gen's stop sequence is not judged
    assert got[2:] == [-1.0, -1.0]  # empty, degenerate
    assert logged == {"flagged": 0.5} and reward.judged == 2
    assert cut_at_stop("a profile.\nProfile: again", COMPLETION_STOPS) == ("a profile.", True)
    predictor.close()


def test_sampling_stops_where_gens_stop_sequences_are(tiny_model):
    from transformers import AutoTokenizer

    from lettingo_cli.training.grpo_trainer import stop_index

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.hf_dir)
    ids = tokenizer("likes drama films\n\nRatings: more text here", add_special_tokens=False)["input_ids"]
    kept = stop_index(tokenizer, ids)
    assert "\n\n" in tokenizer.decode(ids[:kept]) and "\n\n" not in tokenizer.decode(ids[: kept - 1])
    assert "Ratings" not in tokenizer.decode(ids[:kept])
    plain = tokenizer("likes drama films", add_special_tokens=False)["input_ids"]
    assert stop_index(tokenizer, plain) == len(plain)


def test_grpo_refusals(po_store, tiny_model):
    on_test = po_store("grpo", "po", "--base", tiny_model.hf_dir, "--users", "test")
    assert on_test.exit_code == 2 and "train users only" in on_test.stderr and on_test.stdout == ""
    alone = po_store("grpo", "po", "--base", tiny_model.hf_dir, "--generations", "1")
    assert alone.exit_code == 2 and "--generations must be >= 2" in alone.stderr
    too_many = po_store("grpo", "po", "--base", tiny_model.hf_dir, "--targets", "3")
    assert too_many.exit_code == 2 and "holds out 2 per user" in too_many.stderr


def test_kill_9_then_resume_reaches_the_same_step_count(po_store, store_path, tiny_model):
    import subprocess

    from tests.conftest import kill_at_first_checkpoint

    command = ["lettingo", "grpo", "po", "--base", str(tiny_model.hf_dir), *SMALL, "--max-steps", "12",
               "--save-steps", "3", "--store", str(store_path)]  # fmt: skip
    kill_at_first_checkpoint(command, store_path)
    store = Store(store_path)
    verified = store.verify()
    assert store.list(kind="adapter") == [] and verified["ok"], verified["problems"]
    assert store.db.execute("SELECT MAX(step) FROM training_steps").fetchone()[0] < 12
    store.close()

    without = subprocess.run(command, capture_output=True, text=True)
    assert without.returncode == 1 and "--resume" in without.stderr
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint-" in resumed.stderr
    store = Store(store_path)
    adapter = store.resolve(resumed.stdout.strip())
    assert adapter.counts["steps"] == 12
    assert [s["step"] for s in store.training_steps(adapter.run_id)] == list(range(1, 13))
