"""sft on the tiny model: a pool of two writers, each train user's best profile that passes the checks, the trained
writer's own prompt, the training log, the adapter's export (its model card says SFT) and dpo continuing from it."""

from __future__ import annotations

import json

from lettingo_cli.store import Store
from tests.conftest import experiment_refs, run_experiment


def _pool(split_store, tiny_model, names=("tiny", "hist")) -> str:
    """Profiles of the train users by the tiny model (2 each) and by the history written out, each scored by the tiny
    model as an LLM predictor; returns the predictor spec."""
    gguf = f"gguf:{tiny_model.gguf}"
    writers = {"tiny": ["--generator", gguf, "--n", "2", "--max-tokens", "10"], "hist": ["--generator", "history-text"]}
    for name in names:
        made = split_store("gen", "--users", "train", *writers[name], "--name", name)
        assert made.exit_code == 0, made.stderr
        scored = split_store("score", f"profiles:{name}", "--predictor", f"llm:{gguf}")
        assert scored.exit_code == 0, scored.stderr
    return f"llm:{gguf}"


def _best_by_hand(store: Store, scores_refs: list[str]) -> dict[str, tuple[str, float]]:
    """Each user's best (generator, mean P(true)) over the pool, from the stored rows (flagged profiles left out)."""
    best: dict[str, tuple[str, float]] = {}
    for ref in scores_refs:
        scores = store.resolve(ref)
        profiles = store.get(scores.params["profiles"])
        flagged = {(r["user_id"], r["generator"], r["sample_index"]) for r in store.rows(profiles, "profiles")
                   if {"empty", "degenerate"} & set(json.loads(r["flags"]))}  # fmt: skip
        sums: dict[tuple, list[float]] = {}
        for row in store.rows(scores, "scores"):
            sums.setdefault((row["user_id"], row["generator"], row["sample_index"]), []).append(row["p_true"])
        for key, values in sums.items():
            if key in flagged:
                continue
            mean = sum(values) / len(values)
            if key[0] not in best or mean > best[key[0]][1]:
                best[key[0]] = (key[1], mean)
    return best


def test_sft_trains_on_each_best_profile_and_export_and_dpo_take_it(split_store, store_path, tiny_model, tmp_path):
    _pool(split_store, tiny_model)
    # the history written out is a model-free writer: a control, taken into a pool only when asked
    refused = split_store("sft", "scores:tiny", "scores:hist", "--base", tiny_model.hf_dir, "--max-steps", "3")
    assert refused.exit_code == 2 and "history-text, a writer without a model" in refused.stderr, refused.stderr
    assert "--allow-model-free" in refused.stderr and refused.stdout == ""
    made = split_store("sft", "scores:tiny", "scores:hist", "--base", tiny_model.hf_dir, "--max-steps", "3",
                       "--batch-size", "2", "--lora-r", "4", "--lora-alpha", "8", "--lr", "5e-3",
                       "--allow-model-free", "--json")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    made = json.loads(made.stdout)
    assert made["kind"] == "adapter" and (made["counts"]["examples"], made["counts"]["steps"]) == (10, 3)

    store = Store(store_path)
    adapter = store.resolve(made["ref"])
    best = _best_by_hand(store, ["scores:tiny", "scores:hist"])
    chosen = {}
    for generator, _ in best.values():
        chosen[generator] = chosen.get(generator, 0) + 1
    assert adapter.report["chosen_by_generator"] == dict(sorted(chosen.items()))
    mean_best = sum(score for _, score in best.values()) / len(best)
    assert adapter.report["chosen_mean_score"] == round(mean_best, 4)
    assert adapter.report["method"].startswith("SFT") and adapter.report["provenance"]["lettingo.pool.refs"] == (
        "scores:tiny@v1,scores:hist@v1"
    )
    steps = store.training_steps(adapter.run_id)
    assert [s["step"] for s in steps] == [1, 2, 3] and all(s["mean_token_accuracy"] is not None for s in steps)
    # every example is the trained writer's own prompt (gen's default completion prompt), whoever wrote the profile
    from lettingo_cli.split_data import train_users
    from lettingo_cli.training.data import generation_prompts

    split = store.resolve("split:ml")
    expected = generation_prompts(store, split, train_users(store, split), 30)
    stored = next(f for f in store.files(adapter) if f["path"] == "training-prompts.jsonl")
    lines = [json.loads(line) for line in store.blob_path(stored["blob_hash"]).read_text().splitlines()]
    assert lines == expected
    store.close()

    out = tmp_path / "out"
    exported = split_store("export", made["ref"], "--quant", "q8_0", "--prompts", "2", "--out", str(out))
    assert exported.exit_code == 0, exported.stderr
    card = (out / "README.md").read_text()
    assert "LoRA adapter trained by SFT on each train user's best-scored profile of a pool of writers" in card
    paired = split_store("pair", "scores:tiny", "--rule", "margin", "--margin", "0")
    assert paired.exit_code == 0, paired.stderr
    export_ref = exported.stdout.strip()
    continued = split_store("dpo", "pairs:tiny", "--base", export_ref, "--max-steps", "1", "--lora-r", "4",
                            "--batch-size", "2", "--json")  # fmt: skip
    assert continued.exit_code == 0, continued.stderr
    assert "/exports/" in json.loads(continued.stdout)["params"]["base"]  # the export's merged checkpoint


