"""The README's chain with every default, as a new user runs it, through one DPO step: the defaults of gen, score,
pair and dpo must work together (dpo's old fixed --max-length 1024 refused the default 30-rating prompt)."""

from __future__ import annotations

import json

from tests.conftest import write_ml100k


def test_the_chain_with_every_default_runs_through_dpo(lettingo, store_path, tmp_path):
    folder = write_ml100k(tmp_path / "ml", n_users=12, n_items=60, per_user=45)
    # long titles, as MovieLens has: 30 ratings then make a prompt of more than 1,024 tokens
    items = (folder / "u.item").read_bytes().decode("latin-1").splitlines()
    longer = []
    for line in items:
        fields = line.split("|")
        fields[1] = f"The Remarkable Long-Titled Adventures of {fields[1]}, Part Two: The Return"
        longer.append("|".join(fields))
    (folder / "u.item").write_bytes(("\n".join(longer) + "\n").encode("latin-1"))
    assert lettingo("ingest", "movielens", folder).exit_code == 0
    assert lettingo("split").exit_code == 0

    made = lettingo("gen", "--users", "train:2", "--max-tokens", "24")  # the default generator, 4 profiles per user
    assert made.exit_code == 0, made.stderr
    scored = lettingo("score")
    assert scored.exit_code == 0, scored.stderr
    paired = lettingo("pair", "--rule", "margin", "--margin", "0", "--json")
    assert paired.exit_code == 0, paired.stderr
    assert json.loads(paired.stdout)["count"] > 0

    trained = lettingo("dpo", "--max-steps", "1", "--json")
    assert trained.exit_code == 0, trained.stderr
    params = json.loads(trained.stdout)["params"]
    assert params["max_length"] > 1024 and params["max_length"] % 64 == 0  # from the pairs, not a fixed 1024
