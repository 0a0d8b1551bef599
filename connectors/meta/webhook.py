"""The webhook receiver's pure parts: subscription check, signature check, and the object ids a
delivery names. No HTTP server here; the listener calls these.

Where each rule comes from ([doc] Meta's webhooks documentation, "getting started", as quoted
in ``shared/research/meta.md`` §4; [recording] ``tests/fixtures/meta/restfb/``):

- Subscription: Meta's ``GET`` carries ``hub.mode=subscribe``, ``hub.verify_token`` (the
  token configured in the App Dashboard) and ``hub.challenge``; the endpoint answers the
  challenge when the token matches [doc]. The token is compared in constant time. A
  challenge is echoed only when it has the shape Meta sends (a number), so the endpoint never
  reflects arbitrary text.
- Signature: every ``POST`` carries ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
  body keyed by the app secret>`` [doc]. Compared in constant time; a delivery without it, or
  with only the older ``X-Hub-Signature`` (SHA-1), is refused.
- Hints: a delivery is a hint, never content. Only the ids are taken, each checked to be a
  Graph id, and the poller reads the object through the API, so a forged or replayed event
  can add nothing the API does not confirm. Shapes: Page ``feed`` (``item`` comment / post /
  status / photo / video / share, ``verb``, ``comment_id``, ``post_id``, ``parent_id``)
  [recording: feed-comment-add-211.json, feed-comment-remove-25.json]; Page ``mention``
  (``post_id``, and ``comment_id`` for a comment) [recording: mention-post-add-real.json,
  mention-comment-add.json]; Instagram ``mentions`` (``media_id``, and ``comment_id`` for a
  comment; the recording has both equal) [recording: instagram/wh-mentions.json]; Instagram
  ``comments`` / ``live_comments`` (``id``, ``media.id``, ``parent_id``) [doc: changelog
  2021-10-20]; Messenger (the Page's ``messages``, ``message_echoes`` and ``message_edits``
  fields): ``entry[].messaging[]`` (``standby[]`` when another app owns the thread), each
  event ``sender.id`` / ``recipient.id`` (the person's PSID and the Page), ``timestamp`` and
  ``message.mid``, ``message.is_echo`` on a message the Page sent, ``message.is_deleted`` on
  an unsent one, ``message_edit.mid`` on an edit [recording: messaging-message-basic-echo.json,
  messaging-message-edits.json, messaging-message-isdeleted.json; doc: Messenger Platform
  webhook events reference, messages / message_echoes]. A ``mid`` has several shapes
  (``mid.<digits>:<hex>``, ``m_…``, bare base64url), so it is checked for its characters only;
  the poller asks Graph for it and keeps the id Graph answers with. Instagram messaging (the
  Instagram ``messages`` field): the same ``entry[].messaging[]`` (and ``standby[]``) on
  ``object: instagram``, the entry's id the Instagram account, ``sender.id`` /
  ``recipient.id`` the person's IGSID and the account, ``message.mid``; the account's own
  messages come on the same field with ``message.is_echo`` [doc: Instagram Platform webhook
  notification examples, messaging payload; Instagram messaging webhooks reference (the
  ``messages`` field: "is_echo flag will be present to indicate that the message is sent from
  the Instagram account itself")]. No recording under a permissive licence.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.meta.parse import NETWORK_FACEBOOK, NETWORK_INSTAGRAM

SIGNATURE_HEADER = "X-Hub-Signature-256"
# Facebook object ids: digits, joined by "_" for a post ({page}_{post}) or a comment
# ({post}_{comment}) [recording: the webhooks]; Instagram ids are digits.
_FB_ID = re.compile(r"\d{1,40}(?:_\d{1,40}){0,2}")
_IG_ID = re.compile(r"\d{1,40}")
# A Messenger message id as webhooks give it: letters, digits and ``._:$-`` (no ``/``, ``?``,
# ``&`` or ``%``: it becomes a Graph path).
MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:$-]{1,200}")
_CHALLENGE = re.compile(r"[0-9A-Za-z_-]{1,128}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_VERBS = frozenset({"add", "edited", "edit", "remove", "hide", "unhide", "block", "unblock"})
# Page feed items that are a post of some kind; reactions, likes and the rest are not
# interactions [doc: webhooks reference for the feed field].
_FEED_POSTS = frozenset({"post", "status", "photo", "video", "share"})


def verify_subscription(params: Mapping[str, str], verify_token: str) -> str | None:
    """``hub.challenge`` to answer Meta's subscription check, or None (answer 403)."""
    if params.get("hub.mode") != "subscribe" or not verify_token:
        return None
    offered = params.get("hub.verify_token")
    challenge = params.get("hub.challenge")
    if not isinstance(offered, str) or not isinstance(challenge, str):
        return None
    if not hmac.compare_digest(offered.encode(), verify_token.encode()):
        return None
    return challenge if _CHALLENGE.fullmatch(challenge) else None