def test_sft_takes_only_profiles_that_pass_its_checks(split_store, store_path, tiny_model):
    """--min-titles-found: another user's history names titles this user never rated, and is never taken where less
    than that share of them are in the user's history; --min-gain needs the no-profile scores and keeps a profile
    only where it beats them; test users and a pool without a profile to take are refused."""
    from lettingo_cli.sft import choose_profiles
    from lettingo_cli.split_data import load_histories
    from lettingo_cli.training.options import SFTOptions

    predictor = _pool(split_store, tiny_model, names=("hist",))
    made = split_store("gen", "--users", "train", "--generator", "swap:hist", "--name", "swap")
    assert made.exit_code == 0, made.stderr
    assert split_store("score", "profiles:swap", "--predictor", predictor).exit_code == 0
    store = Store(store_path)
    split = store.resolve("split:ml")
    pools = [store.resolve("scores:hist"), store.resolve("scores:swap")]

    users = sorted(store.resolve("profiles:hist").params["users"])
    histories = load_histories(store, split, users, 30)
    order = sorted(users, key=lambda u: (len(u), u))  # swap: each user gets the next user's profile, in this order
    donor = {user: order[(order.index(user) + 1) % len(order)] for user in order}
    titles = {user: {row["text"].partition(" | ")[0] for row in histories[user]} for user in users}
    share = {user: len(titles[donor[user]] & titles[user]) / len(titles[donor[user]]) for user in users}
    chosen, outcome = choose_profiles(store, pools, split, SFTOptions(min_titles_found=0.8), None)
    assert outcome["invented_titles"] == sum(s < 0.8 for s in share.values()) > 0
    for user in users:
        if share[user] < 0.8:
            assert chosen[user]["generator"] == "history-text"  # the swapped history is never taken
    # --min-titles-named: a profile must name at least that many of the user's titles (more than any swapped
    # history shares with its user here, fewer than every own history names)
    shared = {user: len(titles[donor[user]] & titles[user]) for user in users}
    least = max(shared.values()) + 1
    assert all(len(titles[user]) >= least for user in users)
    chosen, outcome = choose_profiles(store, pools, split, SFTOptions(min_titles_named=least), None)
    assert outcome["too_few_titles"] == len(users) and len(chosen) == len(users)
    assert all(profile["generator"] == "history-text" for profile in chosen.values())

    evaluated = split_store("eval", "--no-profile", "--predictor", predictor, "--users", "train", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    baseline_ref = next(a.ref for a in Store(store_path).list(kind="scores") if not a.params.get("profiles"))
    gain = split_store("sft", "scores:hist", "--min-gain", "0.0", "--base", tiny_model.hf_dir, "--max-steps", "1",
                       "--allow-model-free")  # fmt: skip
    assert gain.exit_code == 2 and "--no-profile-scores" in gain.stderr
    baseline = {}
    for row in store.rows(store.resolve(baseline_ref), "scores"):
        baseline.setdefault(row["user_id"], []).append(row["p_true"])
    baseline = {u: sum(v) / len(v) for u, v in baseline.items()}
    chosen, outcome = choose_profiles(store, pools[:1], split, SFTOptions(min_gain=0.0), baseline)
    assert all(p["score"] >= baseline[u] for u, p in chosen.items())
    assert outcome["below_min_gain"] == len(users) - len(chosen)

    tested = split_store("gen", "--users", "test", "--generator", "history-text", "--name", "t")
    assert tested.exit_code == 0 and split_store("score", "profiles:t", "--predictor", predictor).exit_code == 0
    refused = split_store("sft", "scores:t", "--base", tiny_model.hf_dir, "--max-steps", "1", "--allow-model-free")
    assert refused.exit_code == 2 and "5 test user(s) of split:ml@v1" in refused.stderr and refused.stdout == ""


def test_eval_reports_what_profiles_state_against_their_history(split_store, store_path, tiny_model, monkeypatch):
    """eval's faithfulness: the history written out states every rating, names only the user's titles and states
    them exactly; another user's history names titles of which only the shared ones are the user's, with that
    other user's ratings (both computed here from the split's rows). An eval is reused until the title matcher's
    version changes."""
    from lettingo_cli.split_data import load_histories

    predictor = _pool(split_store, tiny_model, names=("hist",))
    assert split_store("gen", "--users", "train", "--generator", "swap:hist", "--name", "swap").exit_code == 0
    reports = {}
    for name in ("hist", "swap"):
        made = split_store("eval", f"profiles:{name}", "--predictor", predictor, "--users", "train", "--json")
        assert made.exit_code == 0, made.stderr
        reports[name] = json.loads(made.stdout)["report"]["faithfulness"]
        assert "faithfulness: 100% of 10 profiles state a value" in made.stderr
    assert reports["hist"] == {"profiles": 10, "stating_a_value": 1.0, "titles_named": reports["hist"]["titles_named"],
                               "titles_in_history": 1.0, "stated_value_error": 0.0,
                               "stated_values_checked": reports["hist"]["titles_named"]}  # fmt: skip
    store = Store(store_path)
    split = store.resolve("split:ml")
    users = sorted(store.resolve("profiles:hist").params["users"], key=lambda u: (len(u), u))
    histories = load_histories(store, split, users, 30)
    ratings = {u: {row["text"].partition(" | ")[0]: row["rating"] for row in histories[u]} for u in users}
    named = found = 0
    errors = []
    for index, user in enumerate(users):
        donor = ratings[users[(index + 1) % len(users)]]
        named += len(donor)
        shared = [title for title in donor if title in ratings[user]]
        found += len(shared)
        errors += [abs(donor[title] - ratings[user][title]) for title in shared]
    assert reports["hist"]["titles_named"] == sum(len(r) for r in ratings.values())
    assert reports["swap"]["titles_named"] == named and reports["swap"]["titles_in_history"] == round(found / named, 4)
    assert reports["swap"]["stated_value_error"] == round(sum(errors) / len(errors), 4) > 0

    # another matcher under the same version: the eval is reused, never counted again
    from lettingo_cli.stated import faithfulness

    monkeypatch.setattr("lettingo_cli.eval.faithfulness", lambda *args: {**faithfulness(*args), "profiles": -1})
    again = split_store("eval", "profiles:hist", "--predictor", predictor, "--users", "train")
    assert again.exit_code == 0 and again.stdout.strip() == "eval:hist-train@v1"
    monkeypatch.setattr("lettingo_cli.eval.TITLE_MATCH", 99)  # a new version: counted again, a new eval
    again = split_store("eval", "profiles:hist", "--predictor", predictor, "--users", "train")
    assert again.exit_code == 0 and again.stdout.strip() == "eval:hist-train@v2"
    assert Store(store_path).resolve("eval:hist-train@v2").report["faithfulness"]["profiles"] == -1


def test_off_policy_pairs_from_a_pool_are_put_on_the_trained_writers_prompt(split_store, store_path, tiny_model):
    """`pair POOL... --for WRITER[?prompt=NAME]`: pairs across writers, every one on the trained writer's own prompt
    (rendered here from the split), the report counting each side's writer; a pool without --for is refused."""
    from lettingo_cli.prompts import history_text, render, template_for
    from lettingo_cli.split_data import load_histories

    _pool(split_store, tiny_model)
    refused = split_store("pair", "scores:tiny", "scores:hist", "--rule", "all")
    assert refused.exit_code == 2 and "--allow-model-free" in refused.stderr  # history-text is a control
    refused = split_store("pair", "scores:tiny", "scores:hist", "--rule", "all", "--allow-model-free")
    assert refused.exit_code == 2 and "--for WRITER" in refused.stderr
    for name, spec, prompt in (("off", "gemma-3-270m", "broad"), ("recent", "gemma-3-270m?prompt=recent", "recent")):
        made = split_store("pair", "scores:tiny", "scores:hist", "--rule", "margin", "--margin", "0", "--for", spec,
                           "--allow-model-free", "--name", name, "--json")  # fmt: skip
        assert made.exit_code == 0, made.stderr
        store = Store(store_path)
        pairs = store.resolve(f"pairs:{name}")
        rows = list(store.rows(pairs, "pairs"))
        histories = load_histories(store, store.resolve("split:ml"), sorted({r["user_id"] for r in rows}), 30)
        written_out = {user: history_text(history) for user, history in histories.items()}  # history-text's
        assert rows and all(r["prompt"] == render(template_for(prompt, False), histories[r["user_id"]], False)
                            for r in rows)  # fmt: skip
        chosen = sum(pairs.report["chosen_by_writer"].values())
        assert chosen == sum(pairs.report["rejected_by_writer"].values()) == len(rows)
        from_history = sum(r["chosen"] == written_out[r["user_id"]] for r in rows)
        assert pairs.report["chosen_by_writer"].get("history-text / profile-completion-v1", 0) == from_history
        assert 0 < from_history < len(rows)  # both writers' profiles are chosen somewhere: the pairs cross writers
        store.close()


def test_sft_pool_script_runs_every_arm_and_reports_them(tmp_path, tiny_model):
    """experiments/sft_pool.sh end to end on the tiny model (the history written out stands in for the teacher):
    the pool, sft, off-policy dpo, the test arms, the prompt-only arms and the second judge; the report's differences
    checked against accuracies counted here from the stored predictions."""
    knobs = {
        "N": "2",
        "TEACHER": "history-text",
        "TEACHER_ARGS": "",
        "WRITER": f"gguf:{tiny_model.gguf}",
        "EPOCHS": "1",
        "LR": "1e-3",
        "MIN_TITLES": "0",
        "SFT_ARGS": "--max-steps 2 --batch-size 2 --lora-r 4 --lora-alpha 8",
        "DPO_ARGS": "--max-steps 2 --lora-r 4 --lr 1e-3 --max-length 4096 --sft-weight 1",
        "PROMPTS": "levels",
        "POOL_ARGS": "--allow-model-free",  # the history written out is a model-free writer
    }
    _, results, store_path = run_experiment("sft_pool.sh", tmp_path, tiny_model, "pool-ci", 24, **knobs)
    payload = json.loads((results / "pool-ci.json").read_text())
    assert set(payload["arms"]) == {
        *(f"eval_{a}" for a in ("base", "sft", "swap", "none", "history", "dpo", "dpo_swap", "prompt_levels")),
        *(f"second_{a}" for a in ("none", "history", "base", "sft", "dpo", "prompt_levels")),
    }
    refs = experiment_refs(results, "pool-ci")
    store = Store(store_path, create=False)

    def accuracy(role: str) -> float:
        rows = list(store.rows(store.get(store.resolve(refs[role]).params["scores"]), "scores"))
        return sum(r["predicted"] == r["truth"] for r in rows) / len(rows)

    differences = payload["differences"]
    for name, (first, second) in {
        "sft_minus_base": ("eval_sft", "eval_base"),
        "dpo_minus_dpo_swap": ("eval_dpo", "eval_dpo_swap"),
        "prompt_levels_minus_base": ("eval_prompt_levels", "eval_base"),
        "second_history_minus_second_none": ("second_history", "second_none"),
    }.items():  # every arm judges all 4 users on the same targets, so the paired difference is the plain one
        assert differences[name]["accuracy"]["value"] == round(accuracy(first) - accuracy(second), 4), name
    assert payload["second_judge_sees_content"] == (
        differences["second_history_minus_second_none"]["accuracy"]["ci_low"] > 0
    )
    assert payload["dpo"]["pairs"]["count"] > 0 and payload["dpo"]["last_steps"]["steps_averaged"] == 2
    assert payload["settings"]["second"] == f"reader:bow?without={refs['pool_qwen']}"
    assert payload["sft"]["counts"]["steps"] == 2 and payload["seconds"]["sft"] > 0
    assert "DPO writer" in (results / "pool-ci.md").read_text()


def test_sft_run_key_records_the_title_matcher_where_a_title_check_chooses_the_examples():
    """A better title matcher takes other examples: a run with a title check records its version, so an older run
    (keyed without it, version 1) is never reused for today's; a run without a title check keeps its old key."""
    from pathlib import Path

    from lettingo_cli.options import stable_key
    from lettingo_cli.sft import LATER_OPTIONS, run_params
    from lettingo_cli.stated import TITLE_MATCH
    from lettingo_cli.training.options import SFTOptions

    assert "title_match" not in run_params([], None, Path("base"), SFTOptions())
    for options in (SFTOptions(min_titles_found=0.8), SFTOptions(min_titles_named=1)):
        checked = run_params([], None, Path("base"), options)
        assert checked["title_match"] == TITLE_MATCH > 1
        before = {k: v for k, v in checked.items() if k != "title_match"}
        key = lambda params: stable_key(params, LATER_OPTIONS, "sft")  # noqa: E731
        assert key(before) == key({**before, "title_match": 1}) != key(checked)
