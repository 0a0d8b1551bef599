"""connectors.meta.parse on the recorded bodies (tests/fixtures/meta/, README there).

A few shapes have no recording (a Page reply read with a Page token, an Instagram comment
with ``from``, a brand message): those tests start from a recorded body and change only the
field the shape is about, and say so.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from support import FIXTURES

from connectors.meta.parse import (
    NETWORK_FACEBOOK,
    NETWORK_INSTAGRAM,
    Translated,
    conversation_url,
    mentioned,
    parse_fb_comments,
    parse_fb_posts,
    parse_ig_comments,
    parse_ig_media,
    parse_messages,
    scoped_id,
    split_scoped,
)
from syncd.model import Account, Author, Direction, Interaction, Stream

META = FIXTURES / "meta"
FB = "python-facebook/facebook"
IG = "python-facebook/instagram"
# The recorder's own Page [README: models/comment.json, models/conversation.json].
PAGE = Account(NETWORK_FACEBOOK, "MyLife", "2121008874780932")
PERSON = "2711636948859886"  # Kun Liu, on that Page
# The recorder's Instagram account: the id of mentioned_*.json, the user of ig_comment.json.
IG_ACCOUNT = Account(NETWORK_INSTAGRAM, "ikroskun", "17841406338772941")


def body(path: str) -> Any:
    return json.loads((META / path).read_text(encoding="utf-8"))


def withheld(got: Translated) -> list[Interaction]:
    """The interactions whose author Meta withheld: no author, and no customer to attribute
    them (or the brand's reply to them) to."""
    return [i for i in got.interactions if i.counterpart_id is None]


def known(got: Translated) -> list[Interaction]:
    return [i for i in got.interactions if i.counterpart_id is not None]


# -- identity ---------------------------------------------------------------------------------
def test_scoped_ids_round_trip_and_refuse_other_text() -> None:
    assert scoped_id("2121008874780932", PERSON) == f"2121008874780932:{PERSON}"
    assert split_scoped(f"2121008874780932:{PERSON}") == ("2121008874780932", PERSON)
    for bad in ("2711636948859886", ":1", "1:", "1:2:3", "unknown-author"):
        with pytest.raises(ValueError):
            split_scoped(bad)


def test_a_comment_by_a_person_is_inbound_keyed_on_the_page_scoped_id() -> None:
    comment = body(f"{FB}/models/comment.json")
    got = parse_fb_comments([comment], PAGE, post_id="2121008874780932_2954961744718970")
    [item] = got.interactions
    [author] = got.authors
    assert author == Author(
        NETWORK_FACEBOOK, f"{PAGE.user_id}:{PERSON}", handle=None, display_name="Kun Liu"
    )
    assert (item.network, item.post_id) == (NETWORK_FACEBOOK, "2954961744718970_2966313500250461")
    assert item.external_id == "facebook:2954961744718970_2966313500250461"
    assert (item.direction, item.stream) == (Direction.INBOUND, Stream.MENTIONS)
    assert item.author_id == item.counterpart_id == author.user_id
    assert item.text == "My Nice Car "  # as written; the photo beside it is in raw
    assert item.created_at == datetime(2021, 7, 23, 8, 35, 18, tzinfo=UTC)
    assert item.url == comment["permalink_url"]
    assert item.account == "MyLife"
    assert item.in_reply_to_post_id == item.conversation_id == "2121008874780932_2954961744718970"
    assert got.quarantined == () and withheld(got) == []


def test_the_same_person_under_two_pages_is_two_identities() -> None:
    comment = body(f"{FB}/models/comment.json")
    other = Account(NETWORK_FACEBOOK, "Other", "999")
    one = parse_fb_comments([comment], PAGE).authors[0].user_id
    two = parse_fb_comments([comment], other).authors[0].user_id
    assert one != two and one.endswith(PERSON) and two.endswith(PERSON)


def test_the_messenger_id_is_the_comment_id_on_the_same_page() -> None:
    # models/comment.json and models/conversation.json: the same person, the same number.
    comment = parse_fb_comments([body(f"{FB}/models/comment.json")], PAGE)
    message = parse_messages([body(f"{FB}/models/message.json")], PAGE)
    assert comment.authors[0].user_id == message.authors[0].user_id


# -- Facebook comments --------------------------------------------------------------------------
def test_comments_without_ids_are_quarantined_with_the_reason() -> None:
    # Read on a Page the caller does not manage: Page Public Content Access gives no ids.
    recorded = body(f"{FB}/apidata/comments/comments_p1.json")["data"]
    got = parse_fb_comments(recorded, PAGE)
    assert len(got.quarantined) == len(recorded) == 10
    assert got.interactions == ()
    assert all("moderate the Page" in q.reason for q in got.quarantined)
    assert got.quarantined[0].raw == recorded[0]


def test_a_page_reply_is_outbound_to_the_person_answered() -> None:
    # comments_p1 records who replied to whom only in the permalinks; here the ids and
    # authors a Page token gets are added: the person's comment, then the Page's reply.
    recorded = body(f"{FB}/apidata/comments/comments_p1.json")["data"]
    question, reply = copy.deepcopy(recorded[1]), copy.deepcopy(recorded[5])
    assert "reply_comment_id=10158409983033553" in reply["permalink_url"]
    question |= {"id": "10158407654328553_10158407903973553", "from": {"id": "42", "name": "Q"}}
    reply |= {"id": "10158407654328553_10158409983033553", "from": {"id": PAGE.user_id}}
    got = parse_fb_comments([question, reply], PAGE, post_id="19292868552_10158407654328553")
    asked, answered = got.interactions
    assert asked.direction is Direction.INBOUND
    assert (answered.direction, answered.stream) == (Direction.OUTBOUND, Stream.REPLIES)
    assert answered.counterpart_id == asked.author_id == f"{PAGE.user_id}:42"
    assert answered.author_id == PAGE.user_id
    # The parent made from the permalink, as comment_info.json makes a comment's own id.
    assert answered.in_reply_to_post_id == question["id"]
    assert [a.user_id for a in got.authors] == [f"{PAGE.user_id}:42"]


def test_a_page_reply_to_a_comment_read_earlier_uses_what_was_read() -> None:
    reply = {
        "id": "1_3",
        "from": {"id": PAGE.user_id, "name": "MyLife"},
        "message": "Thanks!",
        "created_time": "2021-08-11T23:22:14+0000",
        "parent": {"id": "1_2"},
    }
    first = parse_fb_comments(
        [
            {
                "id": "1_2",
                "from": {"id": "7", "name": "A"},
                "message": "?",
                "created_time": "2021-08-11T20:00:00+0000",
            }
        ],
        PAGE,
    )
    later = parse_fb_comments([reply], PAGE, parents=first.posted_by)
    [item] = later.interactions
    assert item.counterpart_id == f"{PAGE.user_id}:7"
    assert later.authors[0].display_name == "A"
    # A reply to a comment Meta gave no author: the Page's, addressed to no one known.
    faceless = parse_fb_comments([reply], PAGE, parents={"1_2": None})
    [item] = faceless.interactions
    assert (item.direction, item.author_id, item.counterpart_id) == (
        Direction.OUTBOUND,
        PAGE.user_id,
        None,
    )
    assert faceless.authors == ()
    unknown = parse_fb_comments([reply], PAGE)
    assert unknown.interactions == ()
    assert (
        "1_2" in unknown.quarantined[0].reason and "was not read" in unknown.quarantined[0].reason
    )


def test_the_page_talking_to_no_one_or_to_itself_is_left_out() -> None:
    own = {
        "id": "1_2",
        "from": {"id": PAGE.user_id},
        "message": "New opening hours",
        "created_time": "2021-08-11T20:00:00+0000",
    }
    to_itself = own | {"id": "1_3", "parent": {"id": "1_2"}}
    got = parse_fb_comments([own, to_itself], PAGE)
    assert got.interactions == () and got.quarantined == ()


def test_a_comment_without_from_is_withheld_not_guessed() -> None:
    recorded = body("restfb/v5_0/post-with-comment.json")
    comment = copy.deepcopy(recorded["comments"]["data"][0])
    del comment["from"]
    page = Account(NETWORK_FACEBOOK, "p", "1234567890123")
    got = parse_fb_comments([comment], page, post_id=recorded["id"])
    assert got.authors == ()
    [held] = got.interactions
    assert held.author_id is None and held.counterpart_id is None
    assert held.text == "grandioses grau"
    assert got.posted_by == {"123456789_9876543": None}


def test_expanded_comments_of_a_post_as_recorded() -> None:
    recorded = body("restfb/v5_0/post-with-comment.json")
    page = Account(NETWORK_FACEBOOK, "p", "1234567890123")
    got = parse_fb_comments(recorded["comments"]["data"], page, post_id=recorded["id"])
    [item] = got.interactions
    assert item.author_id == "1234567890123:987654321"
    assert item.url == ""  # no permalink asked for, and no post URL given


def test_an_attachment_alone_is_described() -> None:
    comment = body(f"{FB}/models/comment.json")
    del comment["message"]
    [item] = parse_fb_comments([comment], PAGE).interactions
    assert item.text == f"[photo: {comment['attachment']['url']}]"
    sticker = comment | {"attachment": {"type": "sticker", "url": "https://x.invalid/s.png"}}
    assert parse_fb_comments([sticker], PAGE).interactions[0].text == "[sticker]"
    bare = {k: v for k, v in comment.items() if k != "attachment"}
    assert "no message and no attachment" in parse_fb_comments([bare], PAGE).quarantined[0].reason


def test_a_bad_item_is_quarantined_and_the_rest_go_through() -> None:
    good = body(f"{FB}/models/comment.json")
    items: list[Any] = [
        "not an object",
        good | {"id": "1_2", "created_time": "yesterday"},
        good | {"id": "1_3", "created_time": "2021-07-23T08:35:18"},  # no offset
        good | {"id": "1_" + "9" * 250},  # would not fit the CRM's external id
        good | {"id": "1_4", "from": "Kun"},
        good,
    ]
    got = parse_fb_comments(items, PAGE)
    assert [i.post_id for i in got.interactions] == [good["id"]]
    reasons = [q.reason for q in got.quarantined]
    assert len(reasons) == 5
    assert "not an object" in reasons[0]
    assert "not an ISO time" in reasons[1] and "no offset" in reasons[2]
    assert "255-character external id" in reasons[3]
    assert "from is not an object" in reasons[4]
    assert got.quarantined[0].raw == {"item": "not an object"}
    assert got.quarantined[1].item_id == "1_2"


# -- Facebook posts by others ------------------------------------------------------------------
def test_visitor_posts_are_inbound_and_tagging_posts_without_from_are_withheld() -> None:
    post = body(f"{FB}/apidata/posts/feeds_default_fields_p1.json")["data"][0]
    visitor = post | {"from": {"id": "55", "name": "Visitor"}}
    own = post | {"id": "19292868552_1", "from": {"id": PAGE.user_id, "name": "MyLife"}}
    tagging = post | {"id": "19292868552_2"}  # a user's post tagging the Page: no from
    got = parse_fb_posts([visitor, own, tagging], PAGE)
    [item] = known(got)
    assert item.author_id == f"{PAGE.user_id}:55"
    assert item.url == post["permalink_url"] and item.text == post["message"]
    assert item.conversation_id == post["id"]
    [held] = withheld(got)
    assert held.post_id == "19292868552_2" and held.author_id is None
    assert [a.user_id for a in got.authors] == [item.author_id]


def test_a_post_without_words_is_its_attachments() -> None:
    post = body(f"{FB}/apidata/posts/feeds_default_fields_p1.json")["data"][0]
    silent = {k: v for k, v in post.items() if k != "message"} | {"from": {"id": "5"}}
    [item] = parse_fb_posts([silent], PAGE).interactions
    assert item.text == f"[photo: {post['attachments']['data'][0]['url']}]"


# -- Messenger ----------------------------------------------------------------------------------
def test_a_message_from_the_person_is_inbound() -> None:
    thread = body(f"{FB}/models/conversation.json")
    info = body(f"{FB}/apidata/conversations/cvs_info.json")
    got = parse_messages(
        [body(f"{FB}/models/message.json")],
        PAGE,
        conversation_id=thread["id"],
        conversation_url=conversation_url(info["link"]),
        participants=thread["participants"]["data"],
    )
    [item] = got.interactions
    assert (item.direction, item.text) == (Direction.INBOUND, "Love is peace!😏")
    assert item.url == "https://www.facebook.com/2121008874780932/inbox/2582605345287947/"
    assert item.conversation_id == "t_587956915396498"
    [author] = got.authors
    assert author.display_name == "Kun Liu" and author.handle is None  # the email is not kept


def test_the_pages_message_is_outbound_to_the_other_participant() -> None:
    # models/message.json with from and to swapped: the Page writing to Kun Liu.
    message = body(f"{FB}/models/message.json")
    message["from"], message["to"] = message["to"]["data"][0], {"data": [message["from"]]}
    [item] = parse_messages([message], PAGE).interactions
    assert (item.direction, item.stream) == (Direction.OUTBOUND, Stream.REPLIES)
    assert item.counterpart_id == f"{PAGE.user_id}:{PERSON}"
    # Without "to", the thread's participants say who it was for.
    del message["to"]
    participants = body(f"{FB}/models/conversation.json")["participants"]["data"]
    [again] = parse_messages([message], PAGE, participants=participants).interactions
    assert again.counterpart_id == item.counterpart_id
    assert "recipient" in parse_messages([message], PAGE).quarantined[0].reason


def test_a_message_with_only_an_attachment_is_described() -> None:
    [item] = parse_messages([body(f"{FB}/apidata/messages/message_info.json")], PAGE).interactions
    assert item.text == "[image: image-651143212510248]"


def test_an_attachment_withheld_in_the_eu_keeps_its_notice() -> None:
    recorded = body("restfb/v7_0/message-eu.json")  # no time, no from: as recorded
    got = parse_messages([recorded], PAGE)
    assert "created_time is missing" in got.quarantined[0].reason
    dated = recorded | {"created_time": "2021-02-03T10:00:00+0000"}
    [held] = withheld(parse_messages([dated], PAGE))
    assert held.text.startswith("[attachment: Media not available due to new privacy rules")


# -- Instagram ----------------------------------------------------------------------------------
def test_instagram_comments_with_from_are_keyed_on_the_igsid_per_account() -> None:
    # comments_p1.json asked for the default fields; here with the from{id,username} the
    # current API gives (changelog 2021-10-20).
    recorded = body(f"{IG}/apidata/medias/comments_p1.json")["data"]
    first = recorded[0] | {"from": {"id": "1789", "username": "fan.page"}}
    got = parse_ig_comments(
        [first],
        IG_ACCOUNT,
        media_id="17846368219941692",
        media_url="https://www.instagram.com/p/B8gQCApHMT-/",
    )
    [item] = got.interactions
    assert item.network == NETWORK_INSTAGRAM and item.external_id == "instagram:17858154961981086"
    assert item.author_id == f"{IG_ACCOUNT.user_id}:1789"
    assert got.authors[0].handle == "fan.page"  # evidence, not the key
    assert item.url == "https://www.instagram.com/p/B8gQCApHMT-/"
    assert item.conversation_id == item.in_reply_to_post_id == "17846368219941692"


def test_instagram_comments_as_recorded_have_no_author() -> None:
    pages = [
        body(f"{IG}/apidata/medias/comments_p1.json")["data"],
        body(f"{IG}/apidata/medias/comments_p2.json")["data"],
        [body(f"{IG}/apidata/comments/comment_fields.json")],
        body(f"{IG}/apidata/comments/replies.json")["data"],
        [body("restfb/instagram/comment_missing_user.json")],
    ]
    for items in pages:
        got = parse_ig_comments(items, Account(NETWORK_INSTAGRAM, "brand", "1"))
        assert known(got) == [] and got.quarantined == () and got.authors == ()
        assert len(withheld(got)) == len(items)
        assert all(w.author_id is None for w in withheld(got))
    # comment_missing_user.json: the username is kept in raw, never made a key.
    [held] = withheld(
        parse_ig_comments([body("restfb/instagram/comment_missing_user.json")], IG_ACCOUNT)
    )
    assert held.raw["username"] == "bincyshiona"
    assert held.conversation_id == "17866467940233520"


def test_the_accounts_own_comment_and_its_replies() -> None:
    # ig_comment.json: the account's own top-level comment ("user" is the account) with one
    # nested reply. The comment answers no one; the reply, as recorded, has no author.
    recorded = body(f"{IG}/models/ig_comment.json")
    got = parse_ig_comments([recorded], IG_ACCOUNT)
    assert known(got) == []
    [reply] = withheld(got)
    assert reply.post_id == "17845747489952795"
    assert reply.in_reply_to_post_id == recorded["id"]
    # The same reply written by a person, and the account answering them.
    person = copy.deepcopy(recorded)
    person["replies"]["data"][0]["from"] = {"id": "77", "username": "someone"}
    answer = {
        "id": "17845747489952796",
        "text": "@someone thanks",
        "timestamp": "2020-02-24T09:20:00+0000",
        "from": {"id": IG_ACCOUNT.user_id, "username": "ikroskun"},
        "parent_id": "17845747489952795",
    }
    got = parse_ig_comments([person, answer], IG_ACCOUNT)
    asked, answered = got.interactions
    assert asked.direction is Direction.INBOUND
    assert answered.direction is Direction.OUTBOUND
    assert answered.counterpart_id == f"{IG_ACCOUNT.user_id}:77"


def test_the_brands_username_alone_marks_its_comment() -> None:
    # comment_fields.json: the username is the recorder's own account.
    own = body(f"{IG}/apidata/comments/comment_fields.json")
    got = parse_ig_comments([own], IG_ACCOUNT)
    assert got.interactions == ()
    assert got.posted_by[own["id"]] is not None


def test_tagged_and_mentioned_media_are_withheld_with_their_permalink() -> None:
    media = body(f"{IG}/apidata/users/tagged_medias.json")["data"]
    got = parse_ig_media(media, IG_ACCOUNT)
    assert known(got) == [] and got.quarantined == ()
    assert [w.text for w in withheld(got)][:2] == ["publish test", "Cat test"]
    assert withheld(got)[0].url == "https://www.instagram.com/p/CMeo7rcJvTi/"
    assert withheld(got)[-1].text == "[image]"  # no caption recorded
    [mention] = withheld(
        parse_ig_media(
            mentioned(body(f"{IG}/apidata/users/mentioned_media.json"), "mentioned_media"),
            IG_ACCOUNT,
        )
    )
    assert mention.post_id == "17889114512354744" and mention.url == ""
    assert mentioned({"id": "1"}, "mentioned_media") == []


def test_a_mentioned_comment_is_withheld() -> None:
    comment = mentioned(body(f"{IG}/apidata/users/mentioned_comment.json"), "mentioned_comment")
    [held] = withheld(parse_ig_comments(comment, Account(NETWORK_INSTAGRAM, "brand", "1")))
    assert held.text == "@ikroskun good" and held.post_id == "17967008497439572"