def verify_signature(body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether ``header`` (``X-Hub-Signature-256``) signs ``body`` with ``app_secret``.
    Missing, SHA-1 only, malformed or wrong: False."""
    if not header or not app_secret:
        return False
    found = _SIGNATURE.fullmatch(header.strip())
    if found is None:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(found.group(1).lower(), expected)


@dataclass(frozen=True)
class Hint:
    """An object a delivery says changed, for the poller to read through the API.

    ``account_id`` is the delivery's entry id (the Page or the Instagram account), ``item``
    what ``object_id`` is (``comment``, ``post``, ``media``, ``message``), ``parent_id`` the
    post or media it is on, ``verb`` what Meta says happened (Page ``feed`` and ``mention``
    only; ``remove``: deleted)."""

    network: str
    account_id: str
    field: str
    item: str
    object_id: str
    parent_id: str | None = None
    verb: str | None = None


def _fb(value: Any) -> str | None:
    return value if isinstance(value, str) and _FB_ID.fullmatch(value) else None


def _ig(value: Any) -> str | None:
    return value if isinstance(value, str) and _IG_ID.fullmatch(value) else None


def _entry_id(value: Any) -> str | None:
    """An entry's id: the Page's or the Instagram account's. Meta's references send a string;
    restfb's Messenger recordings a number, taken as its digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    return value if isinstance(value, str) and _IG_ID.fullmatch(value) else None


def _verb(value: Any) -> str | None:
    return value if isinstance(value, str) and value in _VERBS else None


def _page_hints(account: str, field: str, value: Mapping[str, Any]) -> list[Hint]:
    item, verb = value.get("item"), _verb(value.get("verb"))
    post, comment = _fb(value.get("post_id")), _fb(value.get("comment_id"))
    if field not in ("feed", "mention"):
        return []
    if item == "comment" and comment:
        return [Hint(NETWORK_FACEBOOK, account, field, "comment", comment, post, verb)]
    if (item in _FEED_POSTS if field == "feed" else item == "post") and post:
        return [Hint(NETWORK_FACEBOOK, account, field, "post", post, None, verb)]
    return []


def _instagram_hints(account: str, field: str, value: Mapping[str, Any]) -> list[Hint]:
    if field == "mentions":
        media, comment = _ig(value.get("media_id")), _ig(value.get("comment_id"))
        if comment:
            return [Hint(NETWORK_INSTAGRAM, account, field, "comment", comment, media)]
        if media:
            return [Hint(NETWORK_INSTAGRAM, account, field, "media", media)]
        return []
    if field in ("comments", "live_comments"):
        comment = _ig(value.get("id"))
        on = value.get("media")
        media = _ig(on.get("id")) if isinstance(on, dict) else None
        parent = _ig(value.get("parent_id"))
        if comment:
            return [Hint(NETWORK_INSTAGRAM, account, field, "comment", comment, parent or media)]
    return []


def _messaging_hints(network: str, account: str, events: Any) -> list[Hint]:
    """Messaging events naming a message: a message to the account or one it sent (an echo),
    or (Messenger only) an edit. Instagram delivers its echoes under the ``messages`` field,
    Messenger under ``message_echoes``. An unsent message (``is_deleted``) names nothing left
    to read; reads, deliveries, reactions and postbacks are no interaction."""
    found: list[Hint] = []
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, dict):
            continue
        message, edit = event.get("message"), event.get("message_edit")
        if isinstance(message, dict) and message.get("is_deleted") is not True:
            echo = message.get("is_echo") is True and network == NETWORK_FACEBOOK
            field = "message_echoes" if echo else "messages"
            mid = message.get("mid")
        elif isinstance(edit, dict) and network == NETWORK_FACEBOOK:
            field, mid = "message_edits", edit.get("mid")
        else:
            continue
        if isinstance(mid, str) and MESSAGE_ID.fullmatch(mid):
            found.append(Hint(network, account, field, "message", mid))
    return found


def hints(payload: Any) -> list[Hint]:
    """The object ids a (signed) delivery names, each once, in order; whatever else it says
    is ignored, and an entry or change of another shape is skipped."""
    if not isinstance(payload, dict):
        return []
    kind = payload.get("object")
    if kind not in ("page", "instagram"):
        return []
    found: list[Hint] = []
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        account = _entry_id(entry.get("id"))
        if account is None:
            continue
        network = NETWORK_FACEBOOK if kind == "page" else NETWORK_INSTAGRAM
        for events in ("messaging", "standby"):
            found += _messaging_hints(network, account, entry.get(events))
        changes = entry.get("changes")
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                continue
            field = change.get("field")
            if not isinstance(field, str):
                continue
            if kind == "page":
                found += _page_hints(account, field, change["value"])
            else:
                found += _instagram_hints(account, field, change["value"])
    return list(dict.fromkeys(found))
