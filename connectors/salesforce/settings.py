"""Settings of the Salesforce CRM connector (``type = "salesforce"``).

Every Salesforce name (objects, fields) is configurable because orgs name custom fields their own
way. Names are checked to be plain API names: they are pasted into SOQL and URL paths.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncd.contracts import ConnectorSettings, Duration
from syncd.contracts.secrets import SecretRef
from syncd.contracts.urls import require_tls

# Matched whole (fullmatch): with re.match, "$" would also accept a name ending in a newline.
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _api_name(value: str) -> str:
    if not _API_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a Salesforce API name (letters, digits, underscores)")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return require_tls(value).rstrip("/")


ApiName = Annotated[str, AfterValidator(_api_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskFields(_Strict):
    """Custom fields of the history object that carry the social side of a Task."""

    network: ApiName = "Social_Network__c"
    direction: ApiName = "Social_Direction__c"
    handle: ApiName = "Social_Handle__c"
    post_url: ApiName = "Social_Post_URL__c"
    conversation_id: ApiName = "Social_Conversation_Id__c"
    # Set only by `[compliance] action = "mark"` when the post is deleted on the network.
    post_status: ApiName = "Social_Post_Status__c"


class IdentityFields(_Strict):
    """The person-object fields holding one network's immutable user id and its handle
    (None for a network with no handle: Facebook).

    ``scope``, only for a network whose connector keys an author as ``<scope>:<id>``
    (:data:`SCOPED`): the brand account (Facebook Page id, Instagram account id) that a bare
    id in ``user_id`` belongs to. A rep or another integration stores the PSID or IGSID as
    Meta gives it, without its Page; such a value is read as ``<scope>:<value>``. Without a
    scope a bare value matches nothing: the same number can be another person's id under
    another Page, so it is never taken for one.
    """

    user_id: ApiName
    handle: ApiName | None = None
    scope: str | None = Field(default=None, pattern=r"^[0-9]{1,64}$")

    def on_file(self, value: str | None) -> str | None:
        """A ``user_id`` field's value as syncd keys it: ``<scope>:<value>`` for a bare id
        when a scope is set, else as held."""
        text = (value or "").strip()
        if not text:
            return None
        if self.scope is not None and ":" not in text:
            return f"{self.scope}:{text}"
        return text

    def bare(self, user_id: str) -> str | None:
        """The bare id a rep would have typed for ``user_id``, when it is of this scope."""
        scope, sep, rest = user_id.strip().partition(":")
        if self.scope is None or not sep or scope != self.scope or not rest or ":" in rest:
            return None
        return rest


def _field_path(value: str) -> str:
    parts = value.split(".")
    if len(parts) > 2 or not all(_API_NAME.fullmatch(p) for p in parts):
        raise ValueError(
            f"{value!r} is not a field of the person or of its Account "
            "(a field API name, or Account.<field>)"
        )
    return value


FieldPath = Annotated[str, AfterValidator(_field_path)]
# A picklist value as the API takes it: non-empty, at most 255 characters.
PicklistValue = Annotated[str, Field(min_length=1, max_length=255)]


class PrioritySettings(_Strict):
    """``[crm.priority]``: a record's priority comes from who the customer is, never from
    the network they wrote on. ``field`` is read on the Contact (a field of its own, or of
    its Account: ``Account.CustomerPriority__c``), ``lead_field`` on a Lead (Leads have no
    Account; unset: a Lead's records get the default). Their values map to Task.Priority
    (``task``) and Case.Priority (``case``); ``default`` is the value taken for a person
    whose value is empty or maps to nothing (unset: the record carries no priority and the
    org's picklist default applies). Values match whatever their case."""

    field: FieldPath = "Account.CustomerPriority__c"
    lead_field: ApiName | None = None
    task: dict[str, PicklistValue] = Field(default_factory=dict)
    case: dict[str, PicklistValue] = Field(default_factory=dict)
    default: str | None = None

    @field_validator("task", "case")
    @classmethod
    def _distinct(cls, value: dict[str, str]) -> dict[str, str]:
        folded: dict[str, str] = {}
        for key in value:
            if not key.strip():
                raise ValueError("a customer value to map is empty")
            if (same := folded.setdefault(key.strip().casefold(), key)) != key:
                raise ValueError(f"{same!r} and {key!r} are the same value (case is ignored)")
        return value

    @field_validator("default")
    @classmethod
    def _mapped(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        for name in ("task", "case"):
            mapping = info.data.get(name)
            if mapping and _mapped(mapping, value) is None:
                raise ValueError(
                    f"{value!r} is not a value the {name} map names "
                    f"({', '.join(map(repr, mapping))})"
                )
        return value

    @model_validator(mode="after")
    def _something_mapped(self) -> Self:
        if not self.task and not self.case:
            raise ValueError("maps nothing: give task (and/or case), customer value = priority")
        return self

    def column(self, obj: str) -> str | None:
        """Where ``obj``'s priority value is read (None: not on that object)."""
        return self.field if obj == "Contact" else self.lead_field if obj == "Lead" else None

    def task_priority(self, value: str | None) -> str | None:
        """Task.Priority for a customer's value."""
        return self._pick(self.task, value)

    def case_priority(self, value: str | None) -> str | None:
        """Case.Priority for a customer's value."""
        return self._pick(self.case, value)

    def _pick(self, mapping: dict[str, str], value: str | None) -> str | None:
        if not mapping:
            return None
        found = _mapped(mapping, value) if value else None
        if found is None and self.default is not None:
            found = _mapped(mapping, self.default)
        return found


class CaseSettings(_Strict):
    """``[crm.cases]``: social conversations worked as Cases, the way Social Customer
    Service's inbound handler worked them. An inbound post from a customer linked to a
    Contact opens a Case (``open``: every such post, only those answering the brand, or
    none), or joins its conversation's: the Case of the post it answers, else its author's
    latest Case whose last post is at most ``join_window`` old. A Case closed since is
    reopened (Status ``reopen_status``) when the post came within ``reopen_window`` of its
    closing, else the post opens a new one. The brand's replies join the Case of the post
    they answer. Cases are upserted on ``key_field`` (a Unique, case-sensitive External ID
    field that `syncd salesforce fields` adds); Origin is the network (``origin`` maps a
    network to another value); Priority comes from ``[crm.priority] case``."""

    open: Literal["all", "replies", "none"] = "all"
    join_window: Duration = 24 * 3600.0
    reopen_window: Duration = 5 * 86400.0  # the inbound handler's default: 5 days
    reopen_status: PicklistValue = "New"
    key_field: ApiName = "Syncd_Key__c"
    origin: dict[str, PicklistValue] = Field(default_factory=dict)


def _mapped(mapping: dict[str, str], value: str) -> str | None:
    wanted = value.strip().casefold()
    return next((v for k, v in mapping.items() if k.strip().casefold() == wanted), None)


# The documented default fields of each network syncd reads, taken for a network the sources
# read and ``[crm.identity_fields]`` does not name. The user id is what the network's
# connector keys a person on, the one value that never changes: X's numeric id, Mastodon's
# actor URI (an account's numeric id is local to the instance answering), Bluesky's DID. The
# handle is what people type into a CRM: X's @name, Mastodon's acct made absolute
# (user@domain), Bluesky's handle (a domain name).
IDENTITY_DEFAULTS: dict[str, IdentityFields] = {
    "x": IdentityFields(user_id="X_User_Id__c", handle="X_Handle__c"),
    "mastodon": IdentityFields(user_id="Mastodon_Actor_URI__c", handle="Mastodon_Account__c"),
    "bluesky": IdentityFields(user_id="Bluesky_DID__c", handle="Bluesky_Handle__c"),
    # Meta's ids are scoped to the brand account: the connector keys an author as
    # "<page-id>:<psid>" / "<ig-account-id>:<igsid>", and that is what these fields hold (a
    # bare id only with the field's ``scope``). Facebook has no handle; an Instagram
    # username is mutable, evidence like any handle, never the key.
    "facebook": IdentityFields(user_id="Facebook_PSID__c", handle=None),
    "instagram": IdentityFields(user_id="Instagram_IGSID__c", handle="Instagram_Username__c"),
}

# Networks whose user ids carry the brand account they are scoped to (``<scope>:<id>``),
# and the MessagingEndUser.MessageType of their Salesforce messaging channels.
SCOPED = frozenset({"facebook", "instagram"})
MESSAGE_TYPES = {"facebook": "Facebook", "instagram": "Instagram"}
# Networks with no handle at all: their identity fields are the user id alone.
NO_HANDLE = frozenset({"facebook"})


# The keys of each auth method, for the validation messages.
_PASSWORD = ("username", "password", "security_token")
_SESSION = ("instance_url", "session_id")
_JWT = ("username", "consumer_key", "private_key_file")


class SalesforceSettings(ConnectorSettings):
    name: str = "salesforce"
    type: Literal["salesforce"]

    login_url: HttpUrl = "https://login.salesforce.com"
    api_version: str = Field(default="61.0", pattern=r"^\d{2,3}\.0$")
    timeout: Duration = 30.0

    # Exactly one auth method: username + password (+ security_token), instance_url +
    # session_id, or username + consumer_key + private_key_file (JWT bearer).
    username: str | None = None
    password: SecretRef | None = None
    # Optional: orgs that allow-list the caller's IP take the password alone.
    security_token: SecretRef | None = None
    instance_url: HttpUrl | None = None
    session_id: SecretRef | None = None
    consumer_key: str | None = None
    private_key_file: FilePath | None = None

    # Where each interaction is written: a Task (on the person's activity timeline), a
    # SocialPost (Social Customer Service: the Case feed and related lists, no timeline), or
    # both, each once, through its own delivery.
    history: list[Literal["task", "social_post"]] = ["task"]
    # SocialPost's Unique, case-sensitive External ID field its upserts are keyed on (the
    # Task's key format: "<network>:<post id>"); `syncd salesforce fields` creates it.
    social_post_key_field: ApiName = "Syncd_Key__c"
    # "query": for an org whose admin cannot add that field, SocialPosts are found by
    # ExternalPostId + Provider (as Salesforce's inbound handler did) and updated, or created.
    social_post_match: Literal["key", "query"] = "key"
    history_object: ApiName = "Task"
    external_id_field: ApiName = "Social_Post_Id__c"
    # SocialPersona's Unique, case-sensitive External ID field (`syncd salesforce fields`
    # creates it; the standard ExternalId is plain text, no upsert key).
    social_persona_key_field: ApiName = "Syncd_Key__c"
    task_status: str = "Completed"
    deleted_status: str = "Deleted"  # task_fields.post_status of a post deleted on the network
    task_fields: TaskFields = TaskFields()
    person_objects: list[ApiName] = Field(default=["Contact", "Lead"], min_length=1)
    # Filled in by for_networks(): the networks the sources read and this table does not name
    # get their IDENTITY_DEFAULTS. Without sources to go by (settings built in code), X's.
    identity_fields: dict[str, IdentityFields] = Field(
        default_factory=lambda: {"x": IDENTITY_DEFAULTS["x"]}
    )
    # Priority by customer (None: records carry no priority; see PrioritySettings).
    priority: PrioritySettings | None = None
    # Conversations as Cases (None: no Cases; see CaseSettings).
    cases: CaseSettings | None = None
    # Also look authors up in the standard SocialPersona object (by ExternalId, then Name).
    social_personas: bool = False
    # Where the org uses Salesforce messaging (the MessagingEndUser object exists): look up
    # Facebook and Instagram authors' ids there too, with the social persona matcher.
    messaging_end_users: bool = True
    # Leads made for unknown authors (only when the resolver is configured to make them):
    # Salesforce requires a Company, and LeadSource says where the Lead came from.
    lead_company: str = Field(default="Unknown (from social)", min_length=1, max_length=255)
    lead_source: str = Field(default="Social", min_length=1, max_length=255)

    @model_validator(mode="after")
    def _one_auth_method(self) -> Self:
        given = {k for k in {*_PASSWORD, *_SESSION, *_JWT} if getattr(self, k) is not None}
        # username belongs to two methods, so only the other keys say which method is meant.
        methods = [
            keys
            for keys, marker in (
                (_PASSWORD, {"password", "security_token"}),
                (_SESSION, {"instance_url", "session_id"}),
                (_JWT, {"consumer_key", "private_key_file"}),
            )
            if given & marker
        ]
        choices = (
            "set exactly one of: username + password (+ security_token); "
            "instance_url + session_id; username + consumer_key + private_key_file"
        )
        if not methods:
            raise ValueError(f"no Salesforce auth method configured: {choices}")
        if len(methods) > 1:
            mixed = ", ".join(sorted(given))
            raise ValueError(f"auth methods are mixed (keys given: {mixed}): {choices}")
        if not self.history or len(set(self.history)) != len(self.history):
            raise ValueError('history: "task", "social_post" or both, each once')
        keys = methods[0]
        required = [k for k in keys if k != "security_token"]
        missing = [k for k in required if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{' + '.join(required)} auth is missing: {', '.join(missing)}")
        if keys is _SESSION and self.username is not None:
            raise ValueError("username is not used with instance_url + session_id auth")
        for network, fields in self.identity_fields.items():
            if fields.handle is None and network not in NO_HANDLE:
                raise ValueError(f"identity_fields.{network}: handle is missing")
            if fields.scope is not None and network not in SCOPED:
                raise ValueError(
                    f"identity_fields.{network}.scope: only for {', '.join(sorted(SCOPED))}"
                )
        return self

    def for_networks(self, networks: Sequence[str]) -> Self:
        """Identity fields for exactly the networks read: those ``[crm.identity_fields]``
        names as given, every other one in use by its documented default. With no
        ``identity_fields`` table at all, only the networks read are looked up, so an X-only
        config asks for X's two fields, as it always did, and a Mastodon-only one never for
        X's. A network with no default and no table is left out (its look-ups are skipped,
        with a warning)."""
        if not networks:  # nothing to go by (a config always has sources)
            return self
        given = self.identity_fields if "identity_fields" in self.model_fields_set else {}
        fields = dict(given)
        for network in networks:
            if network not in fields and network in IDENTITY_DEFAULTS:
                fields[network] = IDENTITY_DEFAULTS[network]
        if fields == self.identity_fields:
            return self
        # model_copy skips validation: the fields are IdentityFields already.
        return self.model_copy(update={"identity_fields": fields})

    def priority_column(self, obj: str) -> str | None:
        """The field ``obj``'s priority value is read from, None when none is configured."""
        return self.priority.column(obj) if self.priority is not None else None

    def task_priority(self, value: str | None) -> str | None:
        """Task.Priority for a customer's priority value; None: leave it to the org."""
        return self.priority.task_priority(value) if self.priority is not None else None

    def case_priority(self, value: str | None) -> str | None:
        """Case.Priority for a customer's priority value; None: leave it to the org."""
        return self.priority.case_priority(value) if self.priority is not None else None

    @property
    def auth_method(self) -> Literal["password", "session", "jwt"]:
        if self.session_id is not None:
            return "session"
        if self.consumer_key is not None:
            return "jwt"
        return "password"

    @property
    def login_route(self) -> tuple[str, str | None]:
        """simple-salesforce's ``domain``, and where to send its login requests instead, if not
        to ``https://{domain}.salesforce.com`` (a sandbox, a proxy, a stand-in)."""
        parts = urlsplit(self.login_url)
        host = parts.hostname or ""
        plain = parts.scheme == "https" and parts.port is None and not parts.path
        if plain and host.endswith(".salesforce.com"):
            return host.removesuffix(".salesforce.com"), None
        return "login", self.login_url
