"""Salesforce sObject Collections: a history record as a Task entry, and the answer as results.

Pure, so the mapping and the parsing are tested without an org. Lengths are counted the way
Salesforce counts them, in UTF-16 units.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.salesforce.settings import SalesforceSettings
from syncd.errors import TransientError
from syncd.model import Direction, HistoryRecord, Persona, Refusal, WriteResult

__all__ = [
    "BATCH",
    "DESCRIPTION_MAX",
    "SOCIAL_PERSONA",
    "SOCIAL_POST",
    "SUBJECT_MAX",
    "SYSTEM",
    "message_type",
    "parse_upsert_results",
    "persona_key",
    "persona_record",
    "profile_url",
    "refusal",
    "social_post_record",
    "task_record",
]

SYSTEM = "salesforce"
BATCH = 200  # sObject Collections take at most 200 records; IN-lists are cut the same way
SUBJECT_MAX, DESCRIPTION_MAX = 255, 32_000
# Per-record errors worth another try later; any other code is final (a dead letter).
RETRYABLE_RECORD_ERRORS = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_RUNNING_TOO_LONG",
        "SERVER_UNAVAILABLE",
        "API_TEMPORARILY_UNAVAILABLE",
    }
)
# The person the record points at is gone (deleted, or merged into another): the author is
# resolved again instead of the record failing.
GONE_RECORD_ERRORS = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """Cut to ``limit`` as Salesforce counts length: in UTF-16 units, so an emoji counts twice."""
    if _u16(text) <= limit:
        return text
    out, used = [], 1  # room for the ellipsis
    for ch in text:
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            break
        out.append(ch)
    return "".join(out) + "…"


# Network → SocialPersona and SocialPost Provider picklist value.
PROVIDERS = {
    "x": "Twitter",
    "twitter": "Twitter",
    "facebook": "Facebook",
    "instagram": "Instagram",
    "linkedin": "LinkedIn",
    "youtube": "YouTube",
}
# Provider is a restricted picklist with no value for most networks (none for Mastodon or
# Bluesky): their personas are Provider "Other", the network named in MediaProvider, free
# text, which is how Salesforce's own inbound handler matches them (MediaProvider + ExternalId,
# then MediaProvider + Name). SOQL's "=" ignores case, so "mastodon" also finds "Mastodon".
OTHER = "Other"


def persona_provider(network: str) -> tuple[str, str | None]:
    """``(Provider, MediaProvider)`` of a network's personas: its own picklist value, or
    :data:`OTHER` with the network's name as MediaProvider."""
    provider = PROVIDERS.get(network)
    return (provider, None) if provider is not None else (OTHER, network)


def _utc(when: datetime) -> datetime:
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).astimezone(UTC)


def bare_handle(handle: str | None) -> str | None:
    bare = (handle or "").strip().removeprefix("@")
    return bare or None


def task_columns(settings: SalesforceSettings) -> list[str]:
    """Every field :func:`task_record` may write, in its order (a Bulk 2.0 job's columns)."""
    f = settings.task_fields
    return [
        settings.external_id_field, "Subject", "Description", "ActivityDate", "Status",
        "WhoId", f.network, f.direction, f.handle, f.post_url, f.conversation_id,
        "Priority", "WhatId",
    ]  # fmt: skip


def task_record(record: HistoryRecord, settings: SalesforceSettings) -> dict[str, Any]:
    """The sObject Collections entry for one history record."""
    fields = settings.task_fields
    when = _utc(record.occurred_at)
    suffix = f"\n\n{record.url}" if record.url else ""
    handle = bare_handle(record.handle)
    entry = {
        "attributes": {"type": settings.history_object},
        settings.external_id_field: record.external_id,
        "Subject": clip(record.subject, SUBJECT_MAX),
        # The link outlives a cut text, so the text is cut, never the link.
        "Description": clip(record.description, DESCRIPTION_MAX - _u16(suffix)) + suffix,
        "ActivityDate": when.astimezone(UTC).date().isoformat(),
        "Status": settings.task_status,
        "WhoId": record.who.id,
        fields.network: record.network,
        fields.direction: "Inbound" if record.direction is Direction.INBOUND else "Outbound",
        fields.handle: f"@{handle}" if handle else None,
        fields.post_url: record.url,
        fields.conversation_id: record.conversation_id,
    }
    # From who the customer is, the same on every network (never from the network).
    if (priority := settings.task_priority(record.who.priority)) is not None:
        entry["Priority"] = priority
    # The conversation's Case: left out, never cleared, where it has none.
    if record.case_id is not None:
        entry["WhatId"] = record.case_id
    return entry


