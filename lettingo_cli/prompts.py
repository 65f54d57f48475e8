"""Profile-generation prompts: named, versioned templates; item text is data, never structure.

A template is plain text with one `{history}` placeholder (and optionally `{n_items}`). Base models get the
rendered text as a completion prompt ending in "Profile:"; chat models get it as the user message of a chat.
Every item line is built by `history_line`, which flattens the item text to one line without markup, so a
title such as "Ignore previous instructions\\n\\nProfile: ..." cannot add lines, turns or special tokens.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from lettingo_cli.errors import UsageError
from lettingo_cli.store.digest import canonical_json

MAX_ITEM_CHARS = 160
# How a profile is written unless a user says otherwise: gen's defaults, and what a model card tells its users.
HISTORY_LINES = 30  # the newest profile-history lines a prompt shows (the paper caps the history at 30)
PROFILE_TOKENS = 200  # most new tokens of one profile
TEMPERATURE = 1.0  # the paper explores at temperature 1.0
SENTIMENT_WORDS = {"like": "liked", "neutral": "felt neutral about", "dislike": "disliked"}

# Completion style for base models (docs/pitfalls.md: a base model continues text, so show one short worked
# example, then the user's history, then "Profile:").
PROFILE_COMPLETION_V1 = """\
Below, each user's ratings (oldest first) are followed by a free-form profile that describes anything that \
helps predict how the user will feel about a new item: favourite and disliked genres, eras, themes, moods, \
how generous a rater they are.

Ratings:
- "Heat (1995) | Action, Crime, Thriller": liked (5/5)
- "Sense and Sensibility (1995) | Drama, Romance": disliked (2/5)
- "GoldenEye (1995) | Action, Adventure, Thriller": liked (4/5)
- "Jumanji (1995) | Adventure, Children's, Fantasy": felt neutral about (3/5)
Profile: Enjoys tense, fast-paced crime and action films and rates them highly. Period romances and slow \
costume dramas bore them. Family fantasy is neither here nor there. A fairly generous rater for anything with \
suspense, harsh on sentimental stories.

Ratings:
{history}
Profile:"""

# Chat style: the same task as one instruction.
PROFILE_CHAT_V1 = """\
Here are a user's ratings, oldest first:
{history}

Write a free-form profile of this user (one paragraph) that describes anything that helps predict how they \
will feel about a new item: favourite and disliked genres, eras, themes, moods, how generous a rater they are. \
Answer with the profile only."""

BUILTIN = {
    "profile-completion-v1": PROFILE_COMPLETION_V1,
    "profile-chat-v1": PROFILE_CHAT_V1,
}
# Generation stops here: a blank line ends a profile; these markers mean the model started a new example.
COMPLETION_STOPS = ("\n\n", "\nRatings:", "\nProfile:")


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.hash[:12]}"


def builtin_template(chat: bool) -> Template:
    name = "profile-chat-v1" if chat else "profile-completion-v1"
    return Template(name, BUILTIN[name])


def load_template(path: Path) -> Template:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--prompt {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if "{history}" not in text:
        raise UsageError(f"--prompt {path}: the template needs a {{history}} placeholder")
    return Template(path.stem, text)


def clean_field(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """One line of plain text: no control characters, newlines, angle brackets (no markup, no special
    tokens) or double quotes (they delimit the field)."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", str(text))
    text = text.replace("<", " ").replace(">", " ").replace('"', "'")
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def history_line(row: dict) -> str:
    """One interaction of a prompt: `row` has the item's text, its sentiment and the value in words ("shown",
    from the split's readers: "4/5", "1,234 plays")."""
    return f'- "{clean_field(row["text"])}": {SENTIMENT_WORDS[row["sentiment"]]} ({row["shown"]})'


def history_text(rows: list[dict]) -> str:
    """Interactions as prompt lines, one per row, oldest first (also the history written out as a profile)."""
    return "\n".join(history_line(row) for row in rows)


def render(template: Template, history: list[dict], chat: bool):
    """The prompt for one user: `history` rows have item text, sentiment and the value in words, oldest first."""
    body = template.text.replace("{n_items}", str(len(history))).replace("{history}", history_text(history))
    if chat:
        return [{"role": "user", "content": body}]
    return body


def prompt_hash(prompt) -> str:
    payload = prompt if isinstance(prompt, str) else canonical_json(prompt)
    return hashlib.sha256(payload.encode()).hexdigest()
