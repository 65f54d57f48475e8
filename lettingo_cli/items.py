"""What every stage knows of items besides their text: the genres a MovieLens-style item text names ("Title (year)
| Genre, Genre", as ingest writes it), and the natural order of item ids."""

from __future__ import annotations


def item_genres(item_text: str) -> set[str]:
    """The genres of a MovieLens-style item text "Title (year) | Genre, Genre", lowercased; other texts: none."""
    _, bar, genres = item_text.partition(" | ")
    return {g.strip().lower() for g in genres.split(",") if g.strip()} if bar else set()


def item_order(item_id: str):
    """Item ids in their natural order: numeric ids as numbers, before any other id."""
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)
