"""Mastodon answers → domain objects: pure functions, no HTTP.

Identity: an account's ``id`` is local to the instance that answers; the person is its actor
``uri`` (immutable, the identity key) and its ``acct`` made absolute (``user@domain``, the
handle, which changes when the account moves). A post is its status ``uri``, so its external
id is ``mastodon:<uri>``; a CRM external id holds 255 characters, so a uri longer than
:data:`MAX_URI` cannot be written once-only and its item is quarantined, never truncated (two
long uris cut alike would be one record). Its ``ref`` is where the answering (the brand's)
instance reads it again, :func:`status_ref`: a status of another instance can be asked about
there only by the id that instance gave it, which its uri does not tell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from syncd.errors import BadItem
from syncd.model import Account, Author, Direction, Interaction, Quarantined, RateInfo, Stream

NETWORK = "mastodon"
MAX_URI = 255 - len(f"{NETWORK}:")  # the CRM's external id: "mastodon:<uri>" in 255


def clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reset_at(headers: Mapping[str, str]) -> datetime | None:
    """``X-RateLimit-Reset``: Mastodon sends an ISO 8601 time, not epoch seconds."""
    value = headers.get("x-ratelimit-reset") or headers.get("X-RateLimit-Reset")
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rate_info(headers: Mapping[str, str]) -> RateInfo | None:
    def number(name: str) -> int | None:
        value = headers.get(name)
        return int(value) if value is not None and value.strip().isdigit() else None

    limit, remaining = number("x-ratelimit-limit"), number("x-ratelimit-remaining")
    reset = reset_at(headers)
    if limit is None and remaining is None and reset is None:
        return None
    return RateInfo(limit=limit, remaining=remaining, reset_at=reset)


def id_key(value: str) -> tuple[int, str]:
    """Mastodon ids are strings of digits (notifications: a sequence; statuses: time-based);
    they order as numbers, which a shorter string is."""
    return (len(value), value)


def is_id(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit() and len(value) <= 30


# -- text ------------------------------------------------------------------------------------
class _Text(HTMLParser):
    """Mastodon's status HTML (``<p>``, ``<br>``, ``<span class="h-card">``, links) as the
    words a person reads: paragraphs and line breaks kept, a link as its full URL (Mastodon
    shows it cut, with the rest in invisible spans), a mention or hashtag as its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._link: list[str | None] = []  # per open <a>: the URL to write, or None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.out.append("\n")
        elif tag == "p" and self.out:
            self.out.append("\n\n")
        elif tag == "a":
            found = dict(attrs)
            classes = (found.get("class") or "").split()
            href = found.get("href")
            plain = href if href and not {"mention", "hashtag"} & set(classes) else None
            self._link.append(plain)
            if plain:
                self.out.append(plain)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link:
            self._link.pop()

    def handle_data(self, data: str) -> None:
        if not any(self._link):  # inside a link written as its URL: the shown text is dropped
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = "".join(parser.out).split("\n")
    return "\n".join(" ".join(line.split()) for line in lines).strip()


# -- items -----------------------------------------------------------------------------------
def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadItem(f"{what} is missing or not text", system=NETWORK)
    return value


def _time(value: Any, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_text(value, what).replace("Z", "+00:00"))
    except ValueError:
        raise BadItem(
            f"{what} is not an ISO time: {clip(str(value), 60)}", system=NETWORK
        ) from None
    if moment.tzinfo is None:
        raise BadItem(f"{what} has no offset", system=NETWORK)
    return moment.astimezone(UTC)


def _uri(value: Any, what: str) -> str:
    uri = _text(value, what)
    if not uri.startswith(("https://", "http://")):
        raise BadItem(f"{what} is not a URL", system=NETWORK)
    if len(uri) > MAX_URI:
        raise BadItem(
            f"{what} is {len(uri)} characters: 'mastodon:<uri>' would not fit the CRM's "
            "255-character external id",
            system=NETWORK,
        )
    return uri


def absolute_acct(acct: str, domain: str) -> str:
    """``user`` (an account of the answering instance) → ``user@domain``."""
    return acct if "@" in acct else f"{acct}@{domain}"


def parse_author(raw: Any, domain: str) -> Author:
    if not isinstance(raw, dict):
        raise BadItem("account is not an object", system=NETWORK)
    acct = _text(raw.get("acct"), "account.acct")
    note = raw.get("note")
    return Author(
        network=NETWORK,
        user_id=_uri(raw.get("uri"), "account.uri"),
        handle=absolute_acct(acct, domain),
        display_name=raw.get("display_name") or None,
        description=html_to_text(note) if isinstance(note, str) and note else None,
        url=raw.get("url") if isinstance(raw.get("url"), str) else None,
    )


@dataclass(frozen=True)
class Translated:
    interactions: tuple[Interaction, ...]
    authors: tuple[Author, ...]
    quarantined: tuple[Quarantined, ...]


def parse_mentions(
    items: Sequence[Any],
    account: Account,
    domain: str,
    brand_local_id: str | None = None,
    people: Mapping[str, Author] | None = None,
) -> Translated:
    """Mention notifications → inbound interactions (their status), authors and quarantine.
    ``brand_local_id`` (the brand account's id on its instance) and ``people`` (local id →
    author, those read before) name whom a status answers (:func:`answered`)."""
    interactions: list[Interaction] = []
    authors: dict[str, Author] = {}
    bad: list[Quarantined] = []
    for raw in items:
        try:
            if not isinstance(raw, dict):
                raise BadItem("notification is not an object", system=NETWORK)
            if raw.get("type") != "mention":
                continue  # asked for mentions only; an instance that ignores types[] sends more
            status = raw.get("status")
            if not isinstance(status, dict):
                raise BadItem("mention without its status", system=NETWORK)
            author = parse_author(status.get("account"), domain)
            local = status["account"].get("id")
            known = {**(people or {}), **({str(local): author} if is_id(local) else {})}
            interactions.append(
                _interaction(
                    status,
                    account,
                    Stream.MENTIONS,
                    author.user_id,
                    author.user_id,
                    answered=answered(status, account, brand_local_id, known),
                )
            )
            authors[author.user_id] = author
        except BadItem as exc:
            item_id = raw.get("id") if isinstance(raw, dict) else None
            bad.append(
                Quarantined(NETWORK, str(exc), _json(raw), str(item_id) if item_id else None)
            )
    return Translated(tuple(interactions), tuple(authors.values()), tuple(bad))


