"""connectors.meta.check: what ``syncd check`` reports for a Meta source, against the Graph
stand-in (sandbox/meta/).

What each test pins: a Page token of this Page passes every row, and says it never expires;
a user token or another Page's is refused with the fix; a permission a stream needs, missing
or granted for other Pages only, fails its row naming it; a token or its data access ending
within two weeks fails with the fix; when Meta will not inspect the token the check falls back
to ``/me`` and says so; the webhook row reads the Page's subscription (this app, its fields);
Instagram's token must be its linked Page's; an Instagram Login token (graph.instagram.com,
which the stand-in does not serve: a stub answers) is named, and its renewal left to the
admin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from support.pipeline import Clock

from connectors.meta.client import GraphPage, Usage
from connectors.meta.facebook import FacebookSource
from connectors.meta.instagram import InstagramSource
from connectors.meta.receiver import WebhookSettings
from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import PAGE_SCOPES
from sandbox.meta.store import Page as SandboxPage
from syncd.contracts import CheckRow
from syncd.errors import NotFound

TOKEN = "EAAB-check-page-token"


@dataclass
class Graph:
    """The stand-in, the brand's Page (its token: :data:`TOKEN`), and the clock both the
    stand-in and the sources read (it moves only when told)."""

    sandbox: MetaSandbox
    page: SandboxPage
    clock: Clock


@pytest.fixture
def graph() -> Iterator[Graph]:
    clock = Clock()
    with MetaSandbox(clock=clock) as sandbox:
        yield Graph(sandbox, sandbox.add_page("Acme", token=TOKEN), clock)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> WebhookSettings:
    monkeypatch.setenv("META_VERIFY_TOKEN", "meta-verify-token-check")
    monkeypatch.setenv("META_APP_SECRET", "meta-app-secret-check")
    return WebhookSettings.model_validate(
        {"verify_token": "env:META_VERIFY_TOKEN", "app_secret": "env:META_APP_SECRET"}
    )


def facebook_rows(
    sandbox: MetaSandbox, page: SandboxPage, clock: Clock, *, token: str = TOKEN, **kw: Any
) -> dict[str, CheckRow]:
    options: dict[str, Any] = {"messenger": False, **kw}
    source = FacebookSource(
        token, page_id=page.id, api_base_url=sandbox.url, clock=clock, **options
    )
    try:
        return {r.item: r for r in source.check(["Acme"])}
    finally:
        source.close()


def instagram_rows(
    sandbox: MetaSandbox, account_id: str, clock: Clock, *, token: str = TOKEN, **kw: Any
) -> dict[str, CheckRow]:
    source = InstagramSource(
        token, ig_user_id=account_id, api_base_url=sandbox.url, clock=clock, **kw
    )
    try:
        return {r.item: r for r in source.check(["acme"])}
    finally:
        source.close()


def failing(rows: Mapping[str, CheckRow]) -> list[str]:
    return [item for item, row in rows.items() if not row.ok]


# -- the token ------------------------------------------------------------------------------------
def test_a_page_token_of_this_page_passes_and_never_expires(graph: Graph) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    rows = facebook_rows(sandbox, page, clock, messenger=True)
    assert failing(rows) == []
    token = rows["Page token"]
    assert page.id in token.detail and sandbox.app_id in token.detail
    assert rows["token expiry"].detail.startswith("never expires")
    assert "90 days after the person who issued the token" in rows["data access"].detail
    assert "pages_read_user_content" in rows["permissions: posts and comments"].detail
    assert "pages_messaging" in rows["permissions: Messenger"].detail
    assert TOKEN not in repr(rows)


def test_a_user_token_or_another_pages_is_refused_with_the_fix(graph: Graph) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    sandbox.add_token("EAAB-a-user-token")
    (row,) = facebook_rows(sandbox, page, clock, token="EAAB-a-user-token").values()
    assert not row.ok and "USER token" in row.detail and "(debug_token)" in row.detail
    assert "Page access token of this Page" in row.fix
    other = sandbox.add_page("Other", token="EAAB-other-page-token")
    (row,) = facebook_rows(sandbox, page, clock, token="EAAB-other-page-token").values()
    assert not row.ok and f"Page {other.id}'s" in row.detail
    assert "GET /me/accounts" in row.fix


def test_a_missing_permission_fails_its_stream_naming_it(graph: Graph) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    kept = tuple(s for s in PAGE_SCOPES if s not in ("pages_read_user_content", "pages_messaging"))
    sandbox.grant(TOKEN, scopes=kept)
    rows = facebook_rows(sandbox, page, clock, messenger=True)
    feed = rows["permissions: posts and comments"]
    assert not feed.ok and "lacks pages_read_user_content" in feed.detail
    assert "grant the app pages_read_user_content" in feed.fix
    messenger = rows["permissions: Messenger"]
    assert not messenger.ok and "pages_messaging" in messenger.fix
    assert rows["Page token"].ok


def test_a_permission_granted_for_other_pages_only_fails(graph: Graph) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    sandbox.grant(TOKEN, targets={"pages_read_engagement": ("199999999999999",)})
    row = facebook_rows(sandbox, page, clock)["permissions: posts and comments"]
    assert not row.ok
    assert "pages_read_engagement is granted for 199999999999999 only" in row.detail
    assert "pages_read_engagement" in row.fix
    sandbox.grant(TOKEN, targets={"pages_read_engagement": ("199999999999999", page.id)})
    assert facebook_rows(sandbox, page, clock)["permissions: posts and comments"].ok


@pytest.mark.parametrize(
    ("ends", "item", "said", "fix"),
    [
        ("expires_at", "token expiry", "expires on", "long-lived Page token from a long-lived"),
        ("data_access_until", "data access", "last used the app", "log in through the app"),
    ],
)
def test_a_token_or_its_data_access_ending_within_two_weeks_fails_with_the_fix(
    graph: Graph, ends: str, item: str, said: str, fix: str
) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    ending: dict[str, Any] = {ends: clock.now + timedelta(days=3, hours=1)}
    sandbox.grant(TOKEN, **ending)
    rows = facebook_rows(sandbox, page, clock)
    assert failing(rows) == [item]
    assert "(in 3 days)" in rows[item].detail and said in rows[item].detail
    assert fix in rows[item].fix and "system user" in rows[item].fix
    ending = {ends: clock.now + timedelta(days=30)}
    sandbox.grant(TOKEN, **ending)
    assert facebook_rows(sandbox, page, clock)[item].ok


def test_a_token_meta_will_not_inspect_falls_back_to_me(graph: Graph) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    sandbox.faults.add("status", endpoint="debug_token", status=503, count=2)
    rows = facebook_rows(sandbox, page, clock)
    token = rows["Page token"]
    assert token.ok and page.id in token.detail
    assert "Meta would not inspect it" in token.detail and "not checked" in token.detail
    assert "token expiry" not in rows and "permissions: posts and comments" not in rows
    assert rows["posts and comments"].ok  # the probes still run
    account = sandbox.add_instagram_account(page.id, "acme")
    rows = instagram_rows(sandbox, account.id, clock)
    assert "Page token" not in rows and failing(rows) == []
    assert "Meta would not inspect it" in rows["Instagram account"].detail


# -- webhooks -------------------------------------------------------------------------------------
def test_the_webhook_row_reads_the_pages_subscription(
    graph: Graph, webhook: WebhookSettings
) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    sandbox.subscribe_app(page.id, ["feed", "mention"], app_id="999000999000999", name="Other")
    row = facebook_rows(sandbox, page, clock, webhook=webhook)["webhooks"]
    assert not row.ok and "is not subscribed" in row.detail
    assert f"POST /{page.id}/subscribed_apps?subscribed_fields=feed,mention" in row.fix
    assert "reverse proxy with TLS" in row.fix
    sandbox.subscribe_app(page.id, ["feed"])
    row = facebook_rows(sandbox, page, clock, webhook=webhook)["webhooks"]
    assert not row.ok and "subscribed to feed, not to mention" in row.detail
    sandbox.subscribe_app(page.id, ["feed", "mention"])
    rows = facebook_rows(sandbox, page, clock, webhook=webhook)
    assert rows["webhooks"].ok and rows["webhooks"].detail.startswith("configured")
    assert "feed, mention" in rows["webhooks"].detail
    assert "https://<this host>/webhooks/<source name>" in rows["webhooks"].detail
    assert rows["permissions: webhooks"].ok
    # Read Messenger, and its 'messages' field is wanted too.
    row = facebook_rows(sandbox, page, clock, webhook=webhook, messenger=True)["webhooks"]
    assert not row.ok and "not to messages" in row.detail


def test_without_pages_manage_metadata_the_subscription_is_unread(
    graph: Graph, webhook: WebhookSettings
) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    sandbox.subscribe_app(page.id, ["feed", "mention"])
    sandbox.grant(TOKEN, scopes=tuple(s for s in PAGE_SCOPES if s != "pages_manage_metadata"))
    rows = facebook_rows(sandbox, page, clock, webhook=webhook)
    assert not rows["permissions: webhooks"].ok
    assert "lacks pages_manage_metadata" in rows["permissions: webhooks"].detail
    assert not rows["webhooks"].ok and "pages_manage_metadata" in rows["webhooks"].fix


# -- Instagram ------------------------------------------------------------------------------------
def test_instagram_wants_the_linked_pages_token(graph: Graph, webhook: WebhookSettings) -> None:
    sandbox, page, clock = graph.sandbox, graph.page, graph.clock
    account = sandbox.add_instagram_account(page.id, "acme")
    sandbox.grant(TOKEN, targets={"instagram_basic": (account.id,)})
    sandbox.subscribe_app(page.id, ["feed"])
    rows = instagram_rows(sandbox, account.id, clock, webhook=webhook)
    assert failing(rows) == []
    assert page.id in rows["Page token"].detail and "linked" in rows["Page token"].detail
    assert "instagram_manage_comments" in rows["permissions: media and comments"].detail
    assert "App Dashboard" in rows["webhooks"].detail  # the Instagram fields: app level
    # A grant for another account only fails.
    sandbox.grant(TOKEN, targets={"instagram_basic": ("17841400000000001",)})
    row = instagram_rows(sandbox, account.id, clock)["permissions: media and comments"]
    assert not row.ok
    assert f"instagram_basic is granted for 17841400000000001 only, not {account.id}" in row.detail
    # Another Page's token is refused, naming the account that Page has (none).
    sandbox.add_page("Other", token="EAAB-other-page-token")
    (row,) = instagram_rows(sandbox, account.id, clock, token="EAAB-other-page-token").values()
    assert not row.ok and "whose Instagram account is none" in row.detail
    assert "linked to the Instagram account" in row.fix


class InstagramGraph:
    """graph.instagram.com as an Instagram Login token reads it: ``/me`` names the
    professional account (``user_id``) beside the app-scoped ``id``; no debug_token."""

    def __init__(self, user_id: str, subscribed: list[str]) -> None:
        self.user_id = user_id
        self.subscribed = subscribed

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        if path == "me":
            return {"user_id": self.user_id, "username": "acme", "id": "26000000000000001"}
        if path == self.user_id:
            return {"id": self.user_id, "username": "acme"}
        raise NotFound(f"no {path} here")

    def page(self, path: str, params: Mapping[str, str | int] | None = None) -> GraphPage:
        if path == "me/subscribed_apps":
            data: list[Any] = [{"subscribed_fields": self.subscribed}] if self.subscribed else []
        elif path in (f"{self.user_id}/media", "me/conversations"):
            data = []
        else:
            raise NotFound(f"no {path} here")
        return GraphPage(tuple(data), {"data": data}, None, Usage())

    def debug_token(self) -> dict[str, Any]:
        raise AssertionError("graph.instagram.com has no debug_token")

    def close(self) -> None:
        pass


def test_an_instagram_login_token_is_named_and_its_renewal_left_to_the_admin(
    monkeypatch: pytest.MonkeyPatch, webhook: WebhookSettings
) -> None:
    account = "17841400000000042"
    clock = Clock()

    def rows(
        graph: InstagramGraph, ig_user_id: str = account, direct: bool = True
    ) -> dict[str, CheckRow]:
        source = InstagramSource(
            TOKEN,
            ig_user_id=ig_user_id,
            instagram_login=True,
            clock=clock,
            webhook=webhook,
            direct=direct,
        )
        monkeypatch.setattr(source, "client", graph)
        return {r.item: r for r in source.check(["acme"])}

    found = rows(InstagramGraph(account, ["comments", "mentions", "messages"]))
    assert failing(found) == []
    assert found["Instagram token"].detail == f"an Instagram Login token of @acme ({account})"
    expiry = found["token expiry"]
    assert "60 days" in expiry.detail and "syncd does not refresh it" in expiry.detail
    assert "grant_type=ig_refresh_token" in expiry.detail and "renew it" in expiry.detail
    assert found["webhooks"].detail.startswith("configured: the account is subscribed")
    unsubscribed = rows(InstagramGraph(account, ["comments"]))["webhooks"]
    assert not unsubscribed.ok and "not to mentions" in unsubscribed.detail
    assert "POST /me/subscribed_apps" in unsubscribed.fix
    # Direct read: its messages beyond a thread's 20 newest come by the 'messages' field only.
    no_messages = rows(InstagramGraph(account, ["comments", "mentions"]))["webhooks"]
    assert not no_messages.ok and "not to messages" in no_messages.detail
    assert "subscribed_fields=comments,mentions,messages" in no_messages.fix
    assert rows(InstagramGraph(account, ["comments", "mentions"]), direct=False)["webhooks"].ok
    (other,) = rows(InstagramGraph("17841400000000099", []), account).values()
    assert not other.ok and "not account 17841400000000042's" in other.detail
