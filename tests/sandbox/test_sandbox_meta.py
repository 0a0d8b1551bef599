"""sandbox.meta against the bodies graph.facebook.com answered (tests/fixtures/meta/, recorded by
python-facebook, Apache-2.0, and restfb, MIT; LICENSE files beside them): the same fields with
the same JSON types, the same paging shapes per edge, and the documented order, limits and
visibility rules where the recordings are silent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from meta_support import (
    PAGE_TOKEN,
    USER_TOKEN,
    Clock,
    World,
    assert_same_shape,
    follow,
    get,
    merged,
    query,
    recorded,
    world,
)

from sandbox.meta.api import MetaSandbox
from sandbox.meta.fields import FieldSyntaxError, parse_fields

PF = "python-facebook/facebook/"
IG = "python-facebook/instagram/"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def w(clock: Clock) -> Iterator[World]:
    sandbox = MetaSandbox(clock=clock)
    sandbox.poll_interval = 0.005
    with sandbox:
        yield world(sandbox, clock)


def ids(resp: requests.Response) -> list[str]:
    return [str(item["id"]) for item in resp.json()["data"]]


def recorded_fields(path: str) -> str:
    """The ``fields`` a recorded page was asked with (its paging link carries them)."""
    paging = recorded(path)["paging"]
    return query(paging.get("next") or paging["previous"])["fields"][0]


# -- the Page feed ---------------------------------------------------------------------------
def test_feed_with_field_expansion_has_the_recorded_shape_and_cursor_paging(w: World) -> None:
    sb, page = w.sb, w.page
    posts = []
    for n in range(3):
        posts.append(sb.add_post(page.id, f"post {n}", at=w.clock.now - timedelta(days=10 - n)))
    sb.add_comment(posts[0].id, w.ann, "late comment on the oldest post")
    fields = recorded_fields(PF + "apidata/posts/feeds_default_fields_p1.json")
    first = get(sb, f"/{page.id}/feed", fields=fields, limit=2)
    assert first.status_code == 200, first.text
    body = first.json()
    real1 = recorded(PF + "apidata/posts/feeds_default_fields_p1.json")
    real2 = recorded(PF + "apidata/posts/feeds_default_fields_p2.json")
    assert_same_shape(body["data"], real1["data"], "feed")
    # Newest first by creation; the comment moved the oldest post's updated_time only.
    assert [p["id"] for p in body["data"]] == [posts[2].id, posts[1].id]
    # A first page as recorded: both cursors and next, no previous.
    assert set(body["paging"]) == set(real1["paging"]) == {"cursors", "next"}
    assert set(body["paging"]["cursors"]) == set(real1["paging"]["cursors"])
    link = query(body["paging"]["next"])
    assert link["fields"] == [fields] and link["limit"] == ["2"] and "after" in link
    last = follow(body["paging"]["next"]).json()
    assert [p["id"] for p in last["data"]] == [posts[0].id]
    # The last page as recorded: only the before cursor and previous.
    assert set(last["paging"]) == set(real2["paging"]) == {"cursors", "previous"}
    assert set(last["paging"]["cursors"]) == set(real2["paging"]["cursors"]) == {"before"}
    oldest = last["data"][0]
    assert oldest["updated_time"] > oldest["created_time"]
    assert oldest["comments"] == {
        "data": [],
        "summary": {"order": "chronological", "total_count": 1, "can_comment": True},
    }
    assert oldest["like"] == {"data": [], "summary": {"total_count": 0}}  # the .as(like) alias


def test_feed_holds_visitor_and_tagged_posts_and_their_own_edges_list_them(w: World) -> None:
    sb, page = w.sb, w.page
    own = sb.add_post(page.id, "ours")
    visit = sb.add_visitor_post(page.id, w.ann, "I visited")
    tag = sb.add_tagged_post(page.id, w.bob, "look @Acme")
    assert ids(get(sb, f"/{page.id}/feed")) == [tag.id, visit.id, own.id]
    assert ids(get(sb, f"/{page.id}/posts")) == [own.id]
    assert ids(get(sb, f"/{page.id}/visitor_posts")) == [visit.id]
    tagged = get(sb, f"/{page.id}/tagged", fields="id,from,message,tagged_time").json()["data"]
    # "For user posts, the from field will only be returned if the user making the request
    # is the same user who created the post": a Page token never sees it.
    assert [p["id"] for p in tagged] == [tag.id] and "from" not in tagged[0]
    assert tagged[0]["tagged_time"]
    visitor = get(sb, f"/{page.id}/visitor_posts", fields="from").json()["data"][0]
    assert visitor["from"] == {"name": "Ann Customer", "id": sb.scoped_id(w.ann, page.id)}


def test_posts_page_by_time_as_recorded(w: World) -> None:
    sb, page = w.sb, w.page
    hours = [w.clock.now - timedelta(hours=5 - n) for n in range(5)]
    made = [sb.add_post(page.id, f"n{n}", at=at) for n, at in enumerate(hours)]
    real1 = recorded(PF + "apidata/posts/feed_fields_p1.json")
    real2 = recorded(PF + "apidata/posts/feed_fields_p2.json")
    first = get(sb, f"/{page.id}/posts", fields="id,message,created_time", limit=2).json()
    assert_same_shape(first["data"], real1["data"], "posts")
    assert [p["id"] for p in first["data"]] == [made[4].id, made[3].id]
    assert set(first["paging"]) == set(real1["paging"]) == {"previous", "next"}
    nxt, prev = query(first["paging"]["next"]), query(first["paging"]["previous"])
    real_next, real_prev = query(real1["paging"]["next"]), query(real1["paging"]["previous"])
    assert {"until", "__paging_token"} <= set(nxt) & set(real_next)
    assert {"since", "__paging_token", "__previous"} <= set(prev) & set(real_prev)
    # next: until = the created_time of the page's last item, as recorded.
    last_time = int(made[3].created.timestamp())
    assert nxt["until"] == [str(last_time)]
    second = follow(first["paging"]["next"]).json()
    assert [p["id"] for p in second["data"]] == [made[2].id, made[1].id]
    third = follow(second["paging"]["next"]).json()
    assert [p["id"] for p in third["data"]] == [made[0].id]
    assert set(third["paging"]) == set(real2["paging"]) == {"previous"}
    # previous from the second page comes back to the first.
    back = follow(second["paging"]["previous"]).json()
    assert [p["id"] for p in back["data"]] == [made[4].id, made[3].id]


def test_since_and_until_filter_the_feed_on_created_time(w: World) -> None:
    sb, page = w.sb, w.page
    old = sb.add_post(page.id, "old", at=w.clock.now - timedelta(days=100))
    new = sb.add_post(page.id, "new", at=w.clock.now - timedelta(days=1))
    cut = int((w.clock.now - timedelta(days=90)).timestamp())
    assert [p["id"] for p in get(sb, f"/{page.id}/feed", since=cut).json()["data"]] == [new.id]
    assert [p["id"] for p in get(sb, f"/{page.id}/feed", until=cut).json()["data"]] == [old.id]
    assert get(sb, f"/{page.id}/feed", since="2026-10-01").json()["data"][0]["id"] == new.id


def test_feed_limit_is_at_most_100(w: World) -> None:
    for n in range(105):
        w.sb.add_post(w.page.id, f"p{n}")
    assert len(get(w.sb, f"/{w.page.id}/feed", limit=500).json()["data"]) == 100


# -- comments --------------------------------------------------------------------------------
def _thread(w: World) -> tuple[str, list[str]]:
    """A post with two comments and two replies, made a minute apart (chronological ids)."""
    sb, page = w.sb, w.page
    post = sb.add_post(page.id, "post", at=w.clock.now - timedelta(hours=2))
    at = w.clock.now - timedelta(hours=1)
    c1 = sb.add_comment(post.id, w.ann, "first", at=at)
    c2 = sb.add_comment(post.id, w.bob, "second", at=at + timedelta(minutes=1))
    r1 = sb.add_reply(c1.id, page, "answer to first", at=at + timedelta(minutes=2))
    r2 = sb.add_reply(c2.id, w.bob, "more from bob", at=at + timedelta(minutes=3))
    return post.id, [c1.id, c2.id, r1.id, r2.id]


def test_stream_comments_have_the_recorded_shape_summary_and_paging(w: World) -> None:
    post, (c1, c2, r1, r2) = _thread(w)
    real1 = recorded(PF + "apidata/comments/comments_p1.json")
    real2 = recorded(PF + "apidata/comments/comments_p2.json")
    # The recording's fields (its Page did not let the caller see ids, PPCA) plus id and from
    # as the recorder's own Page answered them (models/comment.json).
    fields = "id,from,comment_count,created_time,like_count,message,permalink_url"
    real_item = merged(real1["data"][0], recorded(PF + "models/comment.json"))
    first = get(w.sb, f"/{post}/comments", fields=fields, summary=1, filter="stream", limit=3)
    body = first.json()
    assert_same_shape(body["data"], [real_item], "comments")
    # All levels, in chronological order: the replies between the comments by time.
    assert [c["id"] for c in body["data"]] == [c1, c2, r1]
    assert body["summary"] == {"order": "chronological", "total_count": 4, "can_comment": True}
    assert set(body["summary"]) == set(real1["summary"])
    assert set(body["paging"]) == set(real1["paging"]) == {"cursors", "next"}
    assert set(body["paging"]["cursors"]) == {"before", "after"}
    assert body["data"][0]["comment_count"] == 1
    link = query(body["paging"]["next"])
    assert link["filter"] == ["stream"] and link["summary"] == ["1"] and link["limit"] == ["3"]
    last = follow(body["paging"]["next"]).json()
    assert [c["id"] for c in last["data"]] == [r2]
    assert set(last["paging"]) == set(real2["paging"]) == {"cursors", "previous"}
    # A reply's permalink names its comment and itself, as recorded.
    permalink = last["data"][0]["permalink_url"]
    assert f"comment_id={c2.split('_')[1]}&reply_comment_id={r2.split('_')[1]}" in permalink
    assert "reply_comment_id=" in real1["data"][5]["permalink_url"]


def test_comment_order_filter_and_replies(w: World) -> None:
    post, (c1, c2, r1, r2) = _thread(w)
    assert ids(get(w.sb, f"/{post}/comments")) == [c1, c2]  # toplevel by default
    stream_rev = get(w.sb, f"/{post}/comments", filter="stream", order="reverse_chronological")
    assert ids(stream_rev) == [r2, r1, c2, c1]
    assert ids(get(w.sb, f"/{c1}/comments")) == [r1]
    reply = get(w.sb, f"/{r1}", fields="id,from,message,parent{id}").json()
    assert reply["parent"] == {"id": c1} and reply["from"]["id"] == w.page.id
    # Default fields of a comment, as restfb recorded them in an expansion.
    real = recorded("restfb/v5_0/post-with-comment.json")["comments"]["data"][0]
    assert set(get(w.sb, f"/{c1}").json()) == set(real)
    # A reply to a reply belongs to the top-level comment (two levels on Facebook).
    deeper = w.sb.add_reply(r1, w.ann, "and to you")
    assert get(w.sb, f"/{deeper.id}", fields="parent{id}").json()["parent"]["id"] == c1
    assert get(w.sb, f"/{post}/comments", filter="sideways").json()["error"]["code"] == 100


def test_comment_filter_and_order_are_refused_filter_first(w: World) -> None:
    post, _ = _thread(w)

    def message(**params: str) -> str:
        return str(get(w.sb, f"/{post}/comments", **params).json()["error"]["message"])

    filter_error = "(#100) param filter must be one of {TOPLEVEL, STREAM}"
    order_error = "(#100) param order must be one of {CHRONOLOGICAL, REVERSE_CHRONOLOGICAL}"
    assert message(order="sideways") == order_error
    assert message(filter="sideways", order="sideways") == filter_error


def test_comment_node_has_the_recorded_shape(w: World) -> None:
    _, (c1, *_) = _thread(w)
    real = merged(
        recorded(PF + "models/comment.json"), recorded(PF + "apidata/comments/comment_info.json")
    )
    fields = ",".join(k for k in real if k != "attachment")
    ours = get(w.sb, f"/{c1}", fields=fields).json()
    assert set(ours) == set(real) - {"attachment"}
    assert_same_shape(ours, real, "comment")
    post_id = w.sb.store.comments[c1].post_id
    assert ours["id"].split("_")[0] == post_id.split("_")[1]  # {post-id suffix}_{comment id}


def test_expanded_comments_carry_their_own_paging(w: World) -> None:
    post, (c1, c2, _r1, _r2) = _thread(w)
    real = recorded("restfb/v5_0/post-with-comment.json")
    body = get(w.sb, f"/{post}", fields="comments.limit(1){from,message,created_time}").json()
    comments = body["comments"]
    # The recorded expansion fit in one page (cursors only); this one goes on.
    link = comments["paging"].pop("next")
    assert_same_shape(body, real, "post")
    assert [c["id"] for c in comments["data"]] == [c1]
    assert f"/v25.0/{post}/comments?" in link
    assert query(link)["fields"] == ["from,message,created_time"]
    more = follow(link).json()
    assert [c["id"] for c in more["data"]] == [c2]
    assert set(more["data"][0]) == {"from", "message", "created_time", "id"}


def test_a_new_comment_moves_updated_time_not_the_feed_order(w: World) -> None:
    sb, page = w.sb, w.page
    old = sb.add_post(page.id, "old", at=w.clock.now - timedelta(days=60))
    new = sb.add_post(page.id, "new", at=w.clock.now - timedelta(days=1))
    before = get(sb, f"/{old.id}", fields="updated_time").json()["updated_time"]
    w.clock.advance(minutes=5)
    sb.add_comment(old.id, w.ann, "still broken")
    feed = get(sb, f"/{page.id}/feed", fields="id,updated_time").json()["data"]
    assert [p["id"] for p in feed] == [new.id, old.id]
    assert feed[1]["updated_time"] > before


# -- deletion --------------------------------------------------------------------------------
def test_deleted_objects_answer_the_recorded_error_and_leave_lists(w: World) -> None:
    post, (c1, c2, r1, r2) = _thread(w)
    w.sb.delete(c1)
    gone = get(w.sb, f"/{c1}")
    real = recorded("restfb/batch/batch-first-error.json")[0]
    assert gone.status_code == real["code"] == 400
    real_error = json.loads(real["body"])["error"]
    error = gone.json()["error"]
    assert set(error) == set(real_error) | {"error_subcode"}
    assert (error["code"], error["error_subcode"], error["type"]) == (
        100,
        33,
        "GraphMethodException",
    )
    assert error["message"].startswith(f"Unsupported get request. Object with ID '{c1}' does not")
    header = gone.headers["WWW-Authenticate"]
    assert header.startswith('OAuth "Facebook Platform" "invalid_request"')
    # The comment and its reply are gone from every list; the reply answers as deleted too.
    ids = [c["id"] for c in get(w.sb, f"/{post}/comments", filter="stream").json()["data"]]
    assert ids == [c2, r2]
    assert get(w.sb, f"/{r1}").json()["error"]["error_subcode"] == 33
    w.sb.delete(post)
    assert get(w.sb, f"/{post}/comments").json()["error"]["code"] == 100
    assert get(w.sb, f"/{w.page.id}/feed").json() == {"data": []}


def test_comments_of_a_deleted_post_or_media_answer_as_deleted(w: World) -> None:
    post, (c1, _c2, r1, _r2) = _thread(w)
    _account, media, (c0, _i1, _i2) = _instagram(w)
    reply = w.sb.add_ig_comment(media, w.sb.store.ig_users["u1"], "reply", reply_to=c0)
    w.sb.delete(post)
    w.sb.delete(media)
    for object_id, type_ in ((c1, "GraphMethodException"), (r1, "GraphMethodException")):
        error = get(w.sb, f"/{object_id}").json()["error"]
        assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, type_)
    for object_id in (c0, reply.id):
        error = get(w.sb, f"/{object_id}").json()["error"]
        assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "IGApiException")


# -- from withheld ---------------------------------------------------------------------------
def test_without_advanced_access_from_is_withheld_for_people_without_a_role(
    w: World, clock: Clock
) -> None:
    sb = w.sb
    page = sb.add_page("Standard", token="standard-token", advanced_access=False)
    tester = sb.add_person("Tess Tester", has_role=True)
    post = sb.add_post(page.id, "post")
    stranger = sb.add_comment(post.id, w.ann, "hi")
    role = sb.add_comment(post.id, tester, "hello")
    mine = sb.add_comment(post.id, page, "welcome")
    data = get(sb, f"/{post.id}/comments", "standard-token", fields="id,from,message").json()
    by_id = {c["id"]: c for c in data["data"]}
    assert "from" not in by_id[stranger.id] and by_id[stranger.id]["message"] == "hi"
    assert by_id[role.id]["from"]["name"] == "Tess Tester"
    assert by_id[mine.id]["from"] == {"name": "Standard", "id": page.id}
    # Their Messenger threads are not listed at all; a role holder's is.
    sb.add_message(page.id, w.ann, "help")
    sb.add_message(page.id, tester, "test")

    def names() -> set[str]:
        threads = get(sb, f"/{page.id}/conversations", "standard-token", fields="participants")
        return {p["name"] for t in threads.json()["data"] for p in t["participants"]["data"]}

    assert names() == {"Tess Tester", "Standard"}
    # App Review passed: everyone shows.
    sb.set_advanced_access(page.id, True)
    assert names() == {"Tess Tester", "Ann Customer", "Standard"}
    again = get(sb, f"/{stranger.id}", "standard-token", fields="from").json()
    assert again["from"]["name"] == "Ann Customer"


def test_a_user_token_reads_no_comments_and_no_people(w: World) -> None:
    post, (c1, *_) = _thread(w)
    # "/comments ... returns empty data if you read it with a User access token"; "User
    # information will not be in included in responses unless you make the request with a
    # Page access token" (Graph reference: object comments, Page feed).
    assert get(w.sb, f"/{post}/comments", USER_TOKEN).json() == {"data": []}
    assert get(w.sb, f"/{c1}/comments", USER_TOKEN).json() == {"data": []}
    visit = w.sb.add_visitor_post(w.page.id, w.ann, "hello")
    assert "from" not in get(w.sb, f"/{visit.id}", USER_TOKEN, fields="from").json()
    assert "from" in get(w.sb, f"/{visit.id}", fields="from").json()


def test_from_withheld_on_one_item(w: World) -> None:
    post = w.sb.add_post(w.page.id, "post")
    hidden = w.sb.add_comment(post.id, w.ann, "who am I", withhold_from=True)
    shown = w.sb.add_comment(post.id, w.bob, "bob here")
    data = get(w.sb, f"/{post.id}/comments", fields="id,from").json()["data"]
    assert data == [
        {"id": hidden.id},
        {"from": {"name": "Bob Buyer", "id": w.sb.scoped_id(w.bob, w.page.id)}, "id": shown.id},
    ]


# -- Messenger -------------------------------------------------------------------------------
def test_conversations_and_messages_have_the_recorded_shapes(w: World) -> None:
    sb, page = w.sb, w.page
    sb.add_message(page.id, w.ann, "my parcel?")
    w.clock.advance(minutes=1)
    sb.add_message(page.id, w.ann, "it's late", from_page=False)
    sb.add_message(page.id, w.ann, "on its way", from_page=True)
    w.clock.advance(minutes=1)
    sb.add_message(page.id, w.bob, "hello")
    real_conv = merged(
        recorded(PF + "models/conversation.json"),
        recorded(PF + "apidata/conversations/cvs_info.json"),
    )
    fields = ",".join(real_conv)
    listed = get(sb, f"/{page.id}/conversations", platform="messenger", fields=fields).json()
    assert_same_shape(listed["data"], [real_conv], "conversations")
    # Most recently active first; participants with the Page-scoped id as in comments.
    first, second = listed["data"]
    assert second["participants"]["data"][0] == {
        "name": "Ann Customer",
        "email": f"{sb.scoped_id(w.ann, page.id)}@facebook.com",
        "id": sb.scoped_id(w.ann, page.id),
    }
    assert first["updated_time"] > second["updated_time"]
    assert set(get(sb, f"/{page.id}/conversations").json()["data"][0]) == {"id", "updated_time"}
    real_msg = recorded(PF + "models/message.json")
    msg_fields = "id,created_time,from,to,message,tags"
    messages = get(sb, f"/{second['id']}/messages", fields=msg_fields).json()
    assert_same_shape(messages["data"], [real_msg], "messages")
    assert [m["message"] for m in messages["data"]] == ["on its way", "it's late", "my parcel?"]
    assert messages["data"][0]["from"]["id"] == page.id
    # Default fields of a message: id and created_time (Conversations API).
    assert set(get(sb, f"/{messages['data'][0]['id']}").json()) == {"id", "created_time"}
    filtered = get(sb, f"/{page.id}/conversations", user_id=sb.scoped_id(w.bob, page.id))
    assert [c["id"] for c in filtered.json()["data"]] == [first["id"]]


def test_only_the_20_newest_messages_carry_details(w: World) -> None:
    sb, page = w.sb, w.page
    made = [sb.add_message(page.id, w.ann, f"m{n}") for n in range(25)]
    conv = sb.conversation(page.id, w.ann)
    fields = "messages.limit(30){id,created_time,from,message}"
    data = get(sb, f"/{conv.id}", fields=fields).json()["messages"]["data"]
    assert len(data) == 25
    assert all("message" in m for m in data[:20])
    assert all(set(m) == {"id", "created_time"} for m in data[20:])
    old = get(sb, f"/{made[0].id}", fields="id,message").json()["error"]
    assert (old["code"], old["error_subcode"]) == (100, 33)
    assert get(sb, f"/{made[24].id}", fields="message").json()["message"] == "m24"
    assert get(sb, f"/{page.id}/conversations", since=1).json()["error"]["code"] == 100


# -- Instagram -------------------------------------------------------------------------------
def _instagram(w: World) -> tuple[str, str, list[str]]:
    sb = w.sb
    account = sb.add_instagram_account(w.page.id, "acme")
    fan = sb.add_ig_user("fan_one")
    media = sb.add_media(account.id, "new shoes", at=w.clock.now - timedelta(days=3))
    ids = []
    for n in range(3):
        at = w.clock.now - timedelta(hours=3 - n)
        ids.append(sb.add_ig_comment(media.id, fan, f"comment {n}", at=at).id)
    return account.id, media.id, ids


def test_instagram_comments_newest_first_with_the_recorded_paging(w: World) -> None:
    _account, media, (c0, c1, c2) = _instagram(w)
    real1 = recorded(IG + "apidata/medias/comments_p1.json")
    real2 = recorded(IG + "apidata/medias/comments_p2.json")
    first = get(w.sb, f"/{media}/comments", limit=2).json()
    assert_same_shape(first, real1, "ig comments")
    assert list(first["data"][0]) == list(real1["data"][0])  # default fields, in that order
    assert [c["id"] for c in first["data"]] == [c2, c1]
    assert set(first["paging"]) == {"cursors", "next"} and set(first["paging"]["cursors"]) == {
        "after"
    }
    last = follow(first["paging"]["next"]).json()
    assert_same_shape(last, real2, "ig comments p2")
    assert [c["id"] for c in last["data"]] == [c0] and "paging" not in last


def test_instagram_comments_are_at_most_50_a_call_and_top_level_only(w: World) -> None:
    sb = w.sb
    _account, media, (c0, *_) = _instagram(w)
    fan = sb.add_ig_user("fan_two")
    for n in range(60):
        sb.add_ig_comment(media, fan, f"more {n}")
    sb.add_ig_comment(media, fan, "a reply", reply_to=c0)
    page = get(sb, f"/{media}/comments", limit=100).json()
    assert len(page["data"]) == 50 and "next" in page["paging"]
    everything = [*page["data"], *follow(page["paging"]["next"]).json()["data"]]
    assert len(everything) == 63  # replies are not listed
    counted = get(sb, f"/{media}", fields="comments_count").json()["comments_count"]
    assert counted == 64  # "Includes replies on comments"


def test_instagram_comment_fields_replies_and_the_owner_s_user(w: World) -> None:
    sb = w.sb
    account_id, media, (c0, *_) = _instagram(w)
    account = sb.store.ig_accounts[account_id]
    reply = sb.add_ig_comment(media, account, "@fan_one thanks!", reply_to=c0)
    real_replies = recorded(IG + "apidata/comments/replies.json")
    replies = get(sb, f"/{c0}/replies").json()
    assert_same_shape(replies, real_replies, "replies")
    assert [r["id"] for r in replies["data"]] == [reply.id]
    real = merged(
        recorded(IG + "models/ig_comment.json"),
        recorded("restfb/instagram/comment_missing_user.json"),
        recorded(IG + "apidata/comments/comment_fields.json"),
    )
    fields = "id,text,timestamp,username,like_count,hidden,media,user,replies"
    theirs = get(sb, f"/{c0}", fields=fields + ",from").json()
    assert_same_shape({k: v for k, v in theirs.items() if k != "from"}, real, "ig comment")
    assert "user" not in theirs and theirs["username"] == "fan_one"
    fan = sb.store.ig_users["u1"]
    assert theirs["from"] == {"id": sb.igsid(fan, account_id), "username": "fan_one"}
    ours = get(sb, f"/{reply.id}", fields=fields + ",parent_id").json()
    assert ours["user"] == {"id": account_id} and ours["parent_id"] == c0
    sb.rename_ig_user(fan, "fan_renamed")
    after = get(sb, f"/{c0}", fields="from").json()["from"]
    assert after == {"id": sb.igsid(fan, account_id), "username": "fan_renamed"}


def test_instagram_media_tags_and_mentions_have_the_recorded_shapes(w: World) -> None:
    sb = w.sb
    account_id, media, _ = _instagram(w)
    other = sb.add_ig_user("someone")
    tagging = sb.add_others_media(other, "Cute.. #cute @acme", tagged={account_id})
    mention = sb.add_ig_comment(tagging.id, other, "@acme good")
    real_tags = recorded(IG + "apidata/users/tagged_medias.json")
    fields = "id,caption,comments_count,like_count,media_type,permalink,timestamp"
    tags = get(sb, f"/{account_id}/tags", fields=fields).json()
    assert_same_shape(tags["data"], real_tags["data"], "tags")
    assert [m["id"] for m in tags["data"]] == [tagging.id]
    listed = get(sb, f"/{account_id}/media", fields=fields).json()["data"]
    assert_same_shape(listed, real_tags["data"], "media")
    assert [m["id"] for m in listed] == [media]
    real_mc = recorded(IG + "apidata/users/mentioned_comment.json")
    mc = get(
        sb,
        f"/{account_id}",
        fields=f"mentioned_comment.comment_id({mention.id}){{id,like_count,text,timestamp,username}}",
    ).json()
    assert_same_shape(mc, real_mc, "mentioned_comment")
    assert mc["mentioned_comment"]["text"] == "@acme good" and mc["id"] == account_id
    real_mm = recorded(IG + "apidata/users/mentioned_media.json")
    mm_fields = "caption,comments_count,id,like_count,media_type,timestamp"
    mm = get(
        sb, f"/{account_id}", fields=f"mentioned_media.media_id({tagging.id}){{{mm_fields}}}"
    ).json()
    assert_same_shape(mm, real_mm, "mentioned_media")
    # Someone else's media cannot be read directly; a comment that does not mention us either.
    assert get(sb, f"/{tagging.id}").json()["error"]["type"] == "IGApiException"
    plain = sb.add_ig_comment(tagging.id, other, "no mention")
    refused = get(sb, f"/{account_id}", fields=f"mentioned_comment.comment_id({plain.id}){{text}}")
    assert refused.json()["error"]["error_subcode"] == 33


def test_instagram_deleted_comment_and_its_replies(w: World) -> None:
    sb = w.sb
    _account_id, media, (c0, c1, c2) = _instagram(w)
    reply = sb.add_ig_comment(media, sb.store.ig_users["u1"], "reply", reply_to=c0)
    sb.delete(c0)
    # "You cannot get replies to a comment that has been deleted."
    gone = get(sb, f"/{c0}/replies").json()["error"]
    assert (gone["code"], gone["error_subcode"], gone["type"]) == (100, 33, "IGApiException")
    assert get(sb, f"/{reply.id}").json()["error"]["code"] == 100
    assert [c["id"] for c in get(sb, f"/{media}/comments").json()["data"]] == [c2, c1]
    assert get(sb, f"/{media}", fields="comments_count").json()["comments_count"] == 2


# -- /me, /me/accounts, versions, fields -----------------------------------------------------
def test_me_accounts_with_a_user_token_has_the_recorded_shape(w: World) -> None:
    real = recorded("python-facebook/base/user_accounts_token.json")
    body = get(w.sb, "/me/accounts", USER_TOKEN).json()
    assert_same_shape(body, real, "accounts")
    assert body["data"][0]["access_token"] == PAGE_TOKEN and body["data"][0]["id"] == w.page.id
    assert get(w.sb, "/me", PAGE_TOKEN).json() == {"name": "Acme", "id": w.page.id}
    refused = get(w.sb, "/me/accounts", PAGE_TOKEN).json()["error"]
    assert refused["message"] == (
        "(#100) Tried accessing nonexisting field (accounts) on node type (Page)"
    )


def test_versions_unknown_paths_and_fields(w: World) -> None:
    old = get(w.sb, "/me", version="v10.0")
    # "once a version is no longer usable, any calls made to it will be defaulted to the next
    # oldest usable version"
    assert old.status_code == 200 and old.headers["Facebook-API-Version"] == "v21.0"
    assert get(w.sb, "/me").headers["Facebook-API-Version"] == "v25.0"
    assert get(w.sb, "/me", version="v99.0").json()["error"]["code"] == 2500
    assert get(w.sb, f"/{w.page.id}/nothing").json()["error"]["code"] == 2500
    post = w.sb.add_post(w.page.id, "x")
    unknown = get(w.sb, f"/{w.page.id}/feed", fields="id,nonsense").json()["error"]
    assert "nonexisting field (nonsense) on node type (Post)" in unknown["message"]
    # Fields Graph has but the stand-in does not model are left out, not refused.
    assert get(w.sb, f"/{post.id}", fields="id,full_picture,shares").json() == {"id": post.id}
    assert get(w.sb, f"/{post.id}", fields="comments{id").json()["error"]["code"] == 100


def test_the_fields_parser_reads_the_recorded_expansions() -> None:
    fields = recorded_fields(PF + "apidata/posts/feeds_default_fields_p1.json")
    specs = {s.key: s for s in parse_fields(fields)}
    assert specs["comments"].modifiers == {"filter": "stream", "summary": "true", "limit": "0"}
    assert specs["like"].name == "reactions" and specs["like"].modifiers["type"] == "LIKE"
    attachments = specs["attachments"]
    assert attachments.sub is not None and [s.name for s in attachments.sub][:2] == [
        "description",
        "description_tags",
    ]
    assert attachments.sub_text.startswith("description,description_tags")
    for bad in ("a{b", "a}", "a.limit(1", "a.limit", ",{"):
        with pytest.raises(FieldSyntaxError):
            parse_fields(bad)
