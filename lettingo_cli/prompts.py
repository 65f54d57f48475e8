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

# The exploring prompts (`gen --prompt NAME`): the broad one above, and variants that ask for different things, so
# a pool of profiles holds more than one writer's habits. Each has a completion form (one worked example on the
# broad prompt's example ratings) and a chat form.
EXAMPLE_RATINGS = """\
Ratings:
- "Heat (1995) | Action, Crime, Thriller": liked (5/5)
- "Sense and Sensibility (1995) | Drama, Romance": disliked (2/5)
- "GoldenEye (1995) | Action, Adventure, Thriller": liked (4/5)
- "Jumanji (1995) | Adventure, Children's, Fantasy": felt neutral about (3/5)
"""
VARIANTS = {
    # the rating level and its spread, in numbers
    "levels": (
        "how the user rates, in numbers: how many ratings, their average, how many are high (4-5) and low (1-2)",
        "Profile: 4 ratings, average 3.5 of 5: two high (5 and 4), one middling (3), one low (2). A generous rater "
        "who rarely goes below 3 except for slow dramas.",
    ),
    # liked and disliked genres, with the ratings that show them
    "genres": (
        "which genres the user likes and dislikes, each with the ratings that show it",
        "Profile: Likes action and crime (Heat 5/5, GoldenEye 4/5). Dislikes romance and costume drama (Sense and "
        "Sensibility 2/5). Neutral on family fantasy (Jumanji 3/5).",
    ),
    # the most recent ratings and what they say
    "recent": (
        "the user's most recent ratings, copied with their values, and what they say about the user",
        'Profile: Newest ratings: "Jumanji (1995)" 3/5, "GoldenEye (1995)" 4/5, "Sense and Sensibility (1995)" '
        "2/5. Lately still favours action, lukewarm on family films, low on romance.",
    ),
}


def _completion_variant(ask: str, example: str) -> str:
    head = f"Below, each user's ratings (oldest first) are followed by a profile that states {ask}.\n\n"
    return head + EXAMPLE_RATINGS + example + "\n\nRatings:\n{history}\nProfile:"


def _chat_variant(ask: str) -> str:
    return (
        "Here are a user's ratings, oldest first:\n{history}\n\n"
        f"Write a short profile of this user (one paragraph) that states {ask}. Answer with the profile only."
    )


BUILTIN = {
    "profile-completion-v1": PROFILE_COMPLETION_V1,
    "profile-chat-v1": PROFILE_CHAT_V1,
    **{f"profile-completion-{name}-v1": _completion_variant(ask, example) for name, (ask, example) in VARIANTS.items()},
    **{f"profile-chat-{name}-v1": _chat_variant(ask) for name, (ask, _) in VARIANTS.items()},
}
PROMPT_NAMES = ("broad", *VARIANTS)  # what `--prompt NAME` takes (broad: the default)
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


def builtin_template(chat: bool, prompt: str = "broad") -> Template:
    """The built-in prompt `prompt` (broad, levels, genres, recent) in the writer's style."""
    style = "chat" if chat else "completion"
    name = f"profile-{style}-v1" if prompt == "broad" else f"profile-{style}-{prompt}-v1"
    return Template(name, BUILTIN[name])


def template_for(prompt: str | Path | None, chat: bool) -> Template:
    """`--prompt NAME|FILE`: a built-in prompt by name (default: broad) in the writer's style, or a template file."""
    if prompt is None or str(prompt) in PROMPT_NAMES:
        return builtin_template(chat, str(prompt or "broad"))
    return load_template(Path(prompt))


def load_template(path: Path) -> Template:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--prompt {path}: no such file (nor a built-in prompt: {', '.join(PROMPT_NAMES)})")
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
