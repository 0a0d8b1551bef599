"""The HTTP side of the Meta sources: :class:`GraphClient`, one ``requests`` session per access
token, :meth:`GraphClient.get` the one place a request is made, what failed classified
(:func:`classify`), and the usage headers read after every answer so that the next call waits
*before* Meta refuses it.

Where each rule comes from ([doc] Meta's documentation as quoted in the research notes
``shared/research/meta.md`` §3 and §5; [recording] a body in ``tests/fixtures/meta/``):

- Hosts and version: ``https://graph.facebook.com/{version}/`` (Pages, Messenger, Instagram
  with Facebook Login) and ``https://graph.instagram.com/{version}/`` (Instagram Login), the
  version always in the path ("always send the version"; v25.0 is usable until 2028-07-29
  [doc: changelog/versions]). Every answer names the version that served it in
  ``Facebook-API-Version`` [recording: restfb batch/*.json]: said once when it is not the
  pinned one (Meta serves a newer one once the pinned version expires).
- The token travels in ``Authorization: Bearer <token>``, never in a URL a proxy or a log
  could keep: Meta's own v25.0 examples on graph.facebook.com send it so (the WhatsApp Cloud
  API pages: ``-H 'Authorization: Bearer <ACCESS_TOKEN>'``) and Graph names its scheme in
  ``WWW-Authenticate: OAuth "Facebook Platform"`` [recording: batch-first-error.json]. The
  Pages reference shows only the ``access_token`` parameter: a caller passing one is refused.
- ``appsecret_proof`` (HMAC-SHA256 of the token keyed by the app secret) goes with every call
  when an app secret is configured: apps may require it, and Page Public Content Access does
  ("requires either app secret proof or an app token" [recording: error.json]). It is a
  parameter, derived from the token, and masked like it in every message.
- Paging: cursor paging (``paging.cursors`` and ``next``) on feeds, comments, conversations;
  time paging (``until`` and ``__paging_token`` in ``next``) on ``/posts`` [recording: feed
  and posts p1/p2]; "a page may be empty but contain a next paging link. Stop paging when the
  next link no longer appears" [doc: graph-api/results]. Graph's ``next`` carries every
  parameter of the call and, as recorded, ``access_token`` too: only its query is used, on the
  path this client asked for and the host it was set up with, without the token and proof
  (:attr:`GraphPage.next_query`, safe to store as a cursor).
- Usage [doc: graph-api/overview/rate-limiting]: ``X-App-Usage`` (percentages
  ``call_count``/``total_time``/``total_cputime`` [recording: restfb batch]), ``X-Page-Usage``
  (same shape, older clients), ``X-Business-Use-Case-Usage`` (per business object id, a list
  per type with the same percentages and ``estimated_time_to_regain_access`` in minutes; the
  doc's sample), ``X-Ad-Account-Usage`` (``acc_id_util_pct``, ``reset_time_duration`` in
  seconds). Absent is not zero: only what an answer says counts. When any percentage reaches
  :data:`PACE_AT` or Meta says access is to be regained later, the next call is not made:
  :class:`RateLimited` until then.
- Errors: the body's ``error.code`` decides, not the HTTP status (Graph answers 400/403/500,
  throttles are not 429) [doc: graph-api/guides/error-handling]; the table is :func:`classify`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from connectors._http import DEFAULT_TIMEOUT, RewritingAdapter, mount
from connectors.meta.parse import clip
from syncd.contracts.redaction import redact
from syncd.contracts.secrets import masked
from syncd.contracts.urls import base_url
from syncd.errors import (
    AuthError,
    BadItem,
    ExternalError,
    MalformedAnswer,
    NotFound,
    PaginationLoop,
    RateLimited,
    SyncdError,
    TransientError,
)

SYSTEM = "meta"
FACEBOOK_GRAPH = "https://graph.facebook.com"
INSTAGRAM_GRAPH = "https://graph.instagram.com"
DEFAULT_VERSION = "v25.0"
_VERSION = re.compile(r"v\d{1,3}\.\d{1,3}")
# Percent of any usage figure at which calls stop until access is regained: Meta throttles at
# 100, and a poll's next round may make several calls.
PACE_AT = 90.0
# Over PACE_AT with no time to regain said (the app's figures, or BUC's 0): the usage is a
# rolling window, so one call after this reads where it stands, at the cost of that call.
_PACE_WAIT = timedelta(minutes=10)
# A throttle whose answer says no time to regain: no Retry-After is documented for Graph.
_THROTTLE_WAIT = timedelta(minutes=15)
# 4 app, 17 user, 32 Pages with a user token, 341 app limit, 613 custom rate limit;
# 80000–80014 Business Use Case limits (80001 Pages, 80002 Instagram, 80006 Messenger …)
# [doc: rate-limiting error tables; error-handling].
THROTTLES = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
# Code 190's subcodes [doc: error-handling; 492 from the Page reference's error list].
TOKEN_SUBCODES = {
    458: "the app was removed from the account",
    459: "the account is checkpointed (its owner must log in to Facebook)",
    460: "the account's password changed",
    463: "the token expired",
    464: "the account is unconfirmed",
    467: "the token is invalid (logged out or revoked)",
    492: "the user no longer has a role on the Page",
}
# Permission names as Meta's messages spell them ("Requires pages_read_engagement
# permission", "requires the 'pages_read_engagement' permission" [recording: error_data.json]).
_PERMISSION = re.compile(
    r"(?<![A-Za-z_])((?:pages|instagram|ads|read|publish|manage|business)_[a-z_]+"
    r"|business_management|public_profile)(?![A-Za-z_])"
)
# A path segment: Graph ids (digits, ``_``), ``m_…`` message ids (URL-safe base64, ``.`` and
# ``:`` in older ones [recording: message-eu.json]) and edge names. Nothing that could leave
# the path (``/``, ``?``, ``#``, ``%``) or climb it (``..``).
_SEGMENT = re.compile(r"[A-Za-z0-9_.:=-]{1,200}")
_log = logging.getLogger(__name__)


# -- usage -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BusinessUsage:
    """One entry of ``X-Business-Use-Case-Usage``: one business object's figures for one
    use case (``pages``, ``instagram``, ``messenger`` …)."""

    business_id: str
    type: str
    call_count: float | None = None
    total_cputime: float | None = None
    total_time: float | None = None
    regain: timedelta | None = None  # estimated_time_to_regain_access (minutes)


@dataclass(frozen=True)
class Usage:
    """What one answer said of the app's, the Page's and the business objects' usage."""

    app: Mapping[str, float] = field(default_factory=dict)
    page: Mapping[str, float] = field(default_factory=dict)
    business: tuple[BusinessUsage, ...] = ()
    ad_account: float | None = None  # acc_id_util_pct
    ad_account_reset: timedelta | None = None  # reset_time_duration (seconds)
    api_version: str | None = None

    @property
    def peak(self) -> float:
        """The highest percentage any header gave (0 when none said any)."""
        figures = [*self.app.values(), *self.page.values()]
        for entry in self.business:
            figures += [
                f
                for f in (entry.call_count, entry.total_cputime, entry.total_time)
                if f is not None
            ]
        if self.ad_account is not None:
            figures.append(self.ad_account)
        return max(figures, default=0.0)

    @property
    def regain(self) -> timedelta | None:
        """The longest time to regain access any header gave (None: none said one)."""
        waits = [e.regain for e in self.business if e.regain]
        if self.ad_account_reset:
            waits.append(self.ad_account_reset)
        return max(waits, default=None)

    def ratios(self) -> dict[str, float]:
        """Each figure this answer gave as a share of its allowance (Meta's percentages over
        100): ``app.<figure>``, ``page.<figure>`` and ``buc.<use case type>.<figure>``; of
        two business objects of one use case, the higher (the one nearer its throttle)."""
        out = {f"app.{k}": v / 100 for k, v in self.app.items()}
        out.update({f"page.{k}": v / 100 for k, v in self.page.items()})
        for entry in self.business:
            figures = {
                "call_count": entry.call_count,
                "total_cputime": entry.total_cputime,
                "total_time": entry.total_time,
            }
            for figure, value in figures.items():
                if value is not None:
                    key = f"buc.{clip(entry.type or 'unknown', 40)}.{figure}"
                    out[key] = max(out.get(key, 0.0), value / 100)
        return out

    def wait(self, pace_at: float = PACE_AT) -> timedelta | None:
        """How long to make no call, when this answer says so (None: carry on)."""
        regain = self.regain
        if regain:
            return regain
        return _PACE_WAIT if self.peak >= pace_at else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _header_json(headers: Mapping[str, str], name: str) -> Any:
    value = headers.get(name)
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        # An unreadable figure says nothing, which is not the same as zero: said, not fatal.
        _log.warning("Meta sent an unreadable %s header: %s", name, clip(value, 120))
        return None


