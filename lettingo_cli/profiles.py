"""What a written profile is, for every stage that reads one: its cleaning, its flags (empty, degenerate,
truncated) and the diversity of a user's profiles."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

# A profile needs this many letters to say anything (fewer: flagged "empty").
MIN_PROFILE_LETTERS = 10
# Loop detection: a profile of at least LOOP_MIN_WORDS words whose distinct word trigrams are under this
# share of all its trigrams, a line repeated LOOP_LINE_REPEATS times, or one word LOOP_WORD_RUN times in a row.
LOOP_MIN_WORDS = 12
LOOP_MIN_DISTINCT_TRIGRAMS = 0.5
LOOP_LINE_REPEATS = 3
LOOP_WORD_RUN = 6
# A text with one of these flags holds no profile: pair never chooses it, grpo rewards it --flagged-reward.
UNUSABLE_FLAGS = ("empty", "degenerate")


def clean_profile(text: str) -> str:
    """Strip whitespace and a leading echo of the prompt's last line ("Profile:")."""
    text = text.strip()
    text = re.sub(r"^(?:\**\s*profile\s*\**\s*:\s*)+", "", text, flags=re.IGNORECASE)
    return text.strip()


def is_degenerate(text: str) -> bool:
    """A loop: few distinct word trigrams, one line repeated, or one word many times in a row."""
    words = re.findall(r"\w+", text.lower())
    if len(words) >= LOOP_MIN_WORDS:
        trigrams = list(zip(words, words[1:], words[2:]))
        if len(set(trigrams)) / len(trigrams) < LOOP_MIN_DISTINCT_TRIGRAMS:
            return True
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and Counter(lines).most_common(1)[0][1] >= LOOP_LINE_REPEATS:
        return True
    return any(len(list(group)) >= LOOP_WORD_RUN for _, group in itertools.groupby(words))


def profile_flags(text: str, finished: bool) -> list[str]:
    flags = []
    if len(re.findall(r"[^\W\d_]", text)) < MIN_PROFILE_LETTERS:
        flags.append("empty")
    elif is_degenerate(text):
        flags.append("degenerate")
    if not finished:
        flags.append("truncated")
    return flags


def diversity(profiles_by_user: dict[str, list[str]]) -> dict:
    """distinct-1/2 over all profiles, and the mean pairwise cosine similarity (bag of words) of the profiles
    of the same user: the point of exploration is diverse profiles of each user."""
    unigrams, bigrams, similarities = [], [], []
    for texts in profiles_by_user.values():
        bags = []
        for text in texts:
            words = re.findall(r"\w+", text.lower())
            unigrams.extend(words)
            bigrams.extend(zip(words, words[1:]))
            bags.append(Counter(words))
        for a, b in itertools.combinations(bags, 2):
            similarities.append(_cosine(a, b))
    return {
        "profiles": sum(len(texts) for texts in profiles_by_user.values()),
        "distinct_1": round(len(set(unigrams)) / len(unigrams), 4) if unigrams else 0.0,
        "distinct_2": round(len(set(bigrams)) / len(bigrams), 4) if bigrams else 0.0,
        "mean_pairwise_similarity": round(sum(similarities) / len(similarities), 4) if similarities else None,
    }


def _cosine(a: Counter, b: Counter) -> float:
    dot = sum(count * b[word] for word, count in a.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm if norm else 0.0
