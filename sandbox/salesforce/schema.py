"""What the Salesforce stand-in knows about objects before any record exists.

Standard objects carry their real key prefixes and the standard fields syncd touches, so SOQL
on a fresh org accepts ``SELECT Id, Name FROM Contact`` and rejects a misspelt field exactly
as a real org would. Custom fields come into existence when a record first carries them (the
stand-in has no setup UI); configured external-id fields exist from the start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

# Real record ids are 15 case-sensitive base-62 characters plus a 3-character checksum that
# makes them unique case-insensitively. Clients (and syncd) accept both lengths, so the
# stand-in produces and checks real ones.
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Z0-5]{3})?$")
# The two characters after the prefix name the pod; any fixed pair will do.
POD = "5e"


def id18(id15: str) -> str:
    suffix = ""
    for start in (0, 5, 10):
        bits = 0
        for i, c in enumerate(id15[start : start + 5]):
            if "A" <= c <= "Z":
                bits |= 1 << i
        suffix += _CHECKSUM[bits]
    return id15 + suffix


def normalize_id(value: object) -> str | None:
    """The 18-character form of a well-formed record id, else None."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    full = id18(value[:15])
    return full if len(value) == 15 or value == full else None


def make_id(prefix: str, serial: int) -> str:
    digits = []
    for _ in range(10):
        serial, rem = divmod(serial, 62)
        digits.append(_BASE62[rem])
    return id18(prefix + POD + "".join(reversed(digits)))


def _fields(spec: str) -> dict[str, str]:
    """``"Name Email:email"`` → ``{"Name": "string", "Email": "email"}``."""
    out = {}
    for item in spec.split():
        name, _, type_ = item.partition(":")
        out[name] = type_ or "string"
    return out


# Field types as describe names them; lookups the stand-in enforces are in REFERENCES.
COMMON_FIELDS = _fields(
    "Id:id IsDeleted:boolean CreatedDate:datetime CreatedById:reference "
    "LastModifiedDate:datetime LastModifiedById:reference SystemModstamp:datetime"
)
_PERSON = (
    "FirstName LastName Name Email:email Phone:phone MobilePhone:phone Title "
    "Description:textarea LeadSource:picklist "
)
_OWNED = " MasterRecordId:reference OwnerId:reference"


@dataclass(frozen=True)
class StandardObject:
    prefix: str
    fields: dict[str, str]
    required: tuple[str, ...] = ()
    defaults: tuple[tuple[str, object], ...] = ()


