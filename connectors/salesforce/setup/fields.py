"""The Salesforce fields syncd reads and writes, as one list both ``syncd check`` (does the org
have them?) and ``syncd salesforce fields`` (a package that creates them) are derived from.

Names come from the configuration; types and lengths follow what
:func:`connectors.salesforce.records.task_record` and
:func:`connectors.salesforce.identity.people.lead_fields` write (DESIGN.md, "What lands in
Salesforce").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connectors.salesforce.cases import case_origin
from connectors.salesforce.records import persona_provider
from connectors.salesforce.settings import MESSAGE_TYPES, SCOPED, SalesforceSettings

__all__ = ["FieldSpec", "ObjectSpec", "objects", "specs"]

# The shortest identity fields (user id, handle) a check accepts, per network: what its
# connector keys people on must fit, or a Lead upserted for an author is refused with
# STRING_TOO_LONG. X: numeric ids (19 digits, room left), 15-character handles. Mastodon:
# actor URIs up to 246 characters (the connector refuses longer: "mastodon:<uri>" must fit
# 255) and user@domain handles. Bluesky: DIDs up to 64 (the connector refuses longer) and
# domain-name handles. Other networks: X's, as before.
# Facebook and Instagram: "<page-or-account-id>:<psid-or-igsid>", two Graph ids of up to
# about 20 digits each; Instagram usernames are at most 30 characters.
_IDENTITY_MIN = {
    "mastodon": (246, 64), "bluesky": (64, 64), "facebook": (64, 0), "instagram": (64, 30),
}  # fmt: skip
_IDENTITY_MIN_OTHER = (32, 16)
# Networks whose post keys, handles and thread ids fit the shorter Task fields a check has
# always accepted.
_SHORT_KEYS = frozenset({"x", "twitter"})

# Describe types a value syncd writes as text can land in. A long text area is a textarea too,
# but SOQL cannot filter on it, which is why looked-up fields also demand ``filterable``.
_TEXT = frozenset({"string", "textarea"})


@dataclass(frozen=True)
class FieldSpec:
    """One field syncd needs on one object."""

    sobject: str
    name: str
    key: str  # the configuration key that names it, so a message can offer renaming instead
    purpose: str
    # Standard: Salesforce's own field; Org: one of the org's that syncd reads and never
    # creates (the customer's priority); the others are custom fields the package creates.
    kind: Literal["Text", "Url", "Picklist", "Standard", "Org"] = "Text"
    length: int = 255  # what the package creates (Text)
    # The shortest text field a check accepts: what syncd writes for X, with room for the
    # networks to come (a longer id, a user@server handle); shorter ones refuse writes
    # with STRING_TOO_LONG.
    min_length: int = 0
    accepts: frozenset[str] = _TEXT  # describe types that work
    external_id: bool = False
    unique: bool = False
    # Unique values told apart by case ("Treat ABC and abc as different values"): Bluesky
    # rkeys and Mastodon URLs differ by case alone. False: case-insensitive, as the Task's
    # x:<digits> keys have always been created.
    case_sensitive: bool = False
    filterable: bool = False  # syncd filters on it in SOQL
    written: bool = True  # syncd writes it: the user needs create and edit access
    values: tuple[str, ...] = ()  # picklist values syncd writes
    needed: bool = True  # False: only some configurations use it, so its absence is no failure

    @property
    def custom(self) -> bool:
        return self.kind not in ("Standard", "Org")

    @property
    def case(self) -> str:
        return "case-sensitive" if self.case_sensitive else "case-insensitive"

    @property
    def path(self) -> str:
        return f"{self.sobject}.{self.name}"

    def setup(self) -> str:
        """How Setup names the field's type, e.g. ``Text(255), External ID, Unique``."""
        if self.kind == "Picklist":
            head = f"Picklist ({', '.join(self.values)})"
        elif self.kind == "Url":
            head = "URL"
        else:
            head = f"Text({self.length})"
        flags = ["External ID"] if self.external_id else []
        if self.unique:
            flags.append(f"Unique ({self.case})")
        return ", ".join([head, *flags])


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    key: str
    purpose: str
    writes: bool = False  # syncd creates and updates its records
    fields: tuple[FieldSpec, ...] = ()
    optional: bool = False  # an org without it is told what it misses, not failed


