"""What ``syncd check`` reports for a Meta source: the token as Meta describes it, what each
stream the source reads needs of it, whether Meta withholds authors, the webhook subscription,
and the handles. :class:`~connectors.meta.facebook.FacebookSource` and
:class:`~connectors.meta.instagram.InstagramSource` hand their ``check`` here.

The token [doc: graph-api/reference/debug_token; research/meta.md §5; recording:
base/token_info.json]: ``GET /debug_token`` with the token itself as ``input_token`` answers
its ``type`` (``PAGE`` for a Page token, whose ``profile_id`` is "the ID of the page this token
contains"; ``USER``, ``SYSTEM_USER`` …), ``app_id``, ``is_valid``, ``scopes`` and
``granular_scopes`` (a permission granted for some Pages or accounts only names them in
``target_ids``; "if permission applies to all, targets will not be shown"), ``expires_at`` (0:
never, as a long-lived Page token) and ``data_access_expires_at`` (the app's access to the
data lapses 90 days after the person who issued the token last used the app). The reference
asks for an app token or an app developer's token there: when Meta refuses the Page token,
the check falls back to ``/me`` and says that the token could not be inspected.

An Instagram Login token (graph.instagram.com) has no ``debug_token``: ``/me?fields=user_id,
username`` names its account. Its long-lived form lasts 60 days unless refreshed (``GET
/refresh_access_token?grant_type=ig_refresh_token`` once it is a day old) [doc: IG Login get
started]; syncd does not refresh it, and no endpoint tells when it ends.

Webhooks [doc: page/subscribed_apps; IG webhooks guides]: Meta delivers a Page field only when
the app subscribes to it both at app level (App Dashboard, which a Page token cannot read) and
on the Page (``GET /{page-id}/subscribed_apps``, which it can, with pages_manage_metadata).
Instagram with Facebook Login needs the app subscribed on the linked Page (to any field); its
Instagram fields are app-level only. Instagram Login: ``/me/subscribed_apps`` on
graph.instagram.com lists the fields the account is subscribed to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.meta.client import PermissionDenied
from connectors.meta.parse import clip
from syncd.contracts import CheckRow
from syncd.errors import AuthError, ExternalError, RateLimited

if TYPE_CHECKING:
    from connectors.meta.threads import Inbox
    from connectors.meta.walk import MetaSource

__all__ = ["facebook_check", "fix_for", "instagram_check"]

# A token or its data access ending sooner than this fails the check: time to issue another.
SOON = timedelta(days=14)
# What each stream needs of the token [research/meta.md §2, §5].
FEED_NEEDS = ("pages_read_engagement", "pages_read_user_content", "pages_show_list")
MESSENGER_NEEDS = ("pages_messaging", "pages_manage_metadata")
INSTAGRAM_NEEDS = (
    "instagram_basic",
    "instagram_manage_comments",
    "pages_read_engagement",
    "pages_show_list",
)
WEBHOOK_NEEDS = ("pages_manage_metadata",)
# The webhook fields whose deliveries syncd reads (connectors.meta.receiver).
PAGE_FIELDS = ("feed", "mention")
MESSENGER_FIELDS = ("messages", "message_echoes")
INSTAGRAM_FIELDS = ("comments", "mentions")
DIRECT_FIELDS = ("messages",)  # Instagram's: the account's own messages come on it too
PAGE_TOKEN_FIX = (
    "issue a Page access token of this Page (GET /me/accounts with a Page admin's long-lived "
    "user token gives it) and set access_token to it"
)
LINKED_PAGE_FIX = (
    "issue a Page access token of the Page linked to the Instagram account (GET /me/accounts "
    "with a Page admin's long-lived user token gives it) and set access_token to it"
)
CALLBACK = (
    "the callback URL is https://<this host>/webhooks/<source name>, served by a reverse proxy "
    "with TLS in front of syncd (Meta delivers to HTTPS only); the App Dashboard's test "
    "delivery shows whether it reaches syncd"
)


def fix_for(exc: ExternalError, token_name: str) -> str:
    if isinstance(exc, AuthError):
        return f"issue a new {token_name} and set access_token to it"
    if isinstance(exc, RateLimited):
        return "wait for Meta's usage to fall (syncd paces itself on it)"
    if isinstance(exc, PermissionDenied):
        return "grant the permissions named and issue a new token"
    return "check api_base_url and that this host reaches Graph"


# -- the token, as debug_token describes it --------------------------------------------------------
@dataclass(frozen=True)
class TokenInfo:
    type: str
    app_id: str
    application: str
    valid: bool
    problem: str  # Meta's reason when not valid
    scopes: frozenset[str]
    targets: Mapping[str, frozenset[str]]  # a permission granted for these ids only
    expires_at: int | None  # 0: never
    data_access_expires_at: int | None
    profile_id: str | None

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> TokenInfo | None:
        """The answer's ``data``; None when it has none to read."""
        data = body.get("data")
        if not isinstance(data, dict):
            return None
        targets: dict[str, frozenset[str]] = {}
        for grant in data.get("granular_scopes") or []:
            if not isinstance(grant, dict):
                continue
            scope, ids = grant.get("scope"), grant.get("target_ids")
            if isinstance(scope, str) and isinstance(ids, list):
                targets[scope] = frozenset(str(i) for i in ids)
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return cls(
            type=str(data.get("type") or ""),
            app_id=str(data.get("app_id") or ""),
            application=str(data.get("application") or ""),
            valid=data.get("is_valid") is True,
            problem=clip(str(message or "Meta gave no reason"), 200),
            scopes=frozenset(s for s in data.get("scopes") or [] if isinstance(s, str)),
            targets=targets,
            expires_at=_stamp(data.get("expires_at")),
            data_access_expires_at=_stamp(data.get("data_access_expires_at")),
            profile_id=str(data["profile_id"]) if data.get("profile_id") is not None else None,
        )

    @property
    def app(self) -> str:
        return f"{self.application} ({self.app_id})" if self.application else self.app_id


