"""Text helpers the core and the connectors share: standard library only, so anything may
use them."""

from __future__ import annotations

import difflib
import unicodedata
from typing import Any


def fold(text: str) -> str:
    """Lower-case, accents dropped: 'Zoë Müller' → 'zoe muller'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def did_you_mean(word: Any, known: Any) -> str:
    if not isinstance(word, str):
        return ""
    options = [str(k) for k in known]
    by_lower = {o.lower(): o for o in options}
    if word.lower() in by_lower:  # "info" for "INFO": difflib scores case apart
        return f"; did you mean {by_lower[word.lower()]!r}?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def label(name: str) -> str:
    """How a network or an outside system is named to people: its type or network id,
    capitalized ('x' → 'X', 'mastodon' → 'Mastodon', 'salesforce' → 'Salesforce')."""
    return name.title()
