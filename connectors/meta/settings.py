"""The settings of the two Meta source types, ``facebook`` and ``instagram``: what a
``[[sources]]`` table holds and how each value is checked. One Meta access token reads one
Page or one Instagram account, so each table names exactly one."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from connectors.meta.client import DEFAULT_VERSION
from connectors.meta.receiver import WebhookSettings
from syncd.contracts import Duration, SourceSettings
from syncd.contracts.secrets import SecretRef
from syncd.contracts.urls import base_url

WATCH_WINDOW = 90 * 86400.0
FEED_MAX = 100  # "You can only read a maximum of 100 feed posts with the limit field"
IG_COMMENTS_MAX = 50  # "Returns a maximum of 50 comments per query" (IG media comments)
_ID = re.compile(r"[0-9]{1,40}")


def valid_version(value: str) -> str:
    if not re.fullmatch(r"v\d{1,3}\.\d{1,3}", value):
        raise ValueError(f"a Graph API version looks like {DEFAULT_VERSION!r}")
    return value


class _MetaSettings(SourceSettings):
    # The Page access token (both types; an Instagram Login token with instagram_login).
    access_token: SecretRef
    # The app's secret: every call then carries appsecret_proof (apps may require it).
    app_secret: SecretRef | None = None
    graph_version: str = DEFAULT_VERSION
    # How far back posts are re-scanned for new comments on every walk.
    watch_window: Duration = WATCH_WINDOW
    # Posts (or threads, media) a walk reads per call, and comments per call.
    page_size: int = Field(default=FEED_MAX, ge=1, le=FEED_MAX)
    timeout: Duration = 30.0
    # Graph's address, only for a stand-in or a proxy.
    api_base_url: str | None = None
    # Meta's usage percentages rise across a poll's calls: they pause at this figure.
    pace_at: float = Field(default=90.0, gt=0, le=100)
    # Meta's webhooks ([sources.webhook]): mentions no poll can see arrive only by them.
    webhook: WebhookSettings | None = None

    @field_validator("graph_version")
    @classmethod
    def _graph_version(cls, value: str) -> str:
        return valid_version(value)

    @field_validator("api_base_url")
    @classmethod
    def _absolute_http(cls, value: str | None) -> str | None:
        return None if value is None else base_url(value, "https://graph.facebook.com")

    @field_validator("accounts")
    @classmethod
    def _one_account(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError(
                "a Meta access token reads one Page or Instagram account: give exactly one "
                "(another is another [[sources]] table)"
            )
        return value

    def source_options(self) -> dict[str, Any]:
        """The keyword arguments every Meta source takes from its settings."""
        return {
            "app_secret": self.app_secret.reveal() if self.app_secret else None,
            "graph_version": self.graph_version,
            "watch_window": self.watch_window,
            "page_size": self.page_size,
            "timeout": self.timeout,
            "api_base_url": self.api_base_url,
            "start": self.start,
            "pace_at": self.pace_at,
            "webhook": self.webhook,
        }


def _default_accounts(data: Any, id_key: str) -> Any:
    """``accounts`` defaults to the one account the source reads, by its id."""
    if isinstance(data, dict) and "accounts" not in data and isinstance(data.get(id_key), str):
        return {**data, "accounts": [data[id_key]]}
    return data


class FacebookSettings(_MetaSettings):
    type: Literal["facebook"]
    page_id: str  # the Page's numeric id (Page → About → Page transparency, or /me)
    # Read the Page's Messenger threads (pages_messaging; Advanced Access for customers).
    messenger: bool = True

    @model_validator(mode="before")
    @classmethod
    def _accounts(cls, data: Any) -> Any:
        return _default_accounts(data, "page_id")

    @field_validator("page_id")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if not _ID.fullmatch(value.strip()):
            raise ValueError("a Page id is a number, e.g. '112130216863063'")
        return value.strip()


class InstagramSettings(_MetaSettings):
    type: Literal["instagram"]
    # The professional account's id (the Page's instagram_business_account), not its
    # username; the username goes in accounts.
    ig_user_id: str
    # An Instagram Login token on graph.instagram.com instead of the linked Page's token.
    instagram_login: bool = False
    # Read the account's Instagram Direct threads (instagram_manage_messages, Instagram
    # Login: instagram_business_manage_messages; Advanced Access for customers). On, as
    # Facebook's messenger: a message is the plainest thing a customer sends a brand.
    direct: bool = True
    page_size: int = Field(default=IG_COMMENTS_MAX, ge=1, le=FEED_MAX)

    @model_validator(mode="before")
    @classmethod
    def _accounts(cls, data: Any) -> Any:
        return _default_accounts(data, "ig_user_id")

    @field_validator("ig_user_id")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if not _ID.fullmatch(value.strip()):
            raise ValueError("an Instagram account id is a number, e.g. '17841405822304914'")
        return value.strip()