def _percentages(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    figures = {k: _number(v) for k, v in value.items() if k != "estimated_time_to_regain_access"}
    return {k: v for k, v in figures.items() if v is not None}


def read_usage(headers: Mapping[str, str]) -> Usage:
    """The usage headers of one answer (``requests``' headers are case-insensitive)."""
    business: list[BusinessUsage] = []
    buc = _header_json(headers, "X-Business-Use-Case-Usage")
    if isinstance(buc, dict):
        for business_id, entries in buc.items():
            # A list per object in the doc's sample; one object alone is read the same way.
            for entry in entries if isinstance(entries, list) else [entries]:
                if not isinstance(entry, dict):
                    continue
                minutes = _number(entry.get("estimated_time_to_regain_access"))
                business.append(
                    BusinessUsage(
                        business_id=str(business_id),
                        type=str(entry.get("type") or ""),
                        call_count=_number(entry.get("call_count")),
                        total_cputime=_number(entry.get("total_cputime")),
                        total_time=_number(entry.get("total_time")),
                        regain=timedelta(minutes=minutes) if minutes and minutes > 0 else None,
                    )
                )
    ads = _header_json(headers, "X-Ad-Account-Usage")
    ad_pct = _number(ads.get("acc_id_util_pct")) if isinstance(ads, dict) else None
    ad_reset = _number(ads.get("reset_time_duration")) if isinstance(ads, dict) else None
    return Usage(
        app=_percentages(_header_json(headers, "X-App-Usage")),
        page=_percentages(_header_json(headers, "X-Page-Usage")),
        business=tuple(business),
        ad_account=ad_pct,
        ad_account_reset=timedelta(seconds=ad_reset) if ad_reset and ad_reset > 0 else None,
        api_version=headers.get("Facebook-API-Version") or None,
    )


# -- errors ------------------------------------------------------------------------------------
class PermissionDenied(ExternalError):
    """Meta refused for want of a permission (codes 10, 200–299): a setup problem that no
    retry fixes. ``permissions`` are the ones Meta's message names (possibly none)."""

    def __init__(
        self,
        message: str,
        *,
        permissions: tuple[str, ...] = (),
        system: str = SYSTEM,
        status: int | None = None,
    ) -> None:
        super().__init__(message, system=system, status=status)
        self.permissions = permissions


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def classify(
    status: int,
    body: Any,
    usage: Usage | None = None,
    *,
    token_name: str = "Page token",
    now: datetime | None = None,
) -> SyncdError:
    """The one table from a Graph error answer to what the runner must do.

    - 4, 17, 32, 341, 613, 80000–80014: throttles → :class:`RateLimited`, until the usage
      headers' time to regain access (else :data:`_THROTTLE_WAIT`);
    - 190 (subcodes 458–467, 492) and 102: the token → :class:`AuthError`, "issue a new
      Page token", the subcode's meaning named;
    - 10, 200–299: a permission → :class:`PermissionDenied` naming it;
    - ``is_transient: true``, or 1 and 2 unless the body says ``is_transient: false`` (the
      recording's code 1 is a refused value, not an outage [recording:
      oauthExampleError.json]) → :class:`TransientError`;
    - 100 with subcode 33, or a ``GraphMethodException`` saying the object "does not exist"
      (recorded without a subcode [recording: batch-first-error.json]) → :class:`NotFound`;
    - 100 asking for app secret proof [recording: error.json] → :class:`ExternalError` (set
      the app secret);
    - other 100 (an unreadable object or parameter [recording: error_data.json]) and 368
      (temporarily blocked) → :class:`BadItem`: one item's problem;
    - anything else by status: 5xx transient, the rest an :class:`ExternalError`.
    """
    now = now or datetime.now(UTC)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return _by_status(status, usage, now)
    code = _code(error.get("code"))
    subcode = _code(error.get("error_subcode"))
    kind = error.get("type") if isinstance(error.get("type"), str) else ""
    text = str(error.get("message") or "")
    said = clip(text or kind or "no message")
    user_msg = " ".join(
        str(error[k]) for k in ("error_user_title", "error_user_msg") if error.get(k)
    )
    codes = f"code {code}" + (f", subcode {subcode}" if subcode is not None else "")
    detail = f"Meta API {status} ({codes}): {said}" + (
        f" [{clip(user_msg, 200)}]" if user_msg else ""
    )
    if code in THROTTLES:
        wait = (usage.regain if usage else None) or _THROTTLE_WAIT
        return RateLimited(detail, resume_at=now + wait, system=SYSTEM, status=status)
    if code in (102, 190):
        reason = TOKEN_SUBCODES.get(subcode or 0)
        why = reason or (f"subcode {subcode}" if subcode is not None else "the token was refused")
        return AuthError(
            f"Meta rejected the access token ({why}): issue a new {token_name}. {detail}",
            system=SYSTEM,
            status=status,
        )
    if code == 10 or (code is not None and 200 <= code <= 299):
        named = tuple(dict.fromkeys(_PERMISSION.findall(text)))
        what = ", ".join(named) if named else "the permission Meta's message names"
        return PermissionDenied(
            f"Meta refused for want of a permission: grant {what} to the app (App Review for "
            f"Advanced Access where people without a role on the app are concerned) and issue "
            f"a new {token_name}. {detail}",
            permissions=named,
            status=status,
        )
    transient = error.get("is_transient")
    if transient is True or (code in (1, 2) and transient is not False):
        return TransientError(detail, system=SYSTEM, status=status)
    if code == 100:
        lowered = text.lower()
        if subcode == 33 or (kind == "GraphMethodException" and "does not exist" in lowered):
            return NotFound(detail, system=SYSTEM, status=status)
        if "app secret proof" in lowered or "appsecret_proof" in lowered:
            return ExternalError(
                f"Meta wants app secret proof: configure the app secret. {detail}",
                system=SYSTEM,
                status=status,
            )
    if code in (100, 368):
        return BadItem(detail, system=SYSTEM, status=status)
    if status >= 500:
        return TransientError(detail, system=SYSTEM, status=status)
    return ExternalError(detail, system=SYSTEM, status=status)


def _by_status(status: int, usage: Usage | None, now: datetime) -> SyncdError:
    """An error answer without Graph's error body (a proxy's, a load balancer's)."""
    message = f"Meta API {status} without an error body"
    if status == 429:
        wait = (usage.regain if usage else None) or _THROTTLE_WAIT
        return RateLimited(message, resume_at=now + wait, system=SYSTEM, status=status)
    if status >= 500:
        return TransientError(message, system=SYSTEM, status=status)
    if status in (401, 403):
        return AuthError(message, system=SYSTEM, status=status)
    if status == 404:
        return NotFound(message, system=SYSTEM, status=status)
    return ExternalError(message, system=SYSTEM, status=status)


# -- the client --------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphPage:
    """One answer of a list edge: its items, the whole body, and the query of the next page
    (None: the last), without token or proof, to hand back to :meth:`GraphClient.page`."""

    data: tuple[Any, ...]
    body: Mapping[str, Any]
    next_query: str | None
    usage: Usage


_SECRET_PARAMS = frozenset({"access_token", "appsecret_proof", "appsecret_time"})


def next_query(body: Mapping[str, Any]) -> str | None:
    """The query of ``paging.next``, minus the token Graph echoes in it [recording:
    feeds_default_fields_p1.json ``access_token=access_token``] and the proof."""
    paging = body.get("paging")
    link = paging.get("next") if isinstance(paging, dict) else None
    if not isinstance(link, str) or not link:
        return None
    pairs = parse_qsl(urlsplit(link).query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k not in _SECRET_PARAMS])


