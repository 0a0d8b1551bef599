"""The inbox walk both Meta sources share (connectors/meta/threads.py), on Facebook's side:
Messenger refused for want of a permission ends the walk with a warning naming it, and the
Page's comments go on being read, as Instagram Direct's refusal does
(test_meta_instagram_direct.py). The stand-in does not model Messenger's permissions, so the
refusal is Graph's answer as the client classifies it, put in the source's listing call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from connectors.meta.client import GraphPage, PermissionDenied
from connectors.meta.facebook import FacebookSource
from sandbox.meta.api import MetaSandbox
from syncd.model import Account, Cursor, Stream

TOKEN = "EAAB-page-token-threads"


@pytest.fixture
def sandbox() -> Iterator[MetaSandbox]:
    with MetaSandbox() as server:
        yield server


def test_messenger_without_its_permission_warns_and_the_comments_are_read(
    sandbox: MetaSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = sandbox.add_page("Acme", token=TOKEN)
    fan = sandbox.add_person("Ann Fan")
    post = sandbox.add_post(page.id, "new in store")
    comment = sandbox.add_comment(post.id, fan, "love it")
    source = FacebookSource(TOKEN, page_id=page.id, api_base_url=sandbox.url, start="1d")
    listed = source._list

    def refusing(path: str, params: Mapping[str, str | int]) -> GraphPage:
        if path.endswith("/conversations"):
            raise PermissionDenied(
                "Meta refused for want of a permission: grant pages_messaging",
                permissions=("pages_messaging",),
            )
        return listed(path, params)

    monkeypatch.setattr(source, "_list", refusing)
    acme = Account("facebook", "Acme", page.id)
    cursor = Cursor(since_id=source.start_after(datetime.now(UTC) - timedelta(seconds=1)))
    read: list[str] = []
    warnings: list[str] = []
    for _ in range(10):
        got = source.fetch(acme, Stream.MENTIONS, cursor)
        read += [i.post_id for i in got.interactions]
        warnings += got.warnings
        if got.walk_complete:
            break
        cursor = got.next_cursor
    assert got.walk_complete
    assert read == [comment.id]
    (said,) = warnings
    assert "Messenger thread" in said and "pages_messaging" in said
    assert "messenger = false" in said
