"""Graph API objects → domain objects: pure functions, no HTTP.

Where each rule comes from ([doc] Meta's documentation as quoted in the research notes
``shared/research/meta.md``; [recording] a body in ``tests/fixtures/meta/``):

Networks. Facebook Pages and Messenger are ``facebook``; Instagram (comments, tags, mentions,
DMs) is ``instagram``. A post's external id is ``<network>:<Graph id>``: Graph ids are global
(a comment ``{post-id-suffix}_{comment-id}`` [recording: comment_info.json], a message
``m_…`` [recording: models/message.json], an IG comment a number [recording: IG comments]),
so the id alone is the post. A CRM external id holds 255 characters: an id that would not fit
is quarantined, never cut (two ids cut alike would be one record).

Identity. The author is ``from.id``: on Facebook a Page-scoped id, the same number as the
person's Messenger id on that Page [recording: models/comment.json and
models/conversation.json, both 2711636948859886 on Page 2121008874780932] and a different
number on another Page or app [doc: comments-mentions guide]; on Instagram the IGSID
[doc: IG comment reference, changelog 2021-10-20], scoped to the professional account. The
same person therefore has different ids under different brand accounts, and one id could
in principle stand for two people under two of them. So an author's ``user_id`` carries its
scope: ``<page-id>:<from.id>`` on Facebook, ``<ig-account-id>:<from.id>`` on Instagram
(:func:`scoped_id`; :func:`split_scoped` takes it apart, e.g. for a CRM field holding the bare
PSID of a known Page). The name (Facebook) and the username (Instagram, mutable [doc]) are
kept as evidence: ``display_name`` and ``handle``, never the key. The Messenger ``email``
(``<id>@facebook.com`` [recording]) is not an address and is not kept.

Direction. An item whose ``from.id`` is the brand account's own id is the brand speaking:
OUTBOUND (stream ``replies``), attributed to the person answered: the author of the comment
it replies to, or the other participant of the Messenger thread (``to``). On Instagram the
brand's own comment may instead carry ``user`` (only for the app user's comments [doc;
recording: models/ig_comment.json]) or only its ``username`` [recording]. Everything else is
INBOUND (stream ``mentions``), attributed to its author. A brand item answering no one (a
top-level comment on its own post, a reply to itself) belongs in no customer's history and is
left out.

Withheld authors. Meta leaves ``from`` out where the app lacks Advanced Access or the item is
a user's post tagging the Page ("the from field will only be returned if the user making the
request is the same user who created the post" [doc: page/tagged]; IG comments before
2021-10 and default fields [recording: IG comments_p1, comment_missing_user.json]). Such an
item is an ordinary interaction whose ``author_id`` and ``counterpart_id`` are None (and a
brand reply to it has None as its ``counterpart_id``), with no author: the core stores it
once, links it to no one and writes it to no CRM until a later read of the same item gives
``from`` (:class:`syncd.model.Interaction`). Nothing
is guessed: a username or a name is not an id.

Text. The message or caption as written; when there is none, what was sent instead
(attachments, stickers, media), described in brackets: ``[photo: <url>]``, ``[sticker]``,
``[image: <name>]``. An item with neither, no id or no time is quarantined with the reason;
the rest of its page goes through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from syncd.errors import BadItem
from syncd.model import Account, Author, Direction, Interaction, Quarantined, Stream

NETWORK_FACEBOOK = "facebook"
NETWORK_INSTAGRAM = "instagram"
NETWORKS = (NETWORK_FACEBOOK, NETWORK_INSTAGRAM)
_EXTERNAL_ID = 255  # a CRM external id: "<network>:<post id>" in 255 characters
_C = TypeVar("_C")  # what an item's place in an answer says of it (an IG reply's parent)


def clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scoped_id(scope: str, user_id: str) -> str:
    """An author's identity key: the brand account it is scoped to, and Meta's id for them."""
    return f"{scope}:{user_id}"


def split_scoped(value: str) -> tuple[str, str]:
    """``(scope, id)`` of a :func:`scoped_id`; ValueError for anything else."""
    scope, sep, user_id = value.partition(":")
    if not sep or not scope or not user_id or ":" in user_id:
        raise ValueError(f"not a scoped Meta id: {clip(value, 60)!r}")
    return scope, user_id


@dataclass(frozen=True)
class Translated:
    """One answer translated. Items whose author Meta did not say are among
    ``interactions``, with None for an author (see the module docstring). ``posted_by`` maps
    each item id read to its author (None: withheld), so the brand's replies on a later page
    can be attributed to the person they answer."""

    interactions: tuple[Interaction, ...] = ()
    authors: tuple[Author, ...] = ()
    quarantined: tuple[Quarantined, ...] = ()
    posted_by: Mapping[str, Author | None] = field(default_factory=dict)


class _Out:
    """What a translation collects, in order."""

    def __init__(self, network: str) -> None:
        self.network = network
        self.interactions: list[Interaction] = []
        self.authors: dict[str, Author] = {}
        self.quarantined: list[Quarantined] = []
        self.posted_by: dict[str, Author | None] = {}

    def bad(self, raw: Any, exc: BadItem) -> None:
        item_id = raw.get("id") if isinstance(raw, dict) else None
        self.quarantined.append(
            Quarantined(
                self.network,
                str(exc),
                _json(raw),
                item_id if isinstance(item_id, str) and item_id else None,
            )
        )

    def add(self, interaction: Interaction, *people: Author | None) -> None:
        """The interaction, and the people it names whom Meta said (None: withheld)."""
        self.interactions.append(interaction)
        for person in people:
            if person is not None:
                self.authors[person.user_id] = person

    def done(self) -> Translated:
        return Translated(
            tuple(self.interactions),
            tuple(self.authors.values()),
            tuple(self.quarantined),
            dict(self.posted_by),
        )


# -- fields ----------------------------------------------------------------------------------
def _bad(network: str, reason: str) -> BadItem:
    return BadItem(reason, system=network)


def _id(value: Any, what: str, network: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(network, f"{what} is missing")
    if len(value) > _EXTERNAL_ID or any(c.isspace() for c in value):
        raise _bad(network, f"{what} is not a Graph id: {clip(value, 60)!r}")
    return value


def _post_id(value: Any, what: str, network: str) -> str:
    post_id = _id(value, what, network)
    if len(network) + 1 + len(post_id) > _EXTERNAL_ID:
        raise _bad(
            network,
            f"{what} is {len(post_id)} characters: '{network}:<id>' would not fit the CRM's "
            f"{_EXTERNAL_ID}-character external id",
        )
    return post_id


def _time(value: Any, what: str, network: str) -> datetime:
    """Graph's ``2021-07-23T08:35:18+0000`` [recording], or epoch seconds (webhooks, IG
    conversations' ``updated_time`` [doc])."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value:
        raise _bad(network, f"{what} is missing")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(network, f"{what} is not an ISO time: {clip(value, 60)}") from None
    if moment.tzinfo is None:
        raise _bad(network, f"{what} has no offset")
    return moment.astimezone(UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _url(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else ""


def _data(value: Any) -> list[Any]:
    """The ``data`` list of an edge (``{"data": [...], "paging": ...}``), or a bare list."""
    if isinstance(value, dict):
        value = value.get("data")
    return value if isinstance(value, list) else []


def _json(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {"item": raw}


def _words(kind: str) -> str:
    return kind.replace("_", " ").strip().lower()


# -- what was sent instead of words ---------------------------------------------------------
def describe_attachment(attachment: Any) -> str | None:
    """A comment's ``attachment`` or a post's ``attachments.data[]`` entry [recording:
    models/comment.json, feed]: ``[photo: <url>]``; a sticker as ``[sticker]``."""
    if not isinstance(attachment, dict):
        return None
    kind = attachment.get("type") or attachment.get("media_type")
    kind = _words(kind) if isinstance(kind, str) and kind.strip() else "attachment"
    if kind == "sticker":
        return "[sticker]"
    url = _url(attachment.get("url")) or _url(attachment.get("unshimmed_url"))
    return f"[{kind}: {url}]" if url else f"[{kind}]"


def describe_message_attachments(message: Mapping[str, Any]) -> str | None:
    """A Messenger message's ``attachments.data[]`` and ``sticker`` [recording:
    models/message.json, message-eu.json; doc: message reference]: ``[image: <name>]``; an
    attachment Meta withholds in the EU keeps the notice it comes with as its name."""
    parts: list[str] = []
    if _text(message.get("sticker")):
        parts.append("[sticker]")
    for attachment in _data(message.get("attachments")):
        if not isinstance(attachment, dict):
            continue
        mime = attachment.get("mime_type")
        kind = mime.partition("/")[0] if isinstance(mime, str) and mime else "attachment"
        name = _text(attachment.get("name"))
        parts.append(f"[{kind}: {clip(name, 200)}]" if name else f"[{kind}]")
    return "\n".join(parts) or None


def _fb_text(item: Mapping[str, Any], network: str) -> str:
    message = _text(item.get("message"))
    if message is not None:
        return message
    described = [describe_attachment(item.get("attachment"))]
    described += [describe_attachment(a) for a in _data(item.get("attachments"))]
    text = "\n".join(d for d in described if d)
    if not text:
        raise _bad(network, "no message and no attachment")
    return text


# -- authors -----------------------------------------------------------------------------------
def _person(raw: Any, scope: str, network: str) -> Author | None:
    """``from`` (or a participant) as an author scoped to the brand account; None when
    withheld (absent)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad(network, "from is not an object")
    user_id = _id(raw.get("id"), "from.id", network)
    name = _text(raw.get("name"))
    username = _text(raw.get("username"))
    return Author(
        network=network,
        user_id=scoped_id(scope, user_id),
        handle=username,
        display_name=name,
    )


def _is_brand(person: Author | None, account: Account) -> bool:
    return person is not None and person.user_id == scoped_id(account.user_id, account.user_id)


def _user_id(person: Author | None, account: Account) -> str | None:
    """A person as syncd keys them: the brand as every connector names it (its account's
    own id, unscoped), anyone else by their scoped id; None when withheld or not read."""
    if person is None:
        return None
    return account.user_id if _is_brand(person, account) else person.user_id


def _each(
    out: _Out,
    items: Iterable[tuple[Any, _C]],
    what: str,
    one: Callable[[Mapping[str, Any], _C], None],
) -> Translated:
    """Each item (with what its place says of it) translated by ``one``; an item that is no
    object, or that ``one`` refuses, quarantined with the reason, the rest going through."""
    for raw, context in items:
        try:
            if not isinstance(raw, dict):
                raise _bad(out.network, f"{what} is not an object")
            one(raw, context)
        except BadItem as exc:
            out.bad(raw, exc)
    return out.done()


def _alone(items: Sequence[Any]) -> Iterable[tuple[Any, None]]:
    return ((raw, None) for raw in items)


def _keep(
    out: _Out,
    account: Account,
    raw: Mapping[str, Any],
    *,
    post_id: str,
    author: Author | None,
    counterpart: Author | None,
    outbound: bool,
    text: str,
    created_at: datetime,
    url: str,
    conversation_id: str | None,
    in_reply_to: str | None,
    answered: str | None = None,
    private: bool = False,
) -> None:
    """The item as an interaction, with the people it names: its author when inbound (the
    brand is no customer), and the person it is attributed to. ``answered``: who wrote what
    it answers (:attr:`Interaction.in_reply_to_user_id`); ``private``: a message."""
    network = out.network
    interaction = Interaction(
        network=network,
        post_id=post_id,
        account=account.handle,
        stream=Stream.REPLIES if outbound else Stream.MENTIONS,
        direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
        # The brand as every connector names it: its account's own id, unscoped.
        author_id=account.user_id if outbound else (author.user_id if author else None),
        counterpart_id=counterpart.user_id if counterpart else None,
        text=text,
        created_at=created_at,
        url=url,
        conversation_id=conversation_id,
        in_reply_to_post_id=in_reply_to,
        in_reply_to_user_id=answered,
        private=private,
        raw=dict(raw),
    )
    out.add(interaction, None if outbound else author, counterpart)


def _by_others(
    out: _Out,
    account: Account,
    raw: Mapping[str, Any],
    *,
    post_id: str,
    author: Author | None,
    text: str,
    created_at: datetime,
    url: str,
) -> None:
    """A post of someone else's about the brand (a visitor post, a tagging media): inbound,
    its own conversation."""
    _keep(
        out,
        account,
        raw,
        post_id=post_id,
        author=author,
        counterpart=author,
        outbound=False,
        text=text,
        created_at=created_at,
        url=url,
        conversation_id=post_id,
        in_reply_to=None,
    )


def _comment(
    out: _Out,
    account: Account,
    raw: Mapping[str, Any],
    known: Mapping[str, Author | None],
    *,
    comment_id: str,
    author: Author | None,
    outbound: bool,
    parent: str | None,
    on: str | None,
    text: str,
    created_at: datetime,
    url: str,
    brand: str,
    on_by: str | None,
) -> None:
    """A comment or reply on ``on`` (a Page post, a media): a person's is inbound; the
    brand's is attributed to the author of the comment it answers, read earlier (``known``),
    and left out when it answers no one or the brand itself (``brand`` names the brand in
    the reason an unread parent quarantines it with). It answers the author of its parent
    comment where Meta said who that is, else nobody known; a comment on ``on`` itself
    answers ``on``'s author, ``on_by``, where the caller knows it."""
    if outbound:
        if parent is None:
            return  # the brand commenting on its own post: answering no one
        if parent not in known:
            raise _bad(
                out.network,
                f"the comment this {brand} reply answers ({clip(parent, 60)}) was not read",
            )
        counterpart = known[parent]
        if _is_brand(counterpart, account):
            return  # the brand answering itself
    else:
        counterpart = author
    _keep(
        out,
        account,
        raw,
        post_id=comment_id,
        author=author,
        counterpart=counterpart,
        outbound=outbound,
        text=text,
        created_at=created_at,
        url=url,
        conversation_id=on,
        in_reply_to=parent or on,
        answered=_user_id(known.get(parent), account) if parent is not None else on_by,
    )


# -- Facebook comments -------------------------------------------------------------------------
def _fb_parent(item: Mapping[str, Any], comment_id: str) -> str | None:
    """The comment a reply answers: ``parent.id`` when asked for, else the permalink's
    ``comment_id`` beside ``reply_comment_id`` [recording: comments_p1.json], made into an id
    as the comment's own is made (``{post-id-suffix}_{comment-id}`` [recording:
    comment_info.json])."""
    parent = item.get("parent")
    if isinstance(parent, dict) and isinstance(parent.get("id"), str) and parent["id"]:
        return str(parent["id"])
    link = item.get("permalink_url")
    if not isinstance(link, str):
        return None
    query = parse_qs(urlsplit(link).query)
    top, reply = query.get("comment_id"), query.get("reply_comment_id")
    if not top or not reply or not top[0].isdigit():
        return None
    prefix, sep, _ = comment_id.rpartition("_")
    return f"{prefix}_{top[0]}" if sep else None


def parse_fb_comments(
    items: Sequence[Any],
    account: Account,
    *,
    post_id: str | None = None,
    post_url: str = "",
    parents: Mapping[str, Author | None] | None = None,
    post_from: Any = None,
) -> Translated:
    """Comments and replies of one Page post (``/{post-id}/comments?filter=stream``, or a
    post's expanded ``comments``) → interactions. ``account.user_id`` is the Page id;
    ``parents`` the authors of comments read earlier (see :attr:`Translated.posted_by`).
    Chronological order [recording: comments_p1.json, filter=stream] puts a parent before
    its replies within one answer. ``post_from``: the post's ``from`` as Graph gave it
    (the Page on its own posts, a visitor on theirs; None: not read or withheld), whom a
    top-level comment answers."""
    network = NETWORK_FACEBOOK
    out = _Out(network)
    known: dict[str, Author | None] = dict(parents or {})
    try:
        on_by = _user_id(_person(post_from, account.user_id, network), account)
    except BadItem:
        on_by = None  # an unreadable post author is nobody known; the comments still count

    def one(raw: Mapping[str, Any], _: None) -> None:
        if "id" not in raw:
            # Page Public Content Access answers without comment ids (v11.0+) for Pages
            # the token cannot moderate [doc: object/comments; recording: comments_p1].
            raise _bad(
                network,
                "comment without an id: Meta gives comment ids only to a token that can "
                "moderate the Page (a Page access token of the brand's own Page)",
            )
        comment_id = _post_id(raw.get("id"), "comment id", network)
        author = _person(raw.get("from"), account.user_id, network)
        known[comment_id] = author
        out.posted_by[comment_id] = author
        created = _time(raw.get("created_time"), "created_time", network)
        text = _fb_text(raw, network)
        _comment(
            out,
            account,
            raw,
            known,
            comment_id=comment_id,
            author=author,
            outbound=_is_brand(author, account),
            parent=_fb_parent(raw, comment_id),
            on=post_id,
            text=text,
            created_at=created,
            url=_url(raw.get("permalink_url")) or post_url,
            brand="Page",
            on_by=on_by,
        )

    return _each(out, _alone(items), "comment", one)


# -- Facebook posts by others ------------------------------------------------------------------
def parse_fb_posts(items: Sequence[Any], account: Account) -> Translated:
    """Posts by others on or about the Page (``/{page-id}/visitor_posts``, ``/tagged``, the
    ``/feed`` entries not by the Page) → inbound interactions. A user's post tagging the Page
    comes without ``from`` [doc: page/tagged]: its author withheld. The Page's own posts are
    skipped."""
    network = NETWORK_FACEBOOK
    out = _Out(network)

    def one(raw: Mapping[str, Any], _: None) -> None:
        post_id = _post_id(raw.get("id"), "post id", network)
        author = _person(raw.get("from"), account.user_id, network)
        out.posted_by[post_id] = author
        if _is_brand(author, account):
            return
        created = _time(raw.get("created_time") or raw.get("tagged_time"), "created_time", network)
        _by_others(
            out,
            account,
            raw,
            post_id=post_id,
            author=author,
            text=_fb_text(raw, network),
            created_at=created,
            url=_url(raw.get("permalink_url")),
        )

    return _each(out, _alone(items), "post", one)


# -- messages (Messenger; Instagram Direct through the Page) ------------------------------------
def _other_participant(raw: Mapping[str, Any], account: Account, network: str) -> Author | None:
    for person in _data(raw.get("to")):
        candidate = _person(person, account.user_id, network)
        if candidate is not None and not _is_brand(candidate, account):
            return candidate
    return None


def parse_messages(
    items: Sequence[Any],
    account: Account,
    *,
    network: str = NETWORK_FACEBOOK,
    conversation_id: str | None = None,
    conversation_url: str = "",
    participants: Iterable[Any] = (),
) -> Translated:
    """Messages of one thread (``/{conversation-id}?fields=messages{…}`` or
    ``/{message-id}``) → interactions: the person's inbound, the brand's outbound to the
    thread's other participant (``to``, else ``participants`` [recording:
    models/conversation.json]). ``network`` is ``instagram`` for Instagram Direct, whose
    ``from`` carries ``username`` [doc: conversations API]."""
    out = _Out(network)
    others: list[Author] = []
    for raw_person in participants:
        try:
            person = _person(raw_person, account.user_id, network)
        except BadItem:
            continue
        if person is not None and not _is_brand(person, account):
            others.append(person)

    def one(raw: Mapping[str, Any], _: None) -> None:
        message_id = _post_id(raw.get("id"), "message id", network)
        created = _time(raw.get("created_time"), "created_time", network)
        author = _person(raw.get("from"), account.user_id, network)
        out.posted_by[message_id] = author
        text = _text(raw.get("message")) or describe_message_attachments(raw)
        if text is None:
            raise _bad(network, "no message text and no attachment")
        outbound = _is_brand(author, account)
        if outbound:
            counterpart = _other_participant(raw, account, network) or (
                others[0] if len(others) == 1 else None
            )
            if counterpart is None:
                raise _bad(network, "a brand message whose recipient is not said")
        else:
            counterpart = author
        _keep(
            out,
            account,
            raw,
            post_id=message_id,
            author=author,
            counterpart=counterpart,
            outbound=outbound,
            text=text,
            created_at=created,
            url=conversation_url,
            conversation_id=conversation_id,
            in_reply_to=None,
            # Graph's message names no message it answers: whom it answers is not said.
            private=True,
        )

    return _each(out, _alone(items), "message", one)


def conversation_url(link: Any) -> str:
    """A conversation's ``link`` (``/{page-id}/inbox/{id}/`` [recording: cvs_info.json]) as
    an address a Page admin can open."""
    if isinstance(link, str) and link.startswith("/") and not link.startswith("//"):
        return f"https://www.facebook.com{link}"
    return _url(link)


# -- Instagram -----------------------------------------------------------------------------------
def _ig_brand(raw: Mapping[str, Any], author: Author | None, account: Account) -> bool:
    if _is_brand(author, account):
        return True
    user = raw.get("user")
    if isinstance(user, dict) and user.get("id") == account.user_id:
        return True
    username = raw.get("username")
    return (
        author is None
        and isinstance(username, str)
        and username.lower() == account.handle.lower().removeprefix("@")
    )


def _ig_flat(items: Sequence[Any]) -> list[tuple[Any, str | None]]:
    """Comments with their nested ``replies`` (field expansion [doc; recording:
    models/ig_comment.json]) after each, a reply's parent known from where it sits."""
    flat: list[tuple[Any, str | None]] = []
    for raw in items:
        flat.append((raw, None))
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            flat += [(reply, raw["id"]) for reply in _data(raw.get("replies"))]
    return flat


def parse_ig_comments(
    items: Sequence[Any],
    account: Account,
    *,
    media_id: str | None = None,
    media_url: str = "",
    parents: Mapping[str, Author | None] | None = None,
    own_media: bool = False,
) -> Translated:
    """Comments of one media (``/{ig-media-id}/comments``, newest first, 50 a call [doc]),
    their replies (``/{ig-comment-id}/replies`` or expanded ``replies``) or a mentioned
    comment → interactions. ``account.user_id`` is the IG account id, ``account.handle`` its
    username. IG comments have no permalink: ``media_url`` (the media's ``permalink``) is
    their address. ``own_media``: the media is the account's own (its media walk, a
    ``comments`` webhook), so a top-level comment answers the account; a comment on
    someone else's media (a mention) answers an owner Meta does not name."""
    network = NETWORK_INSTAGRAM
    out = _Out(network)
    known: dict[str, Author | None] = dict(parents or {})

    def one(raw: Mapping[str, Any], nested_in: str | None) -> None:
        comment_id = _post_id(raw.get("id"), "comment id", network)
        author = _person(raw.get("from"), account.user_id, network)
        if author is not None and author.handle is None and _text(raw.get("username")):
            author = Author(network, author.user_id, handle=raw["username"])
        outbound = _ig_brand(raw, author, account)
        known[comment_id] = author if not outbound else _brand_author(account)
        out.posted_by[comment_id] = known[comment_id]
        created = _time(raw.get("timestamp"), "timestamp", network)
        text = _text(raw.get("text"))
        if text is None:
            raise _bad(network, "comment without text")
        parent = raw.get("parent_id") if isinstance(raw.get("parent_id"), str) else nested_in
        on_media = raw.get("media")
        media = (
            on_media.get("id")
            if isinstance(on_media, dict) and isinstance(on_media.get("id"), str)
            else media_id
        )
        _comment(
            out,
            account,
            raw,
            known,
            comment_id=comment_id,
            author=author,
            outbound=outbound,
            parent=parent,
            on=media,
            text=text,
            created_at=created,
            url=media_url,
            brand="brand",
            on_by=account.user_id if own_media else None,
        )

    return _each(out, _ig_flat(items), "comment", one)


def _brand_author(account: Account) -> Author:
    return Author(
        account.network, scoped_id(account.user_id, account.user_id), handle=account.handle
    )


def parse_ig_media(items: Sequence[Any], account: Account) -> Translated:
    """Media by others that tag the account (``/{ig-user-id}/tags``) or @mention it in the
    caption (``mentioned_media``) → inbound interactions. Meta gives such media no owner id
    (``username`` at most [doc]; none in the recordings [recording: tagged_medias.json,
    mentioned_media.json]): their author is withheld. Without a caption the media type is the
    text (``[image]``)."""
    network = NETWORK_INSTAGRAM
    out = _Out(network)

    def one(raw: Mapping[str, Any], _: None) -> None:
        media_id = _post_id(raw.get("id"), "media id", network)
        created = _time(raw.get("timestamp"), "timestamp", network)
        caption = _text(raw.get("caption"))
        kind = raw.get("media_type")
        text = caption or (f"[{_words(kind)}]" if isinstance(kind, str) and kind else None)
        if text is None:
            raise _bad(network, "media without caption or type")
        author = _person(raw.get("from"), account.user_id, network)
        out.posted_by[media_id] = author
        if _is_brand(author, account) or raw.get("username") == account.handle:
            return
        _by_others(
            out,
            account,
            raw,
            post_id=media_id,
            author=author,
            text=text,
            created_at=created,
            url=_url(raw.get("permalink")),
        )

    return _each(out, _alone(items), "media", one)


def mentioned(body: Any, field_name: str) -> list[Any]:
    """The object of ``GET /{ig-user-id}?fields=mentioned_comment.comment_id(…){…}`` or
    ``mentioned_media.media_id(…){…}`` [recording: mentioned_comment.json,
    mentioned_media.json], as a one-item list for :func:`parse_ig_comments` or
    :func:`parse_ig_media` (empty when the answer lacks it)."""
    if isinstance(body, dict) and isinstance(body.get(field_name), dict):
        return [body[field_name]]
    return []
