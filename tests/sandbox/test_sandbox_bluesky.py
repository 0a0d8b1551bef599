"""The Bluesky stand-in against the real API: its answers are checked against the lexicons and
the recorded bodies in fixtures/atproto/ (from the atproto SDK, MIT: LICENSE beside them; the
getQuotes lexicon from bluesky-social/atproto, LICENSE.bluesky-social-atproto), and the real
client library (the atproto SDK, with its generated models) talks to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from atproto_client import Client, models
from atproto_client.exceptions import BadRequestError, RateLimitExceededError, UnauthorizedError
from atproto_core.did_doc import DidDocument, is_valid_did_doc

from sandbox.bluesky.api import BlueskySandbox

FIXTURES = Path(__file__).parent.parent / "fixtures" / "atproto"
PASSWORD = "sandbox-app-password"


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


LEXICONS = {
    doc["id"]: doc
    for doc in (json.loads(p.read_text()) for p in (FIXTURES / "lexicons").glob("*.json"))
}


def _def(ref: str, here: str) -> dict[str, Any]:
    nsid, _, name = ref.partition("#")
    doc = LEXICONS[nsid or here]
    found: dict[str, Any] = doc["defs"][name or "main"]
    return found


_PRIMITIVES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


def conforms(value: Any, schema: dict[str, Any], here: str, path: str = "$") -> list[str]:
    """What in ``value`` breaks ``schema`` (a lexicon def): required keys, primitive types,
    refs and unions into the lexicons held here (refs elsewhere are not followed)."""
    kind = schema.get("type")
    if kind == "ref":
        nsid = schema["ref"].partition("#")[0] or here
        if nsid not in LEXICONS:
            return []
        return conforms(value, _def(schema["ref"], here), nsid, path)
    if kind == "union":
        if not isinstance(value, dict) or "$type" not in value:
            return [f"{path}: a union member without $type"]
        refs = [r if "#" in r else r + "#main" for r in schema["refs"]]
        full = [r if not r.startswith("#") else here + r for r in refs]
        wanted = value["$type"] if "#" in value["$type"] else value["$type"] + "#main"
        if wanted not in full:
            return [f"{path}: $type {value['$type']} not among {schema['refs']}"]
        return conforms(value, {"type": "ref", "ref": wanted}, here, path)
    if kind in ("params", "query", "procedure", "unknown", "blob", "cid-link") or kind is None:
        return []
    if not isinstance(value, _PRIMITIVES[kind]):
        return [f"{path}: not {kind}"]
    problems: list[str] = []
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}.{key}: required")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += conforms(value[key], sub, here, f"{path}.{key}")
    if isinstance(value, list):
        for n, item in enumerate(value):
            problems += conforms(item, schema["items"], here, f"{path}[{n}]")
    if isinstance(value, str) and "const" in schema and value != schema["const"]:
        problems.append(f"{path}: not {schema['const']!r}")
    return problems


def output(nsid: str) -> dict[str, Any]:
    schema: dict[str, Any] = LEXICONS[nsid]["defs"]["main"]["output"]["schema"]
    return schema


@pytest.fixture
def sandbox() -> Iterator[BlueskySandbox]:
    server = BlueskySandbox()
    with server:
        yield server


@pytest.fixture
def world(sandbox: BlueskySandbox) -> dict[str, str]:
    brand = sandbox.add_user("acme.bsky.social", password=PASSWORD, display_name="Acme").did
    fan = sandbox.add_user("fan.bsky.social", display_name="Fan").did
    return {"brand": brand, "fan": fan}


def login(sandbox: BlueskySandbox) -> Client:
    client = Client(base_url=sandbox.url)
    client.login("acme.bsky.social", PASSWORD, fetch_bsky_profile=False)
    return client


def raw(sandbox: BlueskySandbox, client: Client, nsid: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {client._session.access_jwt}"}
    return httpx.get(f"{sandbox.url}/xrpc/{nsid}", params=params, headers=headers)


# -- the recorded bodies ---------------------------------------------------------------------
def test_the_recordings_conform_to_the_lexicons_the_checker_reads() -> None:
    # The checker itself is checked on real answers: a checker that passes anything would
    # pass the stand-in too.
    thread = _load("thread_view_post_with_embed_media.json")
    assert (
        conforms(
            thread["thread"]["post"], {"type": "ref", "ref": "#postView"}, "app.bsky.feed.defs"
        )
        == []
    )
    follow = _load("get_follows.json")["follows"][0]
    assert conforms(follow, {"type": "ref", "ref": "#profileView"}, "app.bsky.actor.defs") == []
    broken = {k: v for k, v in thread["thread"]["post"].items() if k != "indexedAt"}
    assert conforms(broken, {"type": "ref", "ref": "#postView"}, "app.bsky.feed.defs")


def test_post_and_profile_views_have_the_recorded_keys(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    post = sandbox.add_post(world["fan"], "@acme hello", mentions=(world["brand"],))
    client = login(sandbox)
    thread = raw(sandbox, client, "app.bsky.feed.getPostThread", uri=post.uri, depth=0).json()
    recorded = _load("thread_view_post_with_embed_media.json")["thread"]
    assert thread["thread"]["$type"] == recorded["$type"]
    served, real = thread["thread"]["post"], recorded["post"]
    # Every key of the recorded post view, but the embed (this post has none).
    assert set(real) - {"embed"} <= set(served)
    # The recording is older than the lexicons' quoteCount and bookmarkCount.
    lexicon = LEXICONS["app.bsky.feed.defs"]["defs"]["postView"]["properties"]
    assert set(served) <= set(real) | {"quoteCount", "bookmarkCount"}
    assert {"quoteCount", "bookmarkCount"} <= set(lexicon)
    assert set(served["author"]) == set(real["author"]) - {"avatar"}
    assert set(served["record"]) <= set(real["record"]) | {"facets", "reply"}
    profiles = raw(sandbox, client, "app.bsky.actor.getProfiles", actors=["fan.bsky.social"]).json()
    follow = _load("get_follows.json")["follows"][0]
    (profile,) = profiles["profiles"]
    assert set(follow) - {"avatar", "verification"} <= set(profile)
    assert conforms(profile, {"type": "ref", "ref": "#profileView"}, "app.bsky.actor.defs") == []
    assert profile["did"].startswith("did:plc:") and len(profile["did"]) == len(follow["did"])
    assert len(post.uri.rsplit("/", 1)[1]) == len(real["uri"].rsplit("/", 1)[1])  # a TID


def test_answers_conform_to_the_lexicons(sandbox: BlueskySandbox, world: dict[str, str]) -> None:
    asked = sandbox.add_post(world["fan"], "@acme question", mentions=(world["brand"],))
    sandbox.add_post(world["brand"], "@fan answer", in_reply_to=asked.uri)
    sandbox.add_post(world["fan"], "thanks", in_reply_to=asked.uri)
    created = httpx.post(
        f"{sandbox.url}/xrpc/com.atproto.server.createSession",
        json={"identifier": "acme.bsky.social", "password": PASSWORD},
    ).json()
    assert (
        conforms(
            created, output("com.atproto.server.createSession"), "com.atproto.server.createSession"
        )
        == []
    )
    refreshed = httpx.post(
        f"{sandbox.url}/xrpc/com.atproto.server.refreshSession",
        headers={"Authorization": f"Bearer {created['refreshJwt']}"},
    ).json()
    assert (
        conforms(
            refreshed,
            output("com.atproto.server.refreshSession"),
            "com.atproto.server.refreshSession",
        )
        == []
    )
    client = login(sandbox)
    notes = raw(sandbox, client, "app.bsky.notification.listNotifications").json()
    nsid = "app.bsky.notification.listNotifications"
    assert conforms(notes, output(nsid), nsid) == []
    assert notes["notifications"]
    thread = raw(sandbox, client, "app.bsky.feed.getPostThread", uri=asked.uri).json()
    assert (
        conforms(thread, output("app.bsky.feed.getPostThread"), "app.bsky.feed.getPostThread") == []
    )


# -- the real client on the stand-in ---------------------------------------------------------
def test_the_sdk_reads_every_endpoint_into_its_models(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    asked = sandbox.add_post(world["fan"], "@acme question", mentions=(world["brand"],))
    sandbox.add_post(world["brand"], "@fan answer", in_reply_to=asked.uri)
    client = login(sandbox)
    assert client._session.did == world["brand"]
    notes = client.app.bsky.notification.list_notifications(
        models.AppBskyNotificationListNotifications.Params(reasons=["mention", "reply", "quote"])
    )
    assert [n.reason for n in notes.notifications] == ["mention"]
    feed = client.app.bsky.feed.get_author_feed(
        models.AppBskyFeedGetAuthorFeed.Params(actor=world["brand"], filter="posts_with_replies")
    )
    (item,) = feed.feed
    assert item.reply is not None and item.reply.parent.uri == asked.uri
    posts = client.app.bsky.feed.get_posts(models.AppBskyFeedGetPosts.Params(uris=[asked.uri]))
    assert [p.uri for p in posts.posts] == [asked.uri]
    profiles = client.app.bsky.actor.get_profiles(
        models.AppBskyActorGetProfiles.Params(actors=["fan.bsky.social", "nobody.bsky.social"])
    )
    assert [p.did for p in profiles.profiles] == [world["fan"]]


def test_notifications_page_newest_first_with_an_opaque_cursor(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    uris = [
        sandbox.add_post(world["fan"], f"@acme {n}", mentions=(world["brand"],)).uri
        for n in range(7)
    ]
    client = login(sandbox)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = raw(
            sandbox,
            client,
            "app.bsky.notification.listNotifications",
            limit=3,
            **({"cursor": cursor} if cursor else {}),
        ).json()
        seen += [n["uri"] for n in page["notifications"]]
        cursor = page.get("cursor")
        if cursor is None:
            break
    assert seen == uris[::-1]


def test_a_backdated_post_sorts_below_newer_notifications(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    first = sandbox.add_post(world["fan"], "@acme first", mentions=(world["brand"],))
    old = datetime.now(UTC) - timedelta(days=2)
    backdated = sandbox.add_post(
        world["fan"], "@acme late", mentions=(world["brand"],), created_at=old
    )
    client = login(sandbox)
    page = raw(sandbox, client, "app.bsky.notification.listNotifications").json()
    assert [n["uri"] for n in page["notifications"]] == [first.uri, backdated.uri]


def test_a_reply_that_mentions_is_one_notification_of_reason_mention(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    brand_post = sandbox.add_post(world["brand"], "news")
    sandbox.add_post(
        world["fan"], "@acme re", in_reply_to=brand_post.uri, mentions=(world["brand"],)
    )
    client = login(sandbox)
    page = raw(sandbox, client, "app.bsky.notification.listNotifications").json()
    assert [n["reason"] for n in page["notifications"]] == ["mention"]


def test_refusals_are_the_apis(sandbox: BlueskySandbox, world: dict[str, str]) -> None:
    post = sandbox.add_post(world["fan"], "gone soon")
    client = login(sandbox)
    seen_at = raw(
        sandbox, client, "app.bsky.notification.listNotifications", seenAt="2026-01-01T00:00:00Z"
    )
    assert seen_at.status_code == 400
    too_many = raw(sandbox, client, "app.bsky.notification.listNotifications", limit=101)
    assert too_many.status_code == 400
    sandbox.delete_post(post.uri)
    gone = raw(sandbox, client, "app.bsky.feed.getPostThread", uri=post.uri)
    assert (gone.status_code, gone.json()["error"]) == (400, "NotFound")  # the lexicon's error
    with pytest.raises(UnauthorizedError):
        Client(base_url=sandbox.url).login("acme.bsky.social", "wrong", fetch_bsky_profile=False)
    sandbox.expire_sessions()
    expired = raw(sandbox, client, "app.bsky.feed.getPosts", uris=[post.uri])
    assert (expired.status_code, expired.json()["error"]) == (400, "ExpiredToken")


def test_blocked_and_deleted_posts_in_threads(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    parent = sandbox.add_post(world["fan"], "question")
    sandbox.add_post(world["brand"], "answer", in_reply_to=parent.uri)
    sandbox.blocked.add(parent.uri)
    client = login(sandbox)
    thread = raw(sandbox, client, "app.bsky.feed.getPostThread", uri=parent.uri).json()
    assert thread["thread"]["$type"] == "app.bsky.feed.defs#blockedPost"
    nsid = "app.bsky.feed.getPostThread"
    assert conforms(thread, output(nsid), nsid) == []
    sandbox.blocked.clear()
    sandbox.delete_post(parent.uri)
    feed = raw(sandbox, client, "app.bsky.feed.getAuthorFeed", actor=world["brand"]).json()
    assert feed["feed"][0]["reply"]["parent"] == {
        "$type": "app.bsky.feed.defs#notFoundPost", "uri": parent.uri, "notFound": True,
    }  # fmt: skip


def test_rate_limits_per_ip_and_on_logins(sandbox: BlueskySandbox, world: dict[str, str]) -> None:
    sandbox.requests_per_window = 3
    client = login(sandbox)
    answered = raw(sandbox, client, "app.bsky.actor.getProfiles", actors=["fan.bsky.social"])
    assert answered.headers["RateLimit-Limit"] == "3"
    assert answered.headers["RateLimit-Remaining"] == "2"
    assert answered.headers["RateLimit-Policy"] == "3;w=300"
    for _ in range(2):
        raw(sandbox, client, "app.bsky.actor.getProfiles", actors=["fan.bsky.social"])
    with pytest.raises(RateLimitExceededError) as info:
        client.app.bsky.actor.get_profiles(
            models.AppBskyActorGetProfiles.Params(actors=["fan.bsky.social"])
        )
    assert info.value.remaining == 0 and info.value.reset_at is not None
    sandbox.requests_per_window = 3000
    for _ in range(29):  # 30 logins in 5 minutes, the first one above included
        login(sandbox)
    with pytest.raises(RateLimitExceededError) as login_limit:
        login(sandbox)
    assert login_limit.value.limit == 30


def test_a_refresh_token_is_used_once(sandbox: BlueskySandbox, world: dict[str, str]) -> None:
    created = httpx.post(
        f"{sandbox.url}/xrpc/com.atproto.server.createSession",
        json={"identifier": "acme.bsky.social", "password": PASSWORD},
    ).json()
    auth = {"Authorization": f"Bearer {created['refreshJwt']}"}
    first = httpx.post(f"{sandbox.url}/xrpc/com.atproto.server.refreshSession", headers=auth)
    assert first.status_code == 200 and first.json()["refreshJwt"] != created["refreshJwt"]
    again = httpx.post(f"{sandbox.url}/xrpc/com.atproto.server.refreshSession", headers=auth)
    assert again.status_code == 400
    with pytest.raises(BadRequestError):
        Client(base_url=sandbox.url).com.atproto.server.refresh_session(headers=auth)


def test_the_session_names_the_pds_in_a_did_document_like_the_recorded_one(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    recorded = _load("did_doc.json")["didDoc"]
    created = httpx.post(
        f"{sandbox.url}/xrpc/com.atproto.server.createSession",
        json={"identifier": "acme.bsky.social", "password": PASSWORD},
    ).json()
    served = created["didDoc"]
    assert set(served) == set(recorded)
    assert [set(s) for s in served["service"]] == [set(s) for s in recorded["service"]]
    assert served["service"][0]["type"] == recorded["service"][0]["type"]
    assert served["verificationMethod"][0]["id"] == f"{served['id']}#atproto"
    # The SDK reads both alike, and moves to the PDS the document names.
    assert is_valid_did_doc(recorded) and is_valid_did_doc(served)
    assert DidDocument.from_dict(recorded).get_pds_endpoint() == (
        "https://shimeji.us-east.host.bsky.network"
    )
    assert DidDocument.from_dict(served).get_pds_endpoint() == sandbox.url


# -- threads, quotes and the notifications they make -----------------------------------------
def chain(sandbox: BlueskySandbox, under: str, authors: list[str]) -> list[str]:
    """Replies one under another below ``under``, by ``authors`` in turn."""
    uris: list[str] = []
    for n, did in enumerate(authors):
        uris.append(
            sandbox.add_post(did, f"level {n + 1}", in_reply_to=uris[-1] if uris else under).uri
        )
    return uris


def test_a_thread_is_its_reply_tree_to_the_depth_asked(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    other = sandbox.add_user("other.bsky.social").did
    root = sandbox.add_post(world["fan"], "root")
    news = sandbox.add_post(world["brand"], "news", in_reply_to=root.uri)
    deep = chain(sandbox, news.uri, [world["fan"], other, world["fan"], other])
    side = sandbox.add_post(other, "side", in_reply_to=news.uri)
    blocked = sandbox.add_post(other, "blocked one", in_reply_to=news.uri)
    gone = sandbox.add_post(other, "deleted", in_reply_to=news.uri)
    orphan_post = sandbox.add_post(world["fan"], "under the deleted one", in_reply_to=gone.uri)
    sandbox.blocked.add(blocked.uri)
    sandbox.delete_post(gone.uri)
    client = login(sandbox)
    nsid = "app.bsky.feed.getPostThread"
    body = raw(sandbox, client, nsid, uri=news.uri, depth=3, parentHeight=0).json()
    assert conforms(body, output(nsid), nsid) == []
    thread = body["thread"]
    assert "parent" not in thread  # parentHeight 0
    kinds = [(r["$type"].rsplit("#", 1)[1], r.get("post", r).get("uri")) for r in thread["replies"]]
    # Newest first; a blocked reply is a blockedPost; a deleted one is left out, and so is
    # what lies below it.
    assert kinds == [
        ("blockedPost", blocked.uri), ("threadViewPost", side.uri), ("threadViewPost", deep[0]),
    ]  # fmt: skip
    level, seen = thread["replies"][2], []
    while level.get("replies"):
        (level,) = level["replies"]
        seen.append(level["post"]["uri"])
    assert seen == deep[1:3]  # three levels below the anchor, not the fourth
    assert "replies" not in level  # depth spent: the lexicon's optional replies left out
    # The parent, as far up as asked; a deleted one is a notFoundPost.
    up = raw(sandbox, client, nsid, uri=deep[1], depth=0, parentHeight=2).json()["thread"]
    assert up["parent"]["post"]["uri"] == deep[0]
    assert up["parent"]["parent"]["post"]["uri"] == news.uri
    assert "parent" not in up["parent"]["parent"]
    assert conforms({"thread": up}, output(nsid), nsid) == []
    orphan = raw(sandbox, client, nsid, uri=orphan_post.uri).json()
    assert orphan["thread"]["parent"] == {
        "$type": "app.bsky.feed.defs#notFoundPost", "uri": gone.uri, "notFound": True,
    }  # fmt: skip
    bad = raw(sandbox, client, nsid, uri=news.uri, depth=1001)
    assert (bad.status_code, bad.json()["error"]) == (400, "InvalidRequest")
    # The SDK reads the tree into its models.
    typed = client.app.bsky.feed.get_post_thread(
        models.AppBskyFeedGetPostThread.Params(uri=news.uri, depth=4, parent_height=0)
    )
    assert isinstance(typed.thread, models.AppBskyFeedDefs.ThreadViewPost)
    assert typed.thread.replies is not None and len(typed.thread.replies) == 3


def test_quotes_page_newest_first_and_conform_to_their_lexicon(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    news = sandbox.add_post(world["brand"], "news")
    quotes = [sandbox.add_post(world["fan"], f"look {n}", quote=news.uri).uri for n in range(5)]
    hidden = sandbox.add_post(world["fan"], "blocked quote", quote=news.uri)
    gone = sandbox.add_post(world["fan"], "deleted quote", quote=news.uri)
    sandbox.blocked.add(hidden.uri)
    sandbox.delete_post(gone.uri)
    client = login(sandbox)
    nsid = "app.bsky.feed.getQuotes"
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        extra: dict[str, str] = {"cursor": cursor} if cursor else {}
        body = raw(sandbox, client, nsid, uri=news.uri, limit=2, **extra).json()
        assert conforms(body, output(nsid), nsid) == []
        assert body["uri"] == news.uri
        seen += [p["uri"] for p in body["posts"]]
        cursor = body.get("cursor")
        if cursor is None:
            break
    assert seen == quotes[::-1]
    view = raw(sandbox, client, nsid, uri=news.uri, limit=1).json()["posts"][0]
    # A quote embeds the quoted post, in its record and its view (as recorded).
    recorded = _load("thread_view_post_with_embed_media.json")["thread"]["post"]
    assert view["record"]["embed"]["record"]["uri"] == news.uri
    assert view["embed"]["$type"] == "app.bsky.embed.record#view"
    assert set(view["embed"]["record"]) - {"quoteCount"} == set(
        recorded["embed"]["record"]["record"]
    )
    assert view["embed"]["record"]["value"]["text"] == "news"
    counted = raw(sandbox, client, "app.bsky.feed.getPosts", uris=[news.uri]).json()["posts"][0]
    assert counted["quoteCount"] == 6  # the blocked one counts; the deleted one does not
    assert raw(sandbox, client, nsid, uri=news.uri, limit=101).status_code == 400
    typed = client.app.bsky.feed.get_quotes(
        models.AppBskyFeedGetQuotes.Params(uri=news.uri, limit=100)
    )
    assert [p.uri for p in typed.posts] == quotes[::-1]


def test_a_reply_notifies_its_ancestors_up_to_four_levels_and_a_quote_its_author(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    other = sandbox.add_user("other.bsky.social").did
    news = sandbox.add_post(world["brand"], "news")
    deep = chain(sandbox, news.uri, [world["fan"], other, world["fan"], other, world["fan"]])
    quote = sandbox.add_post(other, "look", quote=news.uri, in_reply_to=deep[0])
    client = login(sandbox)
    notes = raw(sandbox, client, "app.bsky.notification.listNotifications", limit=100).json()
    told = {n["uri"]: (n["reason"], n.get("reasonSubject")) for n in n_list(notes)}
    # As the appview (REPLY_NOTIF_DEPTH 5): levels 1 to 4 below the brand's post tell it,
    # the fifth does not; one notification a post, a quote before a reply.
    assert told == {
        deep[0]: ("reply", news.uri),
        deep[1]: ("reply", news.uri),
        deep[2]: ("reply", news.uri),
        deep[3]: ("reply", news.uri),
        quote.uri: ("quote", news.uri),
    }


def n_list(body: dict[str, Any]) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = body["notifications"]
    return notes


def test_the_expired_token_fault_answers_only_what_an_access_token_asks(
    sandbox: BlueskySandbox, world: dict[str, str]
) -> None:
    """A rule for every endpoint still logs in and refreshes (a password and a refresh JWT
    are not access tokens: an ExpiredToken there would send a client to log in again), and
    answers an access-token call with ExpiredToken."""
    rule = sandbox.inject("expired_token", endpoint="*", rate=1.0)
    client = login(sandbox)  # createSession, untouched
    refreshed = httpx.post(
        f"{sandbox.url}/xrpc/com.atproto.server.refreshSession",
        headers={"Authorization": f"Bearer {client._session.refresh_jwt}"},
    )
    assert refreshed.status_code == 200 and rule.fired == 0
    notes = raw(sandbox, client, "app.bsky.notification.listNotifications")
    assert (notes.status_code, notes.json()["error"]) == (400, "ExpiredToken")
    assert sandbox.faults.injected_by_kind == {"expired_token": 1}
