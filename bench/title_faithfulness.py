"""The faithfulness of the recipes' pool and teacher profiles as the title matcher counts them today (stated.py,
TITLE_MATCH): for each experiment store present, the share of named titles found in the user's history.

    python3 -m bench.title_faithfulness  ->  a table on stdout, bench/results/title_faithfulness.json
"""

from __future__ import annotations

from bench._common import RESULTS, write_result
from lettingo_cli.stated import TITLE_MATCH, faithfulness
from lettingo_cli.store import Store

# experiment store -> the profile sets read (the recipes' pool and the teacher on the test users)
SETS = {
    "paper-po": ("train", "pool-teacher", "test-teacher", "test-prompt_genres"),
    "paper-po-ls": ("train", "pool-teacher", "test-teacher"),
}


def main() -> None:
    results = {}
    for name, sets in SETS.items():
        path = RESULTS / f"{name}-store" / "lettingo.db"
        if not path.exists():
            continue
        store = Store(path, create=False)
        for suffix in sets:
            profiles = store.resolve(f"profiles:{name}-{suffix}")
            results[profiles.ref] = faithfulness(store, profiles)
    print("| profiles | titles named | in the history |\n|---|---|---|")
    for ref, figures in results.items():
        print(f"| {ref} | {figures['titles_named']} | {figures['titles_in_history']} |")
    write_result("title_faithfulness", {"title_match": TITLE_MATCH, "profiles": results})


if __name__ == "__main__":
    main()