def _task_specs(s: SalesforceSettings) -> list[FieldSpec]:
    """The history object's fields (``[crm] history`` with ``task``)."""
    task, f = s.history_object, s.task_fields
    # X's keys are short (x:<19 digits>); Mastodon's and Bluesky's are URIs, written up to
    # the 255 characters a Text field holds ("mastodon:<uri>", "bluesky:<at-uri>"), handles
    # are user@domain or domain names, threads at-uris: once such a network is read, only
    # full-length fields take every value.
    wide = any(network not in _SHORT_KEYS for network in s.identity_fields)
    out = [
        FieldSpec(
            task, s.external_id_field, "[crm] external_id_field",
            "syncd's id of the post (x:<post id>): every write is an upsert on it",
            min_length=255 if wide else 64, accepts=frozenset({"string"}), external_id=True,
            unique=True, filterable=True,
        ),
        FieldSpec(task, f.network, "[crm] task_fields.network", "Social network (x)",
                  length=40, min_length=16),
        FieldSpec(
            task, f.direction, "[crm] task_fields.direction",
            "Inbound: the customer wrote; Outbound: the brand answered",
            kind="Picklist", min_length=8, accepts=_TEXT | {"picklist"},
            values=("Inbound", "Outbound"),
        ),
        FieldSpec(task, f.handle, "[crm] task_fields.handle", "The customer's @handle",
                  min_length=255 if wide else 16),
        FieldSpec(task, f.post_url, "[crm] task_fields.post_url", "Link to the post",
                  kind="Url", min_length=100, accepts=_TEXT | {"url"}),
        FieldSpec(task, f.conversation_id, "[crm] task_fields.conversation_id",
                  "The network's id of the thread the post belongs to",
                  min_length=255 if wide else 32),
    ]  # fmt: skip
    # Only where a deployment marks posts deleted on the network, so not needed by a check.
    if status := getattr(f, "post_status", None):
        out.append(
            FieldSpec(
                task,
                status,
                "[crm] task_fields.post_status",
                "Set when the post was deleted on the network",
                length=40,
                min_length=16,
                needed=False,
            )
        )
    standard = (
        ("Subject", frozenset({"string", "combobox"}), 255),
        ("Description", frozenset({"textarea"}), 0),
        ("ActivityDate", frozenset({"date"}), 0),
        ("Status", frozenset({"picklist"}), 0),
        ("WhoId", frozenset({"reference"}), 0),
    )
    out += [
        FieldSpec(task, name, "[crm] history_object", "written on every record",
                  kind="Standard", accepts=types, min_length=length,
                  values=(s.task_status,) if name == "Status" else ())
        for name, types, length in standard
    ]  # fmt: skip
    return out


def specs(settings: SalesforceSettings) -> list[FieldSpec]:
    """Every field, custom and standard, syncd uses with these settings."""
    s = settings
    out = _task_specs(s) if "task" in s.history else []
    for obj in s.person_objects:
        for network, ids in s.identity_fields.items():
            key = f"[crm.identity_fields.{network}]"
            id_min, handle_min = _IDENTITY_MIN.get(network, _IDENTITY_MIN_OTHER)
            scoped = " (<page or account id>:<id>)" if network in SCOPED else ""
            # External ID: indexed, so look-ups stay fast on a big org, and the key
            # unmatched = "lead" upserts Leads on. Not unique: an org may hold a
            # duplicate Contact until someone merges it.
            out.append(
                FieldSpec(obj, ids.user_id, f"{key} user_id",
                          f"The author's immutable {network} user id{scoped}",
                          min_length=id_min, accepts=frozenset({"string"}), external_id=True,
                          filterable=True, written=False)
            )  # fmt: skip
            if ids.handle:  # Facebook has none
                out.append(
                    FieldSpec(obj, ids.handle, f"{key} handle", f"The author's {network} handle",
                              min_length=handle_min, filterable=True, written=False)
                )  # fmt: skip
    written = SOCIAL_POST in s.history  # then listed among the fields written, below
    if s.social_personas and not written and any(persona_provider(n)[1] for n in s.identity_fields):
        # Personas of a network the Provider picklist lacks are told apart by MediaProvider.
        out.append(
            FieldSpec("SocialPersona", "MediaProvider", "[crm] social_personas",
                      "names the network of a persona whose Provider is Other",
                      kind="Standard", filterable=True, written=False)
        )  # fmt: skip
    if SOCIAL_POST in s.history:
        out += social_post_specs(s)
    out += priority_specs(s)
    out += case_specs(s)
    if messaging(s):
        # Salesforce's own object: present only where the org uses messaging, so its
        # absence is reported, not failed (see objects()).
        out += [
            FieldSpec(MESSAGING, name, "[crm] messaging_end_users",
                      "the Messenger / Instagram id, its network, channel and Contact",
                      kind="Standard", accepts=types, filterable=True, written=False,
                      needed=False)
            for name, types in (
                ("MessagingPlatformKey", frozenset({"string"})),
                ("MessageType", frozenset({"picklist"})),
                ("MessagingChannelId", frozenset({"reference"})),
                ("ContactId", frozenset({"reference"})),
            )
        ]  # fmt: skip
    return out