# SocialPost.MessageType by network, for a post that starts a thread and for one that answers
# another (the words Social Customer Service used for each network's posts).
_MESSAGE_TYPES = {"x": ("Tweet", "Reply"), "facebook": ("Post", "Comment")}
_MESSAGE_TYPES["twitter"] = _MESSAGE_TYPES["x"]
_MESSAGE_TYPES["instagram"] = _MESSAGE_TYPES["facebook"]
_THREAD_TYPES = ("Post", "Reply")  # the fediverse, Bluesky and any other network
SOCIAL_POST = "SocialPost"
NAME_MAX = 255


# A private message: Messenger's is "Private", Instagram Direct's and any other network's
# "Direct" (the picklist's two private kinds; research/salesforce-social.md §2.3).
_PRIVATE_TYPES = {"facebook": "Private"}
_DIRECT = "Direct"


def message_type(record: HistoryRecord) -> str:
    if record.private:
        return _PRIVATE_TYPES.get(record.network, _DIRECT)
    started, answered = _MESSAGE_TYPES.get(record.network, _THREAD_TYPES)
    return answered if record.in_reply_to else started


def social_post_record(
    record: HistoryRecord, settings: SalesforceSettings, *, keyed: bool = True
) -> dict[str, Any]:
    """The sObject Collections entry for one history record as a SocialPost, upserted on
    ``social_post_key_field`` with the Task's external id (``keyed=False``: without it, for
    an org that has no such field). PersonaId, ReplyToId and ParentId where the record
    carries them (its author's persona, the SocialPost of the post it answers, the
    conversation's Case)."""
    provider, media = persona_provider(record.network)
    handle = bare_handle(record.handle)
    key = {settings.social_post_key_field: record.external_id} if keyed else {}
    return {
        "attributes": {"type": SOCIAL_POST},
        **key,
        "Name": clip(record.subject, NAME_MAX),
        "Posted": _utc(record.occurred_at).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "Content": clip(record.description, DESCRIPTION_MAX),
        # Who wrote it: the customer, or on the brand's replies the brand.
        "Handle": handle if record.direction is Direction.INBOUND else record.brand,
        "PostUrl": record.url or None,
        "Provider": provider,
        "MediaProvider": media,
        "MessageType": message_type(record),
        "IsOutbound": record.direction is Direction.OUTBOUND,
        # The network's own id: the external id is "<network>:<post id>".
        "ExternalPostId": record.external_id.partition(":")[2] or record.external_id,
        "WhoId": record.who.id,
        # Left out, never cleared, while the author's persona is not known.
        **({"PersonaId": persona} if (persona := _persona_id(record)) else {}),
        # The post it answers, once written (the writer sends this one again then).
        **({"ReplyToId": record.reply_to_id} if record.reply_to_id else {}),
        # The conversation's Case ([crm.cases]).
        **({"ParentId": record.case_id} if record.case_id else {}),
    }


def _persona_id(record: HistoryRecord) -> str | None:
    return record.author.persona_id if record.author is not None else None


SOCIAL_PERSONA = "SocialPersona"


def persona_key(record: HistoryRecord) -> str | None:
    """The author's SocialPersona key: ``<network>:<user id>`` (None: no author)."""
    return f"{record.network}:{record.author.user_id}" if record.author is not None else None


def persona_record(
    record: HistoryRecord, author: Persona, settings: SalesforceSettings, *, keyed: bool = True
) -> dict[str, Any]:
    """The sObject Collections entry for the SocialPersona of a record's author, under the
    record's person, upserted on ``social_persona_key_field`` (``keyed=False``: without it)."""
    provider, media = persona_provider(record.network)
    handle = bare_handle(author.handle)
    key = {settings.social_persona_key_field: persona_key(record)} if keyed else {}
    return {
        "attributes": {"type": SOCIAL_PERSONA},
        **key,
        # The handle, or the name where a network gives none (Facebook).
        "Name": clip(handle or author.name or author.user_id, NAME_MAX),
        "RealName": clip(author.name, NAME_MAX) if author.name else None,
        "Provider": provider,
        "MediaProvider": media,
        "ExternalId": author.user_id,
        "ParentId": record.who.id,
        # Left out where the network has no public page for the account (Facebook).
        **({"ProfileUrl": url} if (url := profile_url(record.network, author)) else {}),
    }


