"""The paper's two control arms, written into the store as ordinary profiles artifacts (so `lettingo eval`
scores them like any generator's profiles). Prints the new artifact's reference, as a lettingo stage does.

    history-text SPLIT LIKE --name NAME
        (a) each user's own profile history written out as plain text (the prompts' "- item: liked (4/5)"
        lines), cut to the mean token length of the profiles LIKE (the base generator's): the newest whole
        lines that fit (or the newest line's first tokens), counted with the default model's tokenizer
        (--tokenizer DIR: another HF model's).
        Does an LLM-written profile beat the raw data it summarises, at the same length?
    swap PROFILES --name NAME
        (b) each user given ANOTHER user's profiles: the users of PROFILES in id order, each taking the
        profiles of the next one (the last takes the first's). Same texts, same form, wrong person: does the
        content matter, or only the form?

    users SPLIT test|train N
        the first N users of the split's partition (one per line), for stages run on a subset (`--users -`)

Both arms are cached like a stage: the same inputs give back the same artifact.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lettingo_cli.digest import canonical_json  # noqa: E402
from lettingo_cli.models import default_hf_dir  # noqa: E402
from lettingo_cli.prompts import history_line  # noqa: E402
from lettingo_cli.split import load_histories, select_users  # noqa: E402
from lettingo_cli.store import Store  # noqa: E402


def write_arm(store: Store, name: str, split_id: int, users: list[str], rows: list[dict], params: dict, inputs):
    """A profiles artifact of `rows` (user_id, generator, sample_index, text, n_tokens), cached by params."""
    params = {"split": split_id, "users": users, **params}
    run = store.stage("gen", "profiles", name, params, inputs, atomic=True)
    if run.cached:
        return run.cached
    with run:
        full = [{"seed": 0, "prompt_hash": "", "flags": canonical_json([]), **row} for row in rows]
        store.insert_rows(run.artifact, "profiles", full)
        return run.finish(counts={"users": len(users), "generators": 1}, report={"control": params["control"]})


def history_text_arm(store: Store, split_ref: str, like_ref: str, name: str, tokenizer_dir: Path | None = None):
    from transformers import AutoTokenizer

    split = store.resolve(split_ref, "split")
    like = store.resolve(like_ref, "profiles")
    budget = round(statistics.mean(row["n_tokens"] for row in store.rows(like, "profiles")))
    users = list(like.params["users"])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or default_hf_dir())
    histories = load_histories(store, split, users, like.params.get("history", 30))
    rows = []
    for user in users:
        kept, used = [], 0
        for event in reversed(histories[user]):  # newest first, whole lines
            line = history_line(event)
            cost = len(tokenizer(line + "\n", add_special_tokens=False)["input_ids"])
            if used + cost > budget:
                break
            kept.append(line)
            used += cost
        if not kept and histories[user]:  # not even the newest line fits: its first `budget` tokens
            ids = tokenizer(history_line(histories[user][-1]), add_special_tokens=False)["input_ids"][:budget]
            kept, used = [tokenizer.decode(ids)], len(ids)
        text = "\n".join(reversed(kept))
        rows.append({"user_id": user, "generator": "control:history-text", "sample_index": 0, "text": text,
                     "n_tokens": used})  # fmt: skip
    tokenizer_name = str(tokenizer_dir) if tokenizer_dir else "gemma-3-270m"
    params = {"control": "history-text", "like": like.id, "token_budget": budget, "tokenizer": tokenizer_name}
    return write_arm(store, name, split.id, users, rows, params, {"split": split.id, "profiles": like.id})


def swap_arm(store: Store, profiles_ref: str, name: str):
    profiles = store.resolve(profiles_ref, "profiles")
    users = sorted(profiles.params["users"], key=lambda u: (len(u), u))
    by_user: dict[str, list[dict]] = {u: [] for u in users}
    for row in store.rows(profiles, "profiles"):
        by_user[row["user_id"]].append(row)
    rows = []
    for i, user in enumerate(users):
        donor = users[(i + 1) % len(users)]
        for row in by_user[donor]:
            keep = {key: row[key] for key in ("sample_index", "text", "n_tokens")}
            rows.append({"user_id": user, "generator": f"control:swap({row['generator']})", **keep})
    params = {"control": "swap", "of": profiles.id, "donor": "next user by id"}
    split_id = profiles.params["split"]
    return write_arm(store, name, split_id, users, rows, params, {"split": split_id, "profiles": profiles.id})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arm", choices=("history-text", "swap", "users"))
    parser.add_argument("refs", nargs="+")
    parser.add_argument("--tokenizer", type=Path, help="history-text: count tokens with this HF model's tokenizer")
    parser.add_argument("--name", help="the new profiles artifact's name (the two arms)")
    args = parser.parse_args()
    store = Store(Path(os.environ.get("LETTINGO_STORE", "lettingo.db")))
    if args.arm == "users":
        split_ref, partition, count = args.refs
        print("\n".join(select_users(store, store.resolve(split_ref, "split"), partition)[: int(count)]))
        return
    if not args.name:
        parser.error("--name is required for an arm")
    if args.arm == "history-text":
        artifact = history_text_arm(store, *args.refs, args.name, args.tokenizer)
    else:
        artifact = swap_arm(store, *args.refs, args.name)
    print(artifact.ref)


if __name__ == "__main__":
    main()