MESSAGING = "MessagingEndUser"
SOCIAL_POST = "social_post"
# Social Customer Service's objects: an org without it answers INVALID_TYPE / NOT_FOUND.
SOCIAL_OBJECTS = ("SocialPost", "SocialPersona")


def social_post_specs(settings: SalesforceSettings) -> list[FieldSpec]:
    """The key fields syncd upserts SocialPost and SocialPersona on, and the standard fields
    it writes there (``[crm] history`` with ``social_post``)."""
    key = "[crm] history"
    out = [
        FieldSpec(
            obj, name, f"[crm] {setting}",
            f"syncd's key of the {what}: every write is an upsert on it",
            min_length=255, accepts=frozenset({"string"}), external_id=True, unique=True,
            case_sensitive=True, filterable=True,
        )
        for obj, name, setting, what in (
            ("SocialPost", settings.social_post_key_field, "social_post_key_field", "post"),
            ("SocialPersona", settings.social_persona_key_field, "social_persona_key_field",
             "author's persona"),
        )
    ]  # fmt: skip
    # Provider is a restricted picklist: each network read needs its value (Other for those
    # the picklist lacks, MediaProvider then naming the network).
    providers = tuple(dict.fromkeys(persona_provider(n)[0] for n in settings.identity_fields))
    written = (
        ("SocialPost", "Name", frozenset({"string"}), ()),
        ("SocialPost", "Posted", frozenset({"datetime"}), ()),
        ("SocialPost", "Content", frozenset({"textarea"}), ()),
        ("SocialPost", "Handle", frozenset({"string"}), ()),
        ("SocialPost", "PostUrl", frozenset({"url", "string"}), ()),
        ("SocialPost", "Provider", frozenset({"picklist"}), providers),
        ("SocialPost", "MediaProvider", frozenset({"string"}), ()),
        ("SocialPost", "MessageType", frozenset({"picklist"}), ()),
        ("SocialPost", "IsOutbound", frozenset({"boolean"}), ()),
        ("SocialPost", "ExternalPostId", frozenset({"string"}), ()),
        ("SocialPost", "WhoId", frozenset({"reference"}), ()),
        ("SocialPersona", "Name", frozenset({"string"}), ()),
        ("SocialPersona", "Provider", frozenset({"picklist"}), providers),
        ("SocialPersona", "MediaProvider", frozenset({"string"}), ()),
        ("SocialPersona", "ExternalId", frozenset({"string"}), ()),
        ("SocialPersona", "ParentId", frozenset({"reference"}), ()),
    )
    out += [
        FieldSpec(obj, name, key, "written on every record", kind="Standard", accepts=types,
                  values=values)
        for obj, name, types, values in written
    ]  # fmt: skip
    return out