STANDARD_OBJECTS: dict[str, StandardObject] = {
    "Account": StandardObject(
        "001",
        _fields(
            "Name Description:textarea Phone:phone Website:url AccountNumber Site "
            "Type:picklist Industry:picklist BillingCity BillingCountry ParentId:reference" + _OWNED
        ),
        ("Name",),
    ),
    "Contact": StandardObject(
        "003",
        _fields(_PERSON + "AccountId:reference Department MailingCity MailingCountry" + _OWNED),
        ("LastName",),
    ),
    "Lead": StandardObject(
        "00Q",
        _fields(
            _PERSON + "Company Website:url City Country Status:picklist IsConverted:boolean "
            "ConvertedContactId:reference ConvertedAccountId:reference" + _OWNED
        ),
        ("LastName", "Company"),
        (("Status", "Open - Not Contacted"), ("IsConverted", False)),
    ),
    "Task": StandardObject(
        "00T",
        _fields(
            "Subject:combobox Description:textarea WhoId:reference WhatId:reference "
            "ActivityDate:date Status:picklist Priority:picklist IsClosed:boolean "
            "IsArchived:boolean TaskSubtype:picklist Type:picklist CallType:picklist "
            "IsReminderSet:boolean ReminderDateTime:datetime OwnerId:reference"
        ),
        defaults=(("Status", "Not Started"), ("Priority", "Normal"), ("TaskSubtype", "Task")),
    ),
    # Social Customer Service: present only in an org that has it (GATED). Required fields,
    # lookups and picklists as the object reference and a real org's describe list them
    # (../shared/research/salesforce-social.md §2.3, §2.4).
    "SocialPost": StandardObject(
        "0ST",
        _fields(
            "Name Provider:picklist ExternalPostId Handle Content:textarea Posted:datetime "
            "PostUrl:url MessageType:picklist IsOutbound:boolean PersonaId:reference "
            "MediaProvider MediaType Headline ResponseContextExternalId Status:picklist "
            "WhoId:reference ReplyToId:reference ParentId:reference OwnerId:reference"
        ),
        ("Name", "Posted"),
        (("IsOutbound", False),),
    ),
    "SocialPersona": StandardObject(
        "0SP",
        _fields(
            "Name Provider:picklist ExternalId ParentId:reference ProfileUrl:url RealName "
            "ExternalPictureURL:url IsDefault:boolean Bio:textarea MediaProvider MediaType"
        ),
        ("Name", "Provider", "ParentId"),
        (("IsDefault", False),),
    ),
    # Salesforce messaging (Messenger, Instagram, SMS, WhatsApp): present only in an org
    # that uses it (GATED); fields as the object reference lists them.
    "MessagingChannel": StandardObject(
        "0Mj",
        _fields(
            "DeveloperName MasterLabel MessageType:picklist MessagingPlatformKey "
            "IsActive:boolean Language:picklist"
        ),
        ("DeveloperName", "MasterLabel", "MessageType", "MessagingPlatformKey"),
        (("IsActive", True),),
    ),
    "MessagingEndUser": StandardObject(
        "0PA",
        _fields(
            "Name MessageType:picklist MessagingPlatformKey MessagingChannelId:reference "
            "ContactId:reference AccountId:reference LeadId:reference IsoCountryCode Locale "
            "HasInitialResponseSent:boolean IsFullyOptedIn:boolean "
            "MessagingConsentStatus:picklist OwnerId:reference"
        ),
        ("Name", "MessageType", "MessagingChannelId", "MessagingPlatformKey"),
        (("HasInitialResponseSent", False), ("IsFullyOptedIn", False)),
    ),
    "User": StandardObject(
        "005", _fields("Username Name FirstName LastName Email:email IsActive:boolean")
    ),
    "Organization": StandardObject(
        "00D", _fields("Name IsSandbox:boolean InstanceName OrganizationType:picklist")
    ),
    # Nothing is required on create; Status defaults to the org's default CaseStatus, and
    # IsClosed and ClosedDate follow Status.
    "Case": StandardObject(
        "500",
        _fields(
            "CaseNumber Subject Description:textarea Status:picklist Origin:picklist "
            "Priority:picklist Type:picklist Reason:picklist IsClosed:boolean "
            "ClosedDate:datetime IsEscalated:boolean ContactId:reference AccountId:reference "
            "ParentId:reference SourceId:reference OwnerId:reference"
        ),
        defaults=(("Status", "New"), ("Priority", "Medium"), ("IsEscalated", False)),
    ),
    "Opportunity": StandardObject(
        "006",
        _fields(
            "Name StageName:picklist CloseDate:date AccountId:reference ContactId:reference "
            "Amount:currency OwnerId:reference"
        ),
        ("Name", "StageName", "CloseDate"),
    ),
}

# Objects an org has only with a feature turned on (SalesforceSandbox(messaging=True),
# SalesforceSandbox(social=False) for an org without Social Customer Service). Without it the
# object is unknown to the org, as an unknown name is: SOQL answers INVALID_TYPE ("sObject type
# 'SocialPost' is not supported"), REST calls naming it 404 NOT_FOUND.
GATED = {
    "MessagingChannel": "messaging",
    "MessagingEndUser": "messaging",
    "SocialPost": "social",
    "SocialPersona": "social",
}

# Fields the platform computes: writing them is INVALID_FIELD_FOR_INSERT_UPDATE.
READ_ONLY = {
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
}
COMPUTED: dict[str, frozenset[str]] = {
    "Contact": frozenset({"Name"}),
    "Lead": frozenset({"Name"}),
    "User": frozenset({"Name"}),
    "Task": frozenset({"IsClosed", "IsArchived"}),
    "Case": frozenset({"CaseNumber", "IsClosed", "ClosedDate"}),
}


@dataclass(frozen=True)
class Picklist:
    values: tuple[str, ...]
    # Restricted: a value not in the list is refused (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST);
    # otherwise any text is stored, as Salesforce does for an unrestricted picklist.
    restricted: bool = False
    closed: tuple[str, ...] = ()  # Case.Status: the values whose CaseStatus IsClosed


