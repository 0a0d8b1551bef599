"""Text from outside (API errors, people's names and posts) made safe to print.

Such text is not rich markup: ``[/b]`` in an API error would crash a print, ``[redacted]``
would vanish as an unknown style. Nor may it drive the terminal: an escape sequence in a
display name can rewrite the screen or the title bar, and a bidi override (U+202E) can make
a handle or a post read as something else. :func:`printable` removes both kinds of
character (C0 and C1 controls but newline and tab, DEL, and the bidi embeddings, overrides
and isolates); :func:`literal` also escapes markup, for text printed through rich.
"""

from __future__ import annotations

import re

from rich.markup import escape

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without terminal control characters and bidi overrides."""
    return _UNSAFE.sub("", text)


def literal(text: str) -> str:
    """``text`` to print as rich markup: :func:`printable`, its brackets literal."""
    return escape(printable(text))
