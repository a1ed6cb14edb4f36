"""Turning the last message of a conversation into something a search can find."""

from __future__ import annotations

from collections.abc import Sequence

from ragserve.types import ChatTurn

FOLLOW_UP_WORDS = 6


def followed_up_turn(query: str, history: Sequence[ChatTurn]) -> str | None:
    """The previous user turn when `query` is short enough to be a follow-up on it."""
    if len(query.split()) > FOLLOW_UP_WORDS:
        return None
    return next((t.content.strip() for t in reversed(history) if t.role == "user" and t.content.strip()), None)


def standalone_question(query: str, history: Sequence[ChatTurn]) -> str:
    """The question, led by the previous user turn when it is a short follow-up.

    "and how do I change it?" retrieves nothing useful on its own; with the turn it
    follows up on ("which port does the server use?") it finds the passage both are
    about. A model provider sees the whole conversation anyway; this is for the parts
    that see one text.
    """
    previous = followed_up_turn(query, history)
    return f"{previous} {query}" if previous else query