class GraphClient:
    """The Graph API for one access token (a Page token, or an Instagram Login token with
    ``instagram_login``), on a session that goes through the shared plumbing (whole-request
    deadline, plain HTTP to loopback only). Its pacing is that token's: one client per
    token."""

    def __init__(
        self,
        access_token: str,
        *,
        app_secret: str | None = None,
        version: str = DEFAULT_VERSION,
        api_base_url: str | None = None,
        instagram_login: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        pace_at: float = PACE_AT,
    ) -> None:
        if not _VERSION.fullmatch(version):
            raise ValueError(f"a Graph API version looks like {DEFAULT_VERSION!r}")
        default = INSTAGRAM_GRAPH if instagram_login else FACEBOOK_GRAPH
        self.base = base_url(api_base_url or default, default)
        self.version = version
        self.token_name = "Instagram token" if instagram_login else "Page token"
        self.pace_at = pace_at
        self._token = access_token
        self._secrets = [access_token]
        self._proof: str | None = None
        if app_secret:
            self._proof = hmac.new(
                app_secret.encode(), access_token.encode(), hashlib.sha256
            ).hexdigest()
            self._secrets += [app_secret, self._proof]
        self.session = requests.Session()
        mount(self.session, RewritingAdapter({}, timeout))
        self._lock = threading.Lock()
        self._paused_until: datetime | None = None
        self._pause_reason = ""
        self._versions_said: set[str] = set()
        self.usage: Usage | None = None  # the last answer's
        # Each usage figure as the latest answer that gave it said (/metrics): an answer
        # without the headers (a refused token's) leaves the figures standing.
        self._ratios: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"GraphClient({self.base!r}, version={self.version!r})"

    # -- calls ---------------------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """``GET /{version}/{path}`` with ``params``: the JSON object answered, or the
        :mod:`syncd.errors` class that tells the runner what to do."""
        body, _ = self._get(path, list((params or {}).items()))
        return body

    def debug_token(self) -> dict[str, Any]:
        """``GET /debug_token?input_token=<this token>``: what Meta says of the token itself
        (its type, app, permissions, expiry) [doc: graph-api/reference/debug_token]. The
        endpoint takes the token inspected only as ``input_token``; it is masked in every
        error like the token it is, and the request's URL is never logged (urllib3's logger
        is kept at WARNING)."""
        return self.get("debug_token", {"input_token": self._token})

    def page(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        after: str | None = None,
    ) -> GraphPage:
        """One page of a list edge. ``after`` is a previous page's ``next_query``: it holds
        every parameter of the call, so ``params`` are then not sent again."""
        query: list[tuple[str, str | int]] = (
            list(parse_qsl(after, keep_blank_values=True))
            if after is not None
            else list((params or {}).items())
        )
        body, usage = self._get(path, query)
        data = body.get("data")
        if not isinstance(data, list):
            raise self._redacted(
                MalformedAnswer(f"Meta's answer to {path} has no data list", system=SYSTEM)
            )
        return GraphPage(tuple(data), body, next_query(body), usage)

    def pages(
        self, path: str, params: Mapping[str, str | int] | None = None
    ) -> Iterator[GraphPage]:
        """Every page of a list edge, following ``paging.next`` until it is gone (empty pages
        that still have one included). A next page already followed is a loop."""
        seen: set[str] = set()
        after: str | None = None
        while True:
            current = self.page(path, params, after=after)
            yield current
            if current.next_query is None:
                return
            if current.next_query in seen:
                raise PaginationLoop(
                    f"Meta repeated a next page of {path} already followed", system=SYSTEM
                )
            seen.add(current.next_query)
            after = current.next_query

    def usage_ratios(self) -> dict[str, float]:
        """Each usage figure's latest share of its allowance (see :meth:`Usage.ratios`)."""
        with self._lock:
            return dict(self._ratios)

    def close(self) -> None:
        self.session.close()

    # -- plumbing ------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        segments = path.strip("/").split("/")
        for segment in segments:
            if not _SEGMENT.fullmatch(segment) or not segment.strip("."):
                raise ValueError(f"not a Graph API path: {clip(path, 80)!r}")
        return f"{self.base}/{self.version}/{'/'.join(segments)}"

    def _get(self, path: str, query: list[tuple[str, str | int]]) -> tuple[dict[str, Any], Usage]:
        if any(k in _SECRET_PARAMS for k, _ in query):
            raise ValueError("the token and proof are the client's to send, not a parameter")
        url = self._url(path)
        now = datetime.now(UTC)
        with self._lock:
            paused, reason = self._paused_until, self._pause_reason
        if paused is not None and paused > now:
            raise RateLimited(
                f"Meta usage {reason}: no call before {paused:%H:%M:%S} UTC",
                resume_at=paused,
                system=SYSTEM,
            )
        if self._proof is not None:
            query = [*query, ("appsecret_proof", self._proof)]
        error: SyncdError | None = None
        response: requests.Response | None = None
        try:
            response = self.session.get(
                url, params=query, headers={"Authorization": f"Bearer {self._token}"}
            )
        except requests.RequestException as exc:
            error = TransientError(
                f"Meta request failed: {clip(f'{type(exc).__name__}: {exc}')}", system=SYSTEM
            )
        if error is not None or response is None:
            # Raised outside the except block: no traceback chains to the request, whose
            # headers hold the token.
            raise self._redacted(error or TransientError("no answer", system=SYSTEM))
        usage = self._observe(response.headers, now)
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not response.ok or (isinstance(body, dict) and "error" in body):
            refused = classify(
                response.status_code, body, usage, token_name=self.token_name, now=now
            )
            if isinstance(refused, RateLimited):
                # A throttle whose answer carried no usage figures: no call before it ends.
                with self._lock:
                    if self._paused_until is None or self._paused_until < refused.resume_at:
                        self._paused_until = refused.resume_at
                        self._pause_reason = "throttled"
            raise self._redacted(refused)
        if not isinstance(body, dict):
            raise self._redacted(
                MalformedAnswer(
                    f"Meta's answer to {path} is not a JSON object "
                    f"({clip(response.text, 80) or 'empty'})",
                    system=SYSTEM,
                )
            )
        return body, usage

    def _observe(self, headers: Mapping[str, str], now: datetime) -> Usage:
        usage = read_usage(headers)
        version = usage.api_version
        if version and version != self.version and version not in self._versions_said:
            self._versions_said.add(version)
            _log.warning(
                "Meta answered with Graph API %s, not the pinned %s: the pinned version may "
                "have expired; set the configured version to one Meta still serves",
                clip(version, 20),
                self.version,
            )
        wait = usage.wait(self.pace_at)
        with self._lock:
            self.usage = usage
            self._ratios.update(usage.ratios())
            if wait is not None:
                self._paused_until = now + wait
                self._pause_reason = (
                    f"at {usage.peak:.0f}%"
                    if usage.peak >= self.pace_at
                    else "says access returns later"
                )
        return usage

    def _redacted(self, error: SyncdError) -> SyncdError:
        text = redact(masked(str(error), self._secrets))
        if text != str(error):
            error.args = (text,)
        return error
