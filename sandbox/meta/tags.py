"""``message_tags`` of a post or comment: the Pages an ``@Name`` in its text tags.

Graph gives each tag as ``{id, name, type, offset, length}`` (Post and Comment references,
``message_tags``); the stand-in tags a Page wherever ``@`` and its name appear in the text
(any case), which is how the Page ``mention`` webhook's objects come about. People are not
tagged: nothing here reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox.meta.store import Page


def page_tags(text: str | None, pages: Iterable[Page]) -> list[dict[str, Any]]:
    """The tags of ``text``, in the order they appear (empty: none)."""
    if not text:
        return []
    lowered = text.lower()
    found: list[dict[str, Any]] = []
    for page in pages:
        mention = f"@{page.name}".lower()
        start = lowered.find(mention)
        while start >= 0:
            found.append(
                {
                    "id": page.id,
                    "name": page.name,
                    "type": "page",
                    "offset": start + 1,  # the tag is the name, after the "@"
                    "length": len(page.name),
                }
            )
            start = lowered.find(mention, start + len(mention))
    return sorted(found, key=lambda t: int(t["offset"]))
