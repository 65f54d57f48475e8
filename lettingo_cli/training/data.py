"""What the trainers read, in the formats TRL takes: a pairs artifact as preference records, and the generation
prompts of a split's users as gen renders them for the default (completion) generator."""

from __future__ import annotations

import json

from lettingo_cli.prompts import render, template_for
from lettingo_cli.split_data import load_histories
from lettingo_cli.store import Artifact, Store


def preference_records(store: Store, pairs: Artifact) -> list[dict]:
    """TRL's preference format: prompt / chosen / rejected (conversational for chat-style generators; for
    completion prompts the texts get back the space that followed "Profile:")."""
    records = []
    for row in store.rows(pairs, "pairs"):
        prompt = row["prompt"]
        if prompt.startswith("[{"):
            records.append(
                {
                    "prompt": json.loads(prompt),
                    "chosen": [{"role": "assistant", "content": row["chosen"]}],
                    "rejected": [{"role": "assistant", "content": row["rejected"]}],
                }
            )
        else:
            records.append({"prompt": prompt, "chosen": " " + row["chosen"], "rejected": " " + row["rejected"]})
    return records


def pair_prompts(store: Store, pairs: Artifact) -> list[dict]:
    """Each user's prompt in a pairs artifact (its first pair's, as stored), in the pairs' order."""
    prompts: dict[str, str] = {}
    for row in store.rows(pairs, "pairs"):
        prompts.setdefault(row["user_id"], row["prompt"])
    return [{"user_id": user, "prompt": prompt} for user, prompt in prompts.items()]


def generation_prompts(
    store: Store, split: Artifact, users: list[str], history: int, prompt: str | None = None
) -> list[dict]:
    """Each user's generation prompt, as gen renders it for a completion model (the default generator); `prompt`:
    gen's --prompt (a built-in prompt's name or a template file; default: broad)."""
    template = template_for(prompt, chat=False)
    histories = load_histories(store, split, users, history)
    return [{"user_id": u, "prompt": render(template, histories[u], False)} for u in users if histories[u]]