def _stamp(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _inspect(source: MetaSource) -> tuple[TokenInfo | None, str]:
    """The token as debug_token describes it, or None and why Meta would not say."""
    try:
        body = source.client.debug_token()
    except ExternalError as exc:
        return None, str(source._named(exc))
    info = TokenInfo.read(body)
    return info, "" if info is not None else "Meta's debug_token answer has no data"


def _not_inspected(why: str) -> str:
    return (
        f"; Meta would not inspect it ({clip(why, 200)}): its permissions and expiry are not "
        "checked"
    )


def _when(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _left(at: datetime, now: datetime) -> str:
    days = int((at - now).total_seconds() // 86400)
    if at <= now:
        return "already past"
    return "within a day" if days < 1 else f"in {days} day{'s' if days > 1 else ''}"


def _expiry_rows(info: TokenInfo, now: datetime) -> list[CheckRow]:
    rows: list[CheckRow] = []
    if info.expires_at == 0:
        rows.append(CheckRow("token expiry", True, "never expires (a long-lived Page token)"))
    elif info.expires_at is not None:
        at = _when(info.expires_at)
        said = f"the token expires on {at:%Y-%m-%d %H:%M} UTC ({_left(at, now)})"
        if at - now < SOON:
            rows.append(
                CheckRow(
                    "token expiry",
                    False,
                    said,
                    "issue a long-lived Page token from a long-lived user token (GET "
                    "/me/accounts with it), or a system user's token (Business Manager), and "
                    "set access_token to it: neither expires",
                )
            )
        else:
            rows.append(CheckRow("token expiry", True, said))
    if info.data_access_expires_at == 0:
        rows.append(CheckRow("data access", True, "Meta sets no end to the app's data access"))
    elif info.data_access_expires_at is not None:
        at = _when(info.data_access_expires_at)
        said = (
            f"the app's access to the data lapses on {at:%Y-%m-%d %H:%M} UTC "
            f"({_left(at, now)}): 90 days after the person who issued the token last used the "
            "app, after which Graph refuses every read with it"
        )
        if at - now < SOON:
            rows.append(
                CheckRow(
                    "data access",
                    False,
                    said,
                    "have the Page admin who issued the token log in through the app again "
                    "(reissuing the token renews data access for 90 days), or use a system "
                    "user's token",
                )
            )
        else:
            rows.append(CheckRow("data access", True, said))
    return rows


def _scopes_row(
    info: TokenInfo, what: str, needs: Sequence[str], ids: Mapping[str, str]
) -> CheckRow:
    """Whether the token holds each permission ``what`` needs, for the object it reads:
    ``ids`` maps a permission's prefix (``pages_``, ``instagram_``) to the id a grant
    narrowed to some Pages or accounts must name."""
    missing = [s for s in needs if s not in info.scopes]
    elsewhere: dict[str, tuple[frozenset[str], str]] = {}
    for scope in needs:
        wanted = next((i for p, i in ids.items() if scope.startswith(p)), None)
        granted = info.targets.get(scope)
        if scope not in missing and wanted and granted is not None and wanted not in granted:
            elsewhere[scope] = (granted, wanted)
    item = f"permissions: {what}"
    if not missing and not elsewhere:
        return CheckRow(item, True, f"granted: {', '.join(needs)}")
    said = []
    if missing:
        said.append(f"the token lacks {', '.join(missing)}")
    for scope, (granted, wanted) in elsewhere.items():
        shown = ", ".join(sorted(granted)[:5]) or "none"
        said.append(f"{scope} is granted for {shown} only, not {wanted}")
    return CheckRow(
        item,
        False,
        f"{'; '.join(said)} ({what} needs {', '.join(needs)})",
        f"grant the app {', '.join([*missing, *elsewhere])} for this Page (and its Instagram "
        "account) when logging in through it, then issue a new Page token",
    )


# -- probes ----------------------------------------------------------------------------------------
def _probe(
    source: MetaSource, item: str, path: str, params: Mapping[str, str | int], needs: str
) -> CheckRow:
    try:
        source._list(path, params)
    except PermissionDenied as exc:
        named = ", ".join(exc.permissions) or needs
        return CheckRow(
            item,
            False,
            str(exc),
            f"grant the app {named} (it needs {needs}) and issue a new Page token",
        )
    except ExternalError as exc:
        return CheckRow(item, False, str(exc), fix_for(exc, "Page token"))
    return CheckRow(item, True, f"readable (uses {needs})")


def _authors_row(source: MetaSource, page_id: str) -> CheckRow:
    """Whether the recent comments carry ``from``: without Advanced Access Meta leaves it out
    for people with no role on the app."""
    try:
        listing = source._list(
            f"{page_id}/feed", {"fields": "id,comments.limit(25){from}", "limit": 10}
        )
    except ExternalError as exc:
        return CheckRow("comment authors", False, str(exc), fix_for(exc, "Page token"))
    comments = [
        c
        for p in listing.data
        if isinstance(p, dict) and isinstance(p.get("comments"), dict)
        for c in p["comments"].get("data", [])
        if isinstance(c, dict)
    ]
    withheld = sum(1 for c in comments if "from" not in c)
    if withheld:
        return CheckRow(
            "comment authors",
            False,
            f"Meta withheld the author of {withheld} of {len(comments)} recent comments: "
            "the app lacks Advanced Access, so people without a role on it are faceless "
            "(stored, linked to no one, counted in syncd status)",
            "submit the app for App Review (pages_read_user_content, pages_messaging with "
            "Advanced Access; Business Verification), then issue a new Page token",
        )
    return CheckRow(
        "comment authors", True, f"Meta named the author of all {len(comments)} recent comments"
    )


# -- webhooks --------------------------------------------------------------------------------------
def _unconfigured(fields: str, missed: str) -> CheckRow:
    return CheckRow(
        "webhooks",
        True,
        f"not configured: {missed}; to read them, add [sources.webhook] (verify_token, "
        f"app_secret) and subscribe the app to {fields}",
    )


def _fields_of(entry: Mapping[str, Any]) -> list[str]:
    fields = entry.get("subscribed_fields")
    return [str(f) for f in fields] if isinstance(fields, list) else []


def _page_subscription_row(
    source: MetaSource, page_id: str, info: TokenInfo | None, needed: Sequence[str], about: str
) -> CheckRow:
    """Whether the token's app is subscribed to the Page's webhooks, to ``needed`` (empty:
    any field, which is what Instagram with Facebook Login asks of the linked Page)."""
    try:
        listing = source._list(f"{page_id}/subscribed_apps", {})
    except PermissionDenied as exc:
        return CheckRow(
            "webhooks",
            False,
            f"configured, but the Page's subscriptions cannot be read: {exc}",
            "grant the app pages_manage_metadata (which subscribing needs too) and issue a "
            "new Page token",
        )
    except ExternalError as exc:
        return CheckRow("webhooks", False, f"configured: {exc}", fix_for(exc, "Page token"))
    apps = [a for a in listing.data if isinstance(a, dict)]
    wanted = ",".join(needed or ("feed",))
    subscribe = (
        f"subscribe it with the Page token (POST /{page_id}/subscribed_apps?subscribed_fields="
        f"{wanted}, pages_manage_metadata) and in the App Dashboard (Webhooks) to the same "
        f"fields; {CALLBACK}"
    )
    if info is None:
        seen = "; ".join(
            f"{clip(str(a.get('name') or a.get('id')), 60)} "
            f"({', '.join(_fields_of(a)) or 'no field'})"
            for a in apps
        )
        return CheckRow(
            "webhooks",
            True,
            f"configured: apps subscribed on Page {page_id}: {seen or 'none'} (which one is "
            f"syncd's is not known: the token could not be inspected); {about}; {CALLBACK}",
        )
    ours = next((a for a in apps if str(a.get("id")) == info.app_id), None)
    fields = _fields_of(ours) if ours is not None else []
    if not fields:
        return CheckRow(
            "webhooks",
            False,
            f"configured, but the app {info.app} is not subscribed to Page {page_id}'s "
            "webhooks: Meta sends it none",
            subscribe,
        )
    missing = [f for f in needed if f not in fields]
    if missing:
        return CheckRow(
            "webhooks",
            False,
            f"configured, but on Page {page_id} the app {info.app} is subscribed to "
            f"{', '.join(fields)}, not to {', '.join(missing)}",
            subscribe,
        )
    return CheckRow(
        "webhooks",
        True,
        f"configured: on Page {page_id} the app {info.app} is subscribed to "
        f"{', '.join(fields)}; {about}; {CALLBACK}",
    )


def _instagram_login_subscription_row(source: MetaSource, needed: Sequence[str]) -> CheckRow:
    """The fields the account is subscribed to for the token's app (``/me/subscribed_apps``
    on graph.instagram.com), against those it needs: notifications come only once it is
    subscribed to one."""
    try:
        listing = source._list("me/subscribed_apps", {})
    except ExternalError as exc:
        return CheckRow("webhooks", False, f"configured: {exc}", fix_for(exc, "Instagram token"))
    fields = sorted({f for a in listing.data if isinstance(a, dict) for f in _fields_of(a)})
    missing = [f for f in needed if f not in fields]
    subscribe = (
        "subscribe the account with its token (POST /me/subscribed_apps?subscribed_fields="
        f"{','.join(needed)} on graph.instagram.com) and the app to the same "
        f"fields in the App Dashboard (Webhooks, Instagram); {CALLBACK}"
    )
    if missing:
        return CheckRow(
            "webhooks",
            False,
            f"configured, but the account is subscribed to {', '.join(fields) or 'no field'}, "
            f"not to {', '.join(missing)}",
            subscribe,
        )
    return CheckRow(
        "webhooks",
        True,
        f"configured: the account is subscribed to {', '.join(fields)}; {CALLBACK}",
    )


# -- handles ---------------------------------------------------------------------------------------
def _handle_rows(
    handles: Sequence[str], names: Sequence[str], found: str, fix: str, what: str
) -> list[CheckRow]:
    lowered = {n.lower() for n in names if n}
    return [
        CheckRow(h, True, found)
        if h.strip().removeprefix("@").lower() in lowered
        else CheckRow(h, False, f"{h} is not this source's {what}", fix)
        for h in handles
    ]


# -- Facebook --------------------------------------------------------------------------------------
def facebook_check(
    source: MetaSource, page_id: str, messenger: bool, handles: Sequence[str]
) -> list[CheckRow]:
    """The token is a Page token of this Page (debug_token: PAGE for this Page; ``/me``
    answers as it), valid long enough, with the permissions each stream needs; what each
    stream reads is readable; whether Meta withholds authors (App Review); the webhook
    subscription; the handles."""
    info, why = _inspect(source)
    try:
        me = source._get("me", {"fields": "id,name"})
    except ExternalError as exc:
        return [CheckRow("Page token", False, str(exc), fix_for(exc, "Page token"))]
    if info is not None and not info.valid:
        return [CheckRow("Page token", False, f"Meta says: {info.problem}", PAGE_TOKEN_FIX)]
    # A Page token without profile_id is left to /me.
    if info is not None and (
        info.type != "PAGE" or (info.profile_id is not None and info.profile_id != page_id)
    ):
        whose = (
            f"Page {clip(str(info.profile_id), 40)}'s"
            if info.type == "PAGE"
            else f"a {clip(info.type, 20) or 'untyped'} token"
        )
        return [
            CheckRow(
                "Page token",
                False,
                f"the token is {whose}, not a Page token of Page {page_id} (debug_token)",
                PAGE_TOKEN_FIX,
            )
        ]
    if me.get("id") != page_id:
        return [
            CheckRow(
                "Page token",
                False,
                f"the token answers as {clip(str(me.get('id')), 40)}, not as Page "
                f"{page_id}: it is a user token or another Page's",
                PAGE_TOKEN_FIX,
            )
        ]
    name = str(me.get("name") or "")
    said = f"a Page token of {name} ({page_id})"
    rows = [
        CheckRow(
            "Page token",
            True,
            said + (f" for the app {info.app}" if info is not None else _not_inspected(why)),
        )
    ]
    if info is not None:
        rows += _expiry_rows(info, source.clock())
        ids = {"pages_": page_id}
        rows.append(_scopes_row(info, "posts and comments", FEED_NEEDS, ids))
        if messenger:
            rows.append(_scopes_row(info, "Messenger", MESSENGER_NEEDS, ids))
        if source.webhook_settings is not None:
            rows.append(_scopes_row(info, "webhooks", WEBHOOK_NEEDS, ids))
    rows.append(
        _probe(
            source,
            "posts and comments",
            f"{page_id}/feed",
            {"fields": "id,comments.limit(5){from}", "limit": 5},
            ", ".join(FEED_NEEDS),
        )
    )
    if messenger:
        rows.append(
            _probe(
                source,
                "Messenger",
                f"{page_id}/conversations",
                {"platform": "messenger", "fields": "id", "limit": 1},
                "pages_messaging, pages_manage_metadata, pages_read_engagement",
            )
        )
    rows.append(_authors_row(source, page_id))
    fields = (*PAGE_FIELDS, *(MESSENGER_FIELDS if messenger else ()))
    if source.webhook_settings is None:
        rows.append(
            _unconfigured(
                "the Page's feed, mention, messages and message_echoes fields",
                "polling reads the Page's posts, comments, visitor and tagged posts and "
                "Messenger; mentions of the Page in comments and posts elsewhere reach syncd "
                "only by the Page 'mention' webhook (and Messenger messages beyond a thread's "
                "20 newest between two polls only by the 'messages' webhook)",
            )
        )
    else:
        rows.append(
            _page_subscription_row(
                source,
                page_id,
                info,
                fields,
                "Meta delivers a field only when the app subscribes to it in the App "
                "Dashboard too (Webhooks, Page)",
            )
        )
    rows += _handle_rows(
        handles,
        [page_id, name],
        f"Page {page_id}",
        "set accounts to the Page's id or name",
        f"Page ({name}, {page_id})",
    )
    return rows


# -- Instagram -------------------------------------------------------------------------------------
def instagram_check(
    source: MetaSource, ig_user_id: str, inbox: Inbox | None, handles: Sequence[str]
) -> list[CheckRow]:
    """The token reads the account (a Page token of its linked Page, or an Instagram Login
    token of it), valid long enough, with the permissions reading needs; its media and
    comments are readable; the webhook subscription; the handles name it."""
    token_name = "Instagram token" if source.instagram_login else "Page token"
    rows: list[CheckRow] = []
    info: TokenInfo | None = None
    why = ""
    page_id: str | None = None
    if source.instagram_login:
        rows += _instagram_login_token(source, ig_user_id)
        if not rows[0].ok:
            return rows
    else:
        info, why = _inspect(source)
        linked = _linked_page_row(source, ig_user_id, info, why)
        if linked is not None and not linked.ok:
            return [linked]
        if linked is not None:
            rows.append(linked)
            page_id = info.profile_id if info is not None else None
    try:
        me = source._get(ig_user_id, {"fields": "id,username"})
    except ExternalError as exc:
        return [*rows, CheckRow("Instagram account", False, str(exc), fix_for(exc, token_name))]
    username = str(me.get("username") or "")
    unread = _not_inspected(why) if info is None and not source.instagram_login else ""
    rows.append(CheckRow("Instagram account", True, f"@{username} ({ig_user_id}){unread}"))
    if info is not None and page_id is not None:
        rows += _expiry_rows(info, source.clock())
        ids = {"pages_": page_id, "instagram_": ig_user_id}
        rows.append(_scopes_row(info, "media and comments", INSTAGRAM_NEEDS, ids))
        if source.webhook_settings is not None:
            rows.append(_scopes_row(info, "webhooks", WEBHOOK_NEEDS, ids))
    try:
        source._list(f"{ig_user_id}/media", {"fields": "id,comments.limit(1){id}", "limit": 1})
        rows.append(CheckRow("media and comments", True, "readable"))
    except PermissionDenied as exc:
        rows.append(
            CheckRow(
                "media and comments",
                False,
                str(exc),
                "grant instagram_basic and instagram_manage_comments (Instagram Login: "
                "instagram_business_basic, instagram_business_manage_comments) and issue "
                "a new token",
            )
        )
    except ExternalError as exc:
        rows.append(CheckRow("media and comments", False, str(exc), fix_for(exc, token_name)))
    if inbox is not None:
        rows.append(_inbox_row(source, inbox, "Instagram Direct"))
    rows.append(_instagram_webhook_row(source, page_id, info, direct=inbox is not None))
    rows += _handle_rows(
        handles,
        [username, ig_user_id],
        f"@{username} ({ig_user_id})",
        "set accounts to the account's username",
        f"account (@{username})",
    )
    return rows


def _linked_page_row(
    source: MetaSource, ig_user_id: str, info: TokenInfo | None, why: str
) -> CheckRow | None:
    """The token is a Page token of the Page the account is linked to (its
    ``instagram_business_account``); None when the token could not be inspected."""
    if info is None:
        return None
    if not info.valid:
        return CheckRow("Page token", False, f"Meta says: {info.problem}", LINKED_PAGE_FIX)
    if info.type != "PAGE" or not info.profile_id:
        return CheckRow(
            "Page token",
            False,
            f"the token is a {clip(info.type, 20) or 'untyped'} token, not the Page token of "
            "the Page linked to the account (debug_token)",
            LINKED_PAGE_FIX,
        )
    try:
        page = source._get(info.profile_id, {"fields": "id,name,instagram_business_account"})
    except ExternalError as exc:
        return CheckRow("Page token", False, str(exc), fix_for(exc, "Page token"))
    account = page.get("instagram_business_account")
    linked = account.get("id") if isinstance(account, dict) else None
    if linked != ig_user_id:
        return CheckRow(
            "Page token",
            False,
            f"the token is Page {clip(info.profile_id, 40)}'s, whose Instagram account is "
            f"{clip(str(linked), 40) if linked else 'none'}, not {ig_user_id}",
            LINKED_PAGE_FIX,
        )
    return CheckRow(
        "Page token",
        True,
        f"a Page token of {clip(str(page.get('name') or ''), 80)} ({info.profile_id}), the "
        f"Page linked to the account, for the app {info.app}",
    )


def _instagram_login_token(source: MetaSource, ig_user_id: str) -> list[CheckRow]:
    """An Instagram Login token names its account at ``/me``; how long it lasts is not
    readable, and syncd does not refresh it."""
    try:
        me = source._get("me", {"fields": "user_id,username"})
    except ExternalError as exc:
        return [CheckRow("Instagram token", False, str(exc), fix_for(exc, "Instagram token"))]
    username = clip(str(me.get("username") or ""), 60)
    if ig_user_id not in (str(me.get("user_id")), str(me.get("id"))):
        return [
            CheckRow(
                "Instagram token",
                False,
                f"the token is @{username}'s ({clip(str(me.get('user_id')), 40)}), not "
                f"account {ig_user_id}'s",
                "issue an Instagram Login token of this account (Business Login for Instagram "
                "or the App Dashboard) and set access_token to it, or set ig_user_id to "
                "the token's account",
            )
        ]
    return [
        CheckRow(
            "Instagram token", True, f"an Instagram Login token of @{username} ({ig_user_id})"
        ),
        CheckRow(
            "token expiry",
            True,
            "an Instagram Login long-lived token lasts 60 days from its issue or last refresh "
            "and Meta gives no way to read when it ends; syncd does not refresh it (GET "
            "/refresh_access_token?grant_type=ig_refresh_token, once it is a day old, gives "
            "another 60 days): renew it before then and set access_token to the new one",
        ),
    ]


def _instagram_webhook_row(
    source: MetaSource, page_id: str | None, info: TokenInfo | None, *, direct: bool
) -> CheckRow:
    needed = (*INSTAGRAM_FIELDS, *(DIRECT_FIELDS if direct else ()))
    named = f"{', '.join(needed[:-1])} and {needed[-1]} fields"
    about = (
        "polling reads comments on the account's media and media tagging it; "
        "@mentions in other people's captions and comments reach syncd only by the "
        "Instagram 'mentions' webhook"
        + (
            " (and Direct messages beyond a thread's 20 newest between two polls only by "
            "the 'messages' webhook)"
            if direct
            else ""
        )
    )
    if source.webhook_settings is None:
        return _unconfigured(f"the Instagram account's {named}", about)
    if source.instagram_login:
        return _instagram_login_subscription_row(source, needed)
    if page_id is None:
        return CheckRow(
            "webhooks",
            True,
            f"configured: subscribe the app to the Instagram {named} in "
            "the App Dashboard and on the linked Page (POST /{page-id}/subscribed_apps, any "
            f"field; which Page is not known: the token could not be inspected); {CALLBACK}",
        )
    return _page_subscription_row(
        source,
        page_id,
        info,
        (),
        f"that enables the account's Instagram webhooks; its {named} are "
        "subscribed at app level (App Dashboard, Webhooks, Instagram), which a Page token "
        "cannot read",
    )


def _inbox_row(source: MetaSource, inbox: Inbox, item: str) -> CheckRow:
    """``syncd check``'s row for the inbox: one thread asked for, the permissions it takes
    named when Meta refuses."""
    token_name = "Instagram token" if source.instagram_login else "Page token"
    try:
        source._list(inbox.path, {"platform": inbox.platform, "fields": "id", "limit": 1})
    except PermissionDenied as exc:
        named = ", ".join(exc.permissions) or inbox.needs
        return CheckRow(
            item,
            False,
            str(exc),
            f"grant the app {named} (it needs {inbox.needs}; App Review for customers' "
            f"threads) and issue a new {token_name}, or set "
            f"{inbox.setting} = false",
        )
    except ExternalError as exc:
        return CheckRow(item, False, str(exc), fix_for(exc, token_name))
    return CheckRow(item, True, f"readable (uses {inbox.needs})")
