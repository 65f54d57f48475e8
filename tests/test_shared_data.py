"""Integration: ingest all of ../shared/data when it is present (skipped otherwise)."""

from __future__ import annotations

import pytest

from lettingo_cli.store import Store
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.integration


def need(path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_movielens_100k_counts_and_default_chain(lettingo, store_path):
    folder = need(SHARED_DATA / "movielens-100k")
    result = lettingo("ingest", "movielens", folder)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "dataset:movielens-100k@v1\n"
    counts = Store(store_path).resolve("dataset:movielens-100k").counts
    assert (counts["users"], counts["items"], counts["interactions"]) == (943, 1682, 100_000)
    split = lettingo("split")
    assert split.exit_code == 0 and split.stdout == "split:movielens-100k@v1\n"
    # every MovieLens 100K user has >= 20 ratings, so all 943 are split
    assert Store(store_path).resolve("split:movielens-100k").counts["users"] == 943
    assert lettingo("store", "verify").exit_code == 0


def test_movielens_latest_small_counts(lettingo, store_path):
    folder = need(SHARED_DATA / "movielens-latest-small")
    result = lettingo("ingest", "movielens", folder)
    assert result.exit_code == 0, result.stderr
    counts = Store(store_path).resolve("movielens-latest-small").counts
    assert (counts["users"], counts["items"], counts["interactions"]) == (610, 9742, 100_836)


def test_amazon_categories(lettingo, store_path):
    folder = need(SHARED_DATA / "amazon-reviews-2018")
    beauty = lettingo("ingest", "amazon", folder / "All_Beauty_5.json.gz")
    assert beauty.exit_code == 0, beauty.stderr
    assert "dropped 1,027 exact duplicate reviews" in beauty.stderr  # PROVENANCE.md: 1027 duplicate lines
    counts = Store(store_path).resolve("All_Beauty_5").counts
    assert counts["interactions"] == 5269 - 1027 and counts["items"] == 85

    magazines = lettingo(
        "ingest",
        "amazon",
        folder / "Magazine_Subscriptions_5.json.gz",
        "--meta",
        folder / "meta_Magazine_Subscriptions.json.gz",
    )
    assert magazines.exit_code == 0, magazines.stderr
    store = Store(store_path)
    artifact = store.resolve("Magazine_Subscriptions_5")
    assert artifact.counts["interactions"] == 2375 - 42 and artifact.counts["items"] == 157
    texts = [row["text"] for row in store.rows(artifact, "items")]
    assert not any("<span" in text for text in texts)  # HTML-fragment titles replaced by brand + category + description
    assert sum(text.startswith("item ") for text in texts) == 6  # 151 of 157 items have metadata
