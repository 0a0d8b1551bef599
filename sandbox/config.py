"""The sandbox as syncd sees it: the stand-ins it runs, and the one syncd configuration for them.

``syncd demo``, the benchmarks and the tests all run syncd against the stand-ins; each used to
write its own copy of this TOML, and the copies drifted apart. Text only: the sandbox imports
nothing of syncd, so what is rendered here is the file a user would write, and syncd's own
loader judges it wherever it is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

TomlValue = str | int | float | bool | Sequence[str] | Mapping[str, "TomlValue"]


@dataclass(frozen=True)
class StandIn:
    name: str  # how options and ports are keyed: ``--<name>-port``
    title: str  # how a person is told about it: "<title> stand-in"


# Declared here rather than beside the servers so that a command line can offer one port
# option per stand-in without importing (and paying for) the servers themselves.
STANDINS = (
    StandIn("x", "X"),
    StandIn("mastodon", "Mastodon"),
    StandIn("bluesky", "Bluesky"),
    StandIn("meta", "Meta"),
    StandIn("salesforce", "Salesforce"),
)
# The networks the stand-ins serve, in the order their sources are rendered and a demo names
# them. One stand-in may serve several: Meta's Graph API is both Facebook's and Instagram's.
NETWORKS = ("x", "mastodon", "bluesky", "facebook", "instagram")
# The stand-in serving each network (its name in STANDINS).
STANDIN_OF = {"x": "x", "mastodon": "mastodon", "bluesky": "bluesky"} | {
    "facebook": "meta",
    "instagram": "meta",
}
# The CRM fields the demo org keeps the Meta ids in: the Page-scoped id and the IGSID, as
# syncd keys them ("<page or account id>:<id>"), the username beside the IGSID. The CRM
# connector's defaults, rendered as ``[crm.identity_fields.<network>]`` all the same so the
# demo's configuration shows where they come from.
META_IDENTITY_FIELDS: Mapping[str, Mapping[str, str]] = {
    # No handle: Facebook gives none, and a name is not one (it never links on its own).
    "facebook": {"user_id": "Facebook_PSID__c"},
    "instagram": {"user_id": "Instagram_IGSID__c", "handle": "Instagram_Username__c"},
}

SALESFORCE_USERNAME = "integration@sandbox.example"


@dataclass(frozen=True)
class Secrets:
    """The stand-ins' secrets, and the environment variables the configuration reads them from.

    The configuration names ``env:<prefix>_X_BEARER`` and so on, never a value, as a real one
    would; whoever starts syncd puts :meth:`environ` into its environment.
    """

    prefix: str = "SYNCD_SANDBOX"
    x_bearer: str = field(default="sandbox-x-bearer", repr=False)
    salesforce_password: str = field(default="sandbox-password", repr=False)
    salesforce_token: str = field(default="sandbox-token", repr=False)
    mastodon_token: str = field(default="sandbox-mastodon-token", repr=False)
    bluesky_password: str = field(default="sandbox-bluesky-app-password", repr=False)
    # The Facebook Page's access token; it reads the Page's Instagram account too.
    meta_page_token: str = field(default="sandbox-meta-page-token", repr=False)

    @property
    def x_bearer_env(self) -> str:
        return f"{self.prefix}_X_BEARER"

    @property
    def salesforce_password_env(self) -> str:
        return f"{self.prefix}_SF_PASSWORD"

    @property
    def salesforce_token_env(self) -> str:
        return f"{self.prefix}_SF_TOKEN"

    @property
    def mastodon_token_env(self) -> str:
        return f"{self.prefix}_MASTODON_ACCESS_TOKEN"

    @property
    def bluesky_password_env(self) -> str:
        return f"{self.prefix}_BLUESKY_PASSWORD"

    @property
    def meta_page_token_env(self) -> str:
        return f"{self.prefix}_META_PAGE_TOKEN"

    def environ(self) -> dict[str, str]:
        return {
            self.x_bearer_env: self.x_bearer,
            self.meta_page_token_env: self.meta_page_token,
            self.mastodon_token_env: self.mastodon_token,
            self.bluesky_password_env: self.bluesky_password,
            self.salesforce_password_env: self.salesforce_password,
            self.salesforce_token_env: self.salesforce_token,
        }


def mastodon_source(
    url: str,
    account: str,
    *,
    secrets: Secrets | None = None,
    name: str = "acme-mastodon",
    keys: Mapping[str, TomlValue] | None = None,
) -> dict[str, TomlValue]:
    """A ``[[sources]]`` table for the Mastodon stand-in: the brand's ``account`` on it, read
    with its access token (a token is one account's, so one account per source)."""
    secrets = secrets or Secrets()
    return {
        "name": name,
        "type": "mastodon",
        "api_base_url": url,
        "access_token": f"env:{secrets.mastodon_token_env}",
        "accounts": [account],
        **(keys or {}),
    }


def bluesky_source(
    url: str,
    handle: str,
    session_file: str,
    *,
    secrets: Secrets | None = None,
    name: str = "acme-bluesky",
    keys: Mapping[str, TomlValue] | None = None,
) -> dict[str, TomlValue]:
    """A ``[[sources]]`` table for the Bluesky stand-in: the brand's ``handle``, logged in with
    its app password once; the session is kept in ``session_file`` (absolute) between polls."""
    secrets = secrets or Secrets()
    return {
        "name": name,
        "type": "bluesky",
        "service": url,
        "identifier": handle,
        "app_password": f"env:{secrets.bluesky_password_env}",
        "session_file": session_file,
        "accounts": [handle],
        **(keys or {}),
    }


def facebook_source(
    url: str,
    page_id: str,
    *,
    secrets: Secrets | None = None,
    name: str = "acme-facebook",
    keys: Mapping[str, TomlValue] | None = None,
) -> dict[str, TomlValue]:
    """A ``[[sources]]`` table for the Meta stand-in's Facebook Page ``page_id``, read with
    its Page token (a Page token reads its own Page only, so one Page per source)."""
    secrets = secrets or Secrets()
    return {
        "name": name,
        "type": "facebook",
        "api_base_url": url,
        "page_id": page_id,
        "access_token": f"env:{secrets.meta_page_token_env}",
        **(keys or {}),
    }


def instagram_source(
    url: str,
    ig_user_id: str,
    username: str,
    *,
    secrets: Secrets | None = None,
    name: str = "acme-instagram",
    keys: Mapping[str, TomlValue] | None = None,
) -> dict[str, TomlValue]:
    """A ``[[sources]]`` table for the Meta stand-in's Instagram account ``ig_user_id``
    (``username``), read with the token of the Page it is linked to."""
    secrets = secrets or Secrets()
    return {
        "name": name,
        "type": "instagram",
        "api_base_url": url,
        "ig_user_id": ig_user_id,
        "accounts": [username],
        "access_token": f"env:{secrets.meta_page_token_env}",
        **(keys or {}),
    }


def meta_identity_fields(networks: Sequence[str]) -> dict[str, TomlValue]:
    """``crm`` keys naming :data:`META_IDENTITY_FIELDS` for those of ``networks`` that are
    Meta's (nothing when none is)."""
    chosen = {n: dict(META_IDENTITY_FIELDS[n]) for n in networks if n in META_IDENTITY_FIELDS}
    return {"identity_fields": chosen} if chosen else {}


def syncd_config(
    *,
    state_url: str,
    x_url: str,
    salesforce_url: str,
    accounts: Sequence[str],
    secrets: Secrets | None = None,
    source_name: str = "acme-x",
    source: Mapping[str, TomlValue] | None = None,
    crm: Mapping[str, TomlValue] | None = None,
    tables: Mapping[str, Mapping[str, TomlValue]] | None = None,
    sources: Sequence[Mapping[str, TomlValue]] = (),
) -> str:
    """syncd's configuration for the stand-ins at these URLs: one X source, the Salesforce CRM.

    ``source`` and ``crm`` add keys to those two (a mapping value is a sub-table, e.g.
    ``user_auth``); ``tables`` are the top-level ones (``{"daemon": {"jitter": "0s"}}``);
    ``sources`` are further ``[[sources]]`` tables after the X one (:func:`mastodon_source`,
    :func:`bluesky_source`).
    Tables come in the order given, after ``[state]``; ``[crm]`` is always the last, so text
    appended to the result belongs to it.
    """
    secrets = secrets or Secrets()
    x_source: dict[str, TomlValue] = {
        "name": source_name,
        "type": "x",
        "bearer_token": f"env:{secrets.x_bearer_env}",
        "api_base_url": x_url,
        "accounts": list(accounts),
        **(source or {}),
    }
    salesforce: dict[str, TomlValue] = {
        "type": "salesforce",
        "login_url": salesforce_url,
        "username": SALESFORCE_USERNAME,
        "password": f"env:{secrets.salesforce_password_env}",
        "security_token": f"env:{secrets.salesforce_token_env}",
        **(crm or {}),
    }
    parts = [_table("state", {"url": state_url})]
    parts += [_table(name, keys) for name, keys in (tables or {}).items()]
    parts += [_table("sources", table, header="[[sources]]") for table in (x_source, *sources)]
    parts.append(_table("crm", salesforce))
    return "\n".join(parts)


def _table(path: str, keys: Mapping[str, TomlValue], header: str | None = None) -> str:
    lines: list[str] = []
    subtables: list[str] = []
    for key, value in keys.items():
        if isinstance(value, Mapping):
            subtables.append(_table(f"{path}.{key}", value))
        else:
            lines.append(f"{key} = {_value(value)}")
    if lines or not subtables:  # a table holding only tables needs no header of its own
        lines.insert(0, header or f"[{path}]")
        subtables.insert(0, "\n".join(lines) + "\n")
    return "\n".join(subtables)


def _value(value: TomlValue) -> str:
    if isinstance(value, bool):  # before int: a bool is one
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        raise TypeError("a table is rendered as a sub-table, not as a value")
    return "[" + ", ".join(_value(v) for v in value) + "]"
