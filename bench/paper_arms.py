"""A helper of bench/paper.sh: the first N users of a split's partition, one per line, for stages run on a subset
(`--users -`). (The two control arms it used to write are lettingo's own generators now: `gen --generator
history-text?tokens=N` and `gen --generator swap:PROFILES_REF`.)

    users SPLIT test|train N
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lettingo_cli.split import select_users  # noqa: E402
from lettingo_cli.store import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arm", choices=("users",))
    parser.add_argument("refs", nargs=3, metavar=("SPLIT", "PARTITION", "N"))
    args = parser.parse_args()
    store = Store(Path(os.environ.get("LETTINGO_STORE", "lettingo.db")))
    split_ref, partition, count = args.refs
    print("\n".join(select_users(store, store.resolve(split_ref, "split"), partition)[: int(count)]))


if __name__ == "__main__":
    main()
