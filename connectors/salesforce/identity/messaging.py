"""Authors known to Salesforce messaging: ``MessagingEndUser`` records.

An org that answers Facebook Messenger or Instagram Direct in Salesforce (Messaging for
In-App and Web / enhanced channels) keeps one MessagingEndUser per person and channel:
``MessagingPlatformKey`` is the person's id on the network (the PSID for Messenger, the
IGSID for Instagram), ``MessageType`` says which network ('Facebook', 'Instagram'),
``MessagingChannelId`` names the channel, whose own ``MessagingPlatformKey`` is the Page (or
Instagram account) id, and ``ContactId`` the Contact an agent linked [doc: Object Reference,
MessagingEndUser and Messaging Channel Input]. The object exists only where messaging is
set up; elsewhere describe answers NOT_FOUND and nothing is asked.

syncd keys a Meta author as ``<page-id>:<psid>`` (the id is scoped to the Page), so a record
counts only when its channel's key is the author's Page: the bare number alone could be
someone else's on another Page. A record with no Contact links no one (a Lead on it is not
read: only a Contact is the agent's statement of who the person is).

Pure here (SOQL and matching); :class:`MessagingEndUsers` makes the calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.salesforce.identity.lookup import (
    askable,
    chunks,
    field,
    priority_of,
    soql_quote,
    url_cost,
)
from connectors.salesforce.identity.people import id18
from connectors.salesforce.records import SYSTEM
from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import MESSAGE_TYPES, SalesforceSettings
from syncd.errors import NotFound
from syncd.model import CrmRef, IdentityKey

__all__ = ["OBJECT", "MessagingEndUsers", "end_user_soql", "match_end_users", "split"]

log = logging.getLogger("connectors.salesforce")

OBJECT = "MessagingEndUser"


def split(user_id: str) -> tuple[str, str] | None:
    """``(scope, id)`` of a scoped user id (``<page-id>:<psid>``), else None."""
    scope, sep, bare = user_id.strip().partition(":")
    if not sep or not scope or not bare or ":" in bare:
        return None
    return scope, bare


def _bare_ids(keys: Sequence[IdentityKey]) -> list[str]:
    found = (split(k.user_id) for k in keys)
    return list(dict.fromkeys(p[1] for p in found if p is not None and askable(p[1])))


def end_user_chunks(keys: Sequence[IdentityKey]) -> Iterator[list[IdentityKey]]:
    """Runs of keys whose bare ids fit one query URL (keys not scoped are left out)."""
    scoped = [k for k in keys if (p := split(k.user_id)) is not None and askable(p[1])]
    return chunks(scoped, lambda k: url_cost(soql_quote(k.user_id)))


def end_user_soql(
    message_type: str, keys: Sequence[IdentityKey], priority: str | None = None
) -> str:
    """ONE query for a chunk of one network's keys: the end users with a Contact holding
    any of their bare ids, with the channel each belongs to (and the Contact's ``priority``
    field: ``Account.CustomerPriority__c`` is asked as ``Contact.Account.…``)."""
    ids = ", ".join(map(soql_quote, _bare_ids(keys)))
    tier = f"Contact.{priority}, " if priority else ""
    return (
        f"SELECT Id, MessagingPlatformKey, ContactId, Contact.Name, {tier}"
        f"MessagingChannel.MessagingPlatformKey FROM {OBJECT} "
        f"WHERE MessageType = {soql_quote(message_type)} AND ContactId != null "
        f"AND MessagingPlatformKey IN ({ids})"
    )


def match_end_users(
    keys: Sequence[IdentityKey], rows: Sequence[Mapping[str, Any]], priority: str | None = None
) -> dict[IdentityKey, list[CrmRef]]:
    """The Contacts each key's end users are linked to: records whose platform key is the
    key's bare id AND whose channel is the key's scope. Several Contacts stay several (the
    resolver shows them to a person, never picks one)."""
    by_scoped: dict[str, dict[str, CrmRef]] = {}
    for row in rows:
        bare = str(field(row, "MessagingPlatformKey") or "").strip()
        scope = str(field(row, "MessagingChannel.MessagingPlatformKey") or "").strip()
        contact = id18(field(row, "ContactId"))
        if not (bare and scope and contact):
            continue
        name = field(row, "Contact.Name")
        tier = priority_of(row, f"Contact.{priority}" if priority else None)
        ref = CrmRef("Contact", contact, str(name) if name else None, tier)
        by_scoped.setdefault(f"{scope}:{bare}", {})[contact] = ref
    found: dict[IdentityKey, list[CrmRef]] = {}
    for key in keys:
        if hits := by_scoped.get(key.user_id.strip()):
            found[key] = list(hits.values())
    return found


class MessagingEndUsers:
    """Looks authors up among the org's MessagingEndUser records, once the org is known to
    have the object (one describe per CRM connection, remembered)."""

    def __init__(self, session: SalesforceSession, settings: SalesforceSettings) -> None:
        self.session = session
        self.settings = settings
        self._present: bool | None = None

    def present(self, budget: Budget) -> bool:
        """Whether the org has the object (and the integration user may read it)."""
        if self._present is None:
            try:
                answer = self.session.restful(
                    f"describe {OBJECT}", f"sobjects/{OBJECT}/describe", budget
                )
            except NotFound:
                self._present = False
            else:
                self._present = isinstance(answer, Mapping) and answer.get("queryable") is True
            if not self._present:
                log.info("%s: no readable %s: messaging ids not looked up", SYSTEM, OBJECT)
        return self._present

    def people(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, list[CrmRef]]:
        """Each key's Contacts by its end users; no call at all without a Meta key."""
        if "Contact" not in self.settings.person_objects:
            return {}
        by_type: dict[str, list[IdentityKey]] = {}
        for key in dict.fromkeys(keys):
            if (kind := MESSAGE_TYPES.get(key.network)) is not None:
                by_type.setdefault(kind, []).append(key)
        if not by_type:
            return {}
        budget = Budget()
        if not self.present(budget):
            return {}
        found: dict[IdentityKey, list[CrmRef]] = {}
        priority = self.settings.priority_column("Contact")
        for kind, pending in by_type.items():
            for chunk in end_user_chunks(pending):
                soql = end_user_soql(kind, chunk, priority)
                rows = self.session.query(f"lookup {OBJECT}", soql, budget)
                found.update(match_end_users(chunk, rows, priority))
        return found