URL_MAX = 255  # a Salesforce URL field's length
# Handles as they can stand in a profile address as they are (X: letters, digits and "_";
# Instagram: also "."; a Bluesky handle is a domain name, its DID has ":" too).
_X_HANDLE = re.compile(r"[A-Za-z0-9_]{1,50}")
_IG_HANDLE = re.compile(r"[A-Za-z0-9._]{1,30}")
_BSKY_ID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]+")


def profile_url(network: str, author: Persona) -> str | None:
    """The account's public profile page (SocialPersona.ProfileUrl): made from the handle
    where the network's address is the handle (X, Instagram), from the DID on Bluesky (a
    handle may change or stop verifying; the DID's page always resolves), and as the network
    gave it on Mastodon (the account's ``url``: the instance is the account's own, never to
    be guessed from a handle). None where there is none: Facebook's Page-scoped ids have no
    public page, and a handle that cannot stand in an address is not made into one."""
    handle = bare_handle(author.handle)
    if network in ("x", "twitter"):
        url = f"https://x.com/{handle}" if handle and _X_HANDLE.fullmatch(handle) else None
    elif network == "instagram":
        ig = handle is not None and _IG_HANDLE.fullmatch(handle) is not None
        url = f"https://www.instagram.com/{handle}/" if ig else None
    elif network == "bluesky":
        did = _BSKY_ID.fullmatch(author.user_id) is not None
        url = f"https://bsky.app/profile/{author.user_id}" if did else None
    elif network == "mastodon":
        given = author.url or ""
        page = given.startswith(("https://", "http://")) and not any(c.isspace() for c in given)
        url = given if page else None
    else:
        url = None
    return url if url is not None and len(url) <= URL_MAX else None


def describe_errors(errors: Sequence[Any]) -> tuple[str | None, str]:
    """First error code and every message. Collections say statusCode, the REST API errorCode."""
    codes: list[str] = []
    messages: list[str] = []
    for err in (e if isinstance(e, Mapping) else {"message": str(e)} for e in errors):
        if code := err.get("statusCode") or err.get("errorCode"):
            codes.append(str(code))
        message = str(err.get("message") or "").strip()
        if fields := err.get("fields"):
            message += f" (fields: {', '.join(map(str, fields))})"
        messages.append(message)
    return (codes[0] if codes else None), "; ".join(m for m in messages if m)


def collection_items(keys: Sequence[str], body: Any, action: str) -> list[Mapping[str, Any]]:
    """An sObject Collections answer's items, one per record asked about, in request order;
    an answer of another length is unreadable (retried), never matched up by guess."""
    if not isinstance(body, list) or len(body) != len(keys):
        got = f"{len(body)} results" if isinstance(body, list) else type(body).__name__
        raise TransientError(
            f"salesforce {action}: expected {len(keys)} results, got {got}", system=SYSTEM
        )
    return [item if isinstance(item, Mapping) else {} for item in body]


def refusal(code: str) -> Refusal:
    """What Salesforce's refusal of one record means to the writer, by its status code."""
    if code in GONE_RECORD_ERRORS:
        return Refusal.GONE
    if code in RETRYABLE_RECORD_ERRORS:
        return Refusal.RETRY
    return Refusal.FINAL


def parse_upsert_results(external_ids: Sequence[str], body: Any) -> list[WriteResult]:
    """One WriteResult per record from an sObject Collections answer, in request order."""
    results = []
    items = collection_items(external_ids, body, "upsert")
    for external_id, item in zip(external_ids, items, strict=True):
        crm_id = item.get("id")
        if item.get("success") is True:
            results.append(WriteResult(external_id, True, crm_id, created=item.get("created")))
            continue
        code, message = describe_errors(item.get("errors") or [])
        error_code, error_message = code or "UNKNOWN_ERROR", message or "no reason given"
        results.append(
            WriteResult(
                external_id, False, crm_id, None, error_code, error_message, refusal(error_code)
            )
        )
    return results