def case_specs(settings: SalesforceSettings) -> list[FieldSpec]:
    """The Case key field syncd upserts Cases on, and the Case fields it writes and reads
    (``[crm.cases]``; none without it): an Origin value per network read, the reopen
    Status, and the Case.Priority values ``[crm.priority] case`` maps to."""
    cases = settings.cases
    if cases is None:
        return []
    key = "[crm.cases]"
    out = [
        FieldSpec(
            "Case", cases.key_field, "[crm.cases] key_field",
            "syncd's key of a conversation's Case (the post that opened it): every Case is "
            "upserted on it",
            min_length=255, accepts=frozenset({"string"}), external_id=True, unique=True,
            case_sensitive=True, filterable=True,
        )
    ]  # fmt: skip
    origins = tuple(dict.fromkeys(case_origin(n, cases) for n in settings.identity_fields))
    case_map = settings.priority.case if settings.priority is not None else {}
    priorities = tuple(dict.fromkeys(case_map.values()))
    written = (
        ("Subject", frozenset({"string"}), (), key, True),
        ("Description", frozenset({"textarea"}), (), key, True),
        ("Origin", frozenset({"picklist"}), origins, f"{key} origin", True),
        ("ContactId", frozenset({"reference"}), (), key, True),
        ("Status", frozenset({"picklist"}), (cases.reopen_status,),
         f"{key} reopen_status", True),
        ("Priority", frozenset({"picklist"}), priorities, "[crm.priority] case", True),
        ("IsClosed", frozenset({"boolean"}), (), key, False),
        ("ClosedDate", frozenset({"datetime"}), (), key, False),
    )
    out += [
        FieldSpec("Case", name, setting, "written on every Case" if w else "read to reopen",
                  kind="Standard", accepts=types, values=values, written=w)
        for name, types, values, setting, w in written
    ]  # fmt: skip
    return out


def messaging(settings: SalesforceSettings) -> bool:
    """Whether syncd looks authors up in MessagingEndUser with these settings."""
    return settings.messaging_end_users and any(
        n in MESSAGE_TYPES for n in settings.identity_fields
    )


def priority_specs(settings: SalesforceSettings) -> list[FieldSpec]:
    """``[crm.priority]``: the field the customer's priority is read from (on the Contact, or
    ``Account.<field>``; ``lead_field`` on the Lead), and the Task.Priority values its map
    writes."""
    section = settings.priority
    if section is None:
        return []
    key = "[crm.priority]"
    read = frozenset({"picklist", "string", "combobox", "textarea", "boolean", "double"})
    obj, _, name = section.field.rpartition(".")
    places = [(obj or "Contact", name, f"{key} field")]
    if section.lead_field is not None:
        places.append(("Lead", section.lead_field, f"{key} lead_field"))
    out = [
        FieldSpec(where, column, setting, "the customer's priority (by customer, never by "
                  "network)", kind="Org", accepts=read, written=False)
        for where, column, setting in places
    ]  # fmt: skip
    if "task" in settings.history and section.task:
        values = tuple(dict.fromkeys(str(v) for v in section.task.values()))
        out.append(
            FieldSpec(settings.history_object, "Priority", f"{key} task",
                      "the customer's priority, mapped", kind="Standard",
                      accepts=frozenset({"picklist"}), values=values)
        )  # fmt: skip
    return out


def objects(settings: SalesforceSettings) -> list[ObjectSpec]:
    """The objects syncd uses, each with its fields, in the order a check reports them."""
    fields = specs(settings)
    named = [
        *([(settings.history_object, "[crm] history_object", "where history is written", True)]
          if "task" in settings.history else []),
        *((o, "[crm] history", "where history is written (Social Customer Service)", True)
          for o in (SOCIAL_OBJECTS if SOCIAL_POST in settings.history else ())),
        *((o, "[crm] person_objects", "where authors are looked up", False)
          for o in settings.person_objects),
    ]  # fmt: skip
    if settings.social_personas:
        named.append(("SocialPersona", "[crm] social_personas", "authors' persona records", False))
    if settings.cases is not None:
        named.append(("Case", "[crm.cases]", "where conversations become Cases", True))
    named += [
        (f.sobject, f.key, "where the customer's priority is read", False)
        for f in fields
        if f.kind == "Org"
    ]
    if messaging(settings):
        named.append((MESSAGING, "[crm] messaging_end_users",
                      "Messenger and Instagram ids Salesforce messaging linked to Contacts",
                      False))  # fmt: skip
    out: list[ObjectSpec] = []
    for name, key, purpose, writes in named:
        if any(o.name == name for o in out):
            continue
        mine = tuple(f for f in fields if f.sobject == name)
        out.append(ObjectSpec(name, key, purpose, writes, mine, optional=name == MESSAGING))
    return out