# SocialPost.Provider / SocialPersona.Provider as a real org's describe lists them: no
# Mastodon, Bluesky or Threads (such networks are "Other" + MediaProvider).
SOCIAL_PROVIDERS = (
    "Twitter", "Facebook", "LinkedIn", "YouTube", "Klout", "Rypple", "GooglePlus", "SinaWeibo",
    "WeChat", "Line", "WhatsApp", "Pinterest", "Instagram", "vKontakte", "Azure", "Skype",
    "Telegram", "Snapchat", "Messenger", "Kik", "KakaoTalk", "QQ", "SMS", "Spark",
    "InstagramBusiness", "GoogleRtc", "Other",
)  # fmt: skip
# Picklists with the values a new org has; an admin may change them (OrgAdmin.set_picklist).
# Case and Task picklists are not restricted by default (object reference), the social
# objects' Provider is; MessageType is taken as restricted too, so a value syncd makes up
# fails here rather than in an org that restricts it.
PICKLISTS: dict[tuple[str, str], Picklist] = {
    ("SocialPost", "Provider"): Picklist(SOCIAL_PROVIDERS, restricted=True),
    ("SocialPersona", "Provider"): Picklist(SOCIAL_PROVIDERS, restricted=True),
    ("SocialPost", "MessageType"): Picklist(
        ("Post", "Comment", "Private", "Retweet", "Reply", "Direct", "Tweet"), restricted=True
    ),
    ("Case", "Origin"): Picklist(("Phone", "Email", "Web")),
    ("Case", "Priority"): Picklist(("High", "Medium", "Low")),
    ("Case", "Status"): Picklist(("New", "Working", "Escalated", "Closed"), closed=("Closed",)),
    ("Task", "Priority"): Picklist(("High", "Normal", "Low")),
    ("Task", "Status"): Picklist(
        ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"),
        closed=("Completed",),
    ),
}

# Lookups the stand-in enforces, with the label real error messages use.
REFERENCES: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("Task", "WhoId"): ("Name ID", ("Contact", "Lead")),
    ("SocialPost", "WhoId"): ("Name ID", ("Account", "Contact", "Lead")),
    ("SocialPost", "PersonaId"): ("Persona ID", ("SocialPersona",)),
    ("SocialPost", "ReplyToId"): ("Reply To ID", ("SocialPost",)),
    ("SocialPost", "ParentId"): ("Parent ID", ("Case",)),
    ("SocialPersona", "ParentId"): ("Parent ID", ("Account", "Contact", "Lead", "SocialPost")),
    ("Case", "ContactId"): ("Contact ID", ("Contact",)),
    ("Case", "AccountId"): ("Account ID", ("Account",)),
    ("Case", "ParentId"): ("Parent Case ID", ("Case",)),
    ("Contact", "AccountId"): ("Account ID", ("Account",)),
    ("MessagingEndUser", "MessagingChannelId"): ("Messaging Channel ID", ("MessagingChannel",)),
    ("MessagingEndUser", "ContactId"): ("Contact ID", ("Contact",)),
    ("MessagingEndUser", "AccountId"): ("Account ID", ("Account",)),
    ("MessagingEndUser", "LeadId"): ("Lead ID", ("Lead",)),
}


def infer_type(value: object) -> str:
    """Describe type of a custom field, guessed from a stored value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "double"
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return "date"
    if isinstance(value, str) and re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:?\d{2})?", value
    ):
        return "datetime"
    return "string"


def label_of(api_name: str) -> str:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", api_name.removesuffix("__c"))
    return spaced.replace("_", " ").strip()


def version_label(version: str) -> str:
    """Release name of an API version: 59.0 is Winter '24, then Spring, Summer, Winter …"""
    step = int(float(version)) - 59
    return f"{('Winter', 'Spring', 'Summer')[step % 3]} '{24 + step // 3}"


API_VERSIONS = tuple(f"{v}.0" for v in range(31, 63))


def coerce(type_: str | None, value: object) -> object:
    """A written value as Salesforce stores it; ValueError when the JSON would not bind.

    Real Salesforce rejects the whole request (JSON_PARSER_ERROR) when, say, a datetime is
    sent for a date field; that is a connector bug worth failing loudly on.
    """
    if value is None or type_ not in ("date", "datetime", "boolean", "double", "currency"):
        return value
    if type_ == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif type_ in ("double", "currency"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d+)?", value):
            return float(value)
    elif type_ == "date":
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
    elif isinstance(value, str) and (stamp := parse_stamp(value)) is not None:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"
    kind = (
        "VALUE_STRING"
        if isinstance(value, str)
        else "VALUE_NUMBER_INT"
        if isinstance(value, int)
        else "START_OBJECT"
        if isinstance(value, dict)
        else "VALUE"
    )
    raise ValueError(
        f"Cannot deserialize instance of {type_} from {kind} value {value} or "
        "request may be missing a required field"
    )


def parse_stamp(value: object) -> datetime | None:
    """A date or datetime string as an aware UTC datetime (a date at midnight), else None."""
    if not isinstance(value, str):
        return None
    m = _STAMP_RE.fullmatch(value)
    if not m:
        return None
    day, clock, zone = m.groups()
    zone = "+00:00" if zone in (None, "Z") else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{day}T{clock or '00:00:00'}{zone}").astimezone(UTC)
    except ValueError:
        return None


_STAMP_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?)?"
)