def replied_to(status: Mapping[str, Any], brand_local_id: str) -> str | None:
    """The local id of the account a brand status answers: the one it replies to, else the
    first account it mentions; None for a post to no one (an announcement, a self-thread)."""
    target = status.get("in_reply_to_account_id")
    if is_id(target) and target != brand_local_id:
        return str(target)
    for mention in status.get("mentions") or []:
        if (
            isinstance(mention, dict)
            and is_id(mention.get("id"))
            and mention["id"] != brand_local_id
        ):
            return str(mention["id"])
    return None


def answered(
    status: Mapping[str, Any],
    account: Account,
    brand_local_id: str | None,
    people: Mapping[str, Author],
) -> str | None:
    """Who wrote the status this one answers, as syncd keys them (the actor uri): Mastodon
    names them by ``in_reply_to_account_id``, an id local to the answering instance, which
    is the brand's (``brand_local_id``) or one of ``people`` read before (the status's own
    author, on a self-thread). Another account's uri its local id does not tell (a mention
    gives its profile ``url``, never its uri): None, not a guess."""
    target = status.get("in_reply_to_account_id")
    if not is_id(target):
        return None
    if target == brand_local_id:
        return account.user_id
    person = people.get(str(target))
    return person.user_id if person is not None else None


def parse_replies(
    items: Sequence[Any],
    account: Account,
    brand_local_id: str,
    people: Mapping[str, Author],
    parents: Mapping[str, str],
) -> Translated:
    """The brand's statuses → outbound interactions, each attributed to the account it
    answers (``people``: local id → author, ``parents``: local status id → uri)."""
    interactions: list[Interaction] = []
    authors: dict[str, Author] = {}
    bad: list[Quarantined] = []
    for raw in items:
        try:
            if not isinstance(raw, dict):
                raise BadItem("status is not an object", system=NETWORK)
            if raw.get("reblog"):
                continue  # a boost is not the brand speaking
            target = replied_to(raw, brand_local_id)
            if target is None:
                continue
            person = people.get(target)
            if person is None:
                raise BadItem(
                    f"the account replied to ({target}) could not be read", system=NETWORK
                )
            parent = raw.get("in_reply_to_id")
            interactions.append(
                _interaction(
                    raw,
                    account,
                    Stream.REPLIES,
                    account.user_id,
                    person.user_id,
                    parents.get(parent) if isinstance(parent, str) else None,
                    answered=answered(raw, account, brand_local_id, people),
                )
            )
            authors[person.user_id] = person
        except BadItem as exc:
            item_id = raw.get("id") if isinstance(raw, dict) else None
            bad.append(
                Quarantined(NETWORK, str(exc), _json(raw), str(item_id) if item_id else None)
            )
    return Translated(tuple(interactions), tuple(authors.values()), tuple(bad))


def _interaction(
    status: Mapping[str, Any],
    account: Account,
    stream: Stream,
    author_id: str,
    counterpart_id: str,
    in_reply_to: str | None = None,
    *,
    answered: str | None = None,
) -> Interaction:
    uri = _uri(status.get("uri"), "status.uri")
    content = status.get("content")
    if not isinstance(content, str):
        raise BadItem("status.content is not text", system=NETWORK)
    text = html_to_text(content)
    warning = status.get("spoiler_text")
    if isinstance(warning, str) and warning:  # a content warning is part of what was said
        text = f"[{warning}] {text}"
    shown = status.get("url")
    url = shown if isinstance(shown, str) and shown else uri
    return Interaction(
        network=NETWORK,
        post_id=uri,
        account=account.handle,
        stream=stream,
        direction=Direction.INBOUND if stream is Stream.MENTIONS else Direction.OUTBOUND,
        author_id=author_id,
        counterpart_id=counterpart_id,
        text=text,
        created_at=_time(status.get("created_at"), "status.created_at"),
        url=url,
        in_reply_to_post_id=in_reply_to,
        in_reply_to_user_id=answered,
        # A direct status (a private mention) is seen only by the accounts it mentions.
        private=status.get("visibility") == "direct",
        raw=_json(status),
        ref=status_ref(account, status.get("id")),
    )


def instance_of(actor_uri: str) -> str:
    """The instance an actor of it lives on, as its uri's host (``mastodon.social``)."""
    return urlsplit(actor_uri).netloc.lower()


def status_ref(account: Account, local_id: Any) -> str | None:
    """``<instance>/<id>``: the id the brand account's instance gave a status, with that
    instance, so an id is never asked of another one (a second Mastodon source, or the brand
    moved to a new instance), where it would name nothing or another status."""
    if not is_id(local_id):
        return None
    return f"{instance_of(account.user_id)}/{local_id}"


def ref_id(ref: str | None, instance: str) -> str | None:
    """The status id a :func:`status_ref` gives, if it is one of ``instance``'s."""
    where, _, local = (ref or "").rpartition("/")
    return local if where == instance and is_id(local) else None


def _json(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {"item": raw}
