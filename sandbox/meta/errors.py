"""Graph API error bodies, as recorded and documented.

Shape (``error.json``, ``base/error_data.json``, ``restfb/oauthExampleError.json``,
``restfb/batch/batch-first-error.json``): ``{"error": {"message", "type", "code",
"error_subcode"?, "is_transient"?, "error_user_title"?, "error_user_msg"?, "fbtrace_id"}}``.
Graph answers its errors with HTTP 400 (recorded for code 100 in the batch recording and in
public reports for 190/463, 190/460 and 100/33), 500 for its own failures; clients branch on
``code``. The status of a throttle is not recorded anywhere we could read: 400 here, as for
every other OAuthException. Messages are Meta's own wording from the rate-limiting and
error-handling references and from bodies quoted in public bug reports.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

RATE_LIMITS_URL = "https://developers.facebook.com/docs/graph-api/overview/rate-limiting"

THROTTLE_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try "
    f"again. For more info, please refer to {RATE_LIMITS_URL}.",
    80002: "(#80002) There have been too many calls to this Instagram account. Wait a bit and "
    f"try again. For more info, please refer to {RATE_LIMITS_URL}.",
    80006: "(#80006) There have been too many messenger api calls to this Page account. Wait a "
    f"bit and try again. For more info, please refer to {RATE_LIMITS_URL}.",
}

_PST = timezone(timedelta(hours=-8))


def _fb_time(moment: datetime) -> str:
    return moment.astimezone(_PST).strftime("%A, %d-%b-%y %H:%M:%S PST")


def token_message(subcode: int | None, *, expired_at: datetime | None, now: datetime) -> str:
    """The message of a code 190 error (error-handling reference; bodies in public reports)."""
    prefix = "Error validating access token: "
    if subcode == 463:
        when = expired_at or now
        return (
            f"{prefix}Session has expired on {_fb_time(when)}. The current time is {_fb_time(now)}."
        )
    texts = {
        458: "The user has not authorized application.",
        459: "You cannot access the app till you log in to www.facebook.com and follow the "
        "instructions given.",
        460: "The session has been invalidated because the user changed their password or "
        "Facebook has changed the session for security reasons.",
        464: "Sessions for the user are not allowed because the user is not a confirmed user.",
        467: "The session is invalid because the user logged out.",
        492: "The user must be an administrator, editor, or moderator of the page in order to "
        "impersonate it.",
    }
    if subcode in texts:
        return prefix + texts[subcode]
    return "Invalid OAuth access token - Cannot parse access token"


class GraphError(Exception):
    """One Graph error answer."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        type_: str = "OAuthException",
        subcode: int | None = None,
        transient: bool | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.type = type_
        self.subcode = subcode
        self.transient = transient
        self.status = status

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        error["fbtrace_id"] = fbtrace_id()
        return {"error": error}

    def encoded(self) -> bytes:
        return json.dumps(self.body()).encode("utf-8")

    def www_authenticate(self) -> str:
        # As recorded in restfb/batch/batch-first-error.json: the message, in an OAuth header.
        kind = "invalid_token" if self.code == 190 else "invalid_request"
        return f'OAuth "Facebook Platform" "{kind}" "{self.message}"'


def fbtrace_id() -> str:
    return secrets.token_urlsafe(18)[:23]


def not_found(object_id: str, *, instagram: bool = False, method: str = "get") -> GraphError:
    """Code 100 subcode 33: deleted, never existed, or not readable with this token."""
    return GraphError(
        100,
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation. Please read "
        "the Graph API documentation at https://developers.facebook.com/docs/graph-api",
        type_="IGApiException" if instagram else "GraphMethodException",
        subcode=33,
    )


def nonexisting_field(name: str, node_type: str) -> GraphError:
    return GraphError(
        100, f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})"
    )


def throttle(code: int) -> GraphError:
    return GraphError(code, THROTTLE_MESSAGES[code], transient=True)


def transient() -> GraphError:
    return GraphError(
        2,
        "An unexpected error has occurred. Please retry your request later.",
        transient=True,
        status=500,
    )


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
