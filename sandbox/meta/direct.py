"""Instagram Direct on the Meta stand-in: the Conversations API with ``platform=instagram``.

No recording of Instagram Direct exists under a permissive licence (tests/fixtures/meta/
README.md): the answers take Messenger's recorded shapes (models/conversation.json,
apidata/conversations/) with the differences Meta documents for Instagram [doc: IG
conversations-api; messenger conversations]: a party is ``{username, id}`` (the person's id
is their IGSID for the account, the same as on their comments; the account's is its own id),
and there is no ``link`` or ``email``. Served:

- Facebook Login: ``/{page-id}/conversations?platform=instagram`` (``me`` with the Page
  token) lists the threads of the Page's linked account; it takes ``instagram_manage_messages``,
  and without Advanced Access lists none (no Instagram person has a role on the app).
- Instagram Login: ``/{ig-user-id}/conversations?platform=instagram`` (``me`` with the
  Instagram User token, :meth:`~sandbox.meta.api.MetaSandbox.add_instagram_login_token`); it
  takes ``instagram_business_manage_messages``.
- ``user_id=<IGSID>``, cursor paging only, most recently active first;
  ``/{conversation-id}``, ``/{conversation-id}/messages`` (newest first; only the 20 newest
  carry ``from``, ``to`` and ``message``) and ``/{message-id}`` (older than the 20 newest: the
  object-does-not-exist error, as Messenger's).

A missing permission is answered ``(#10)``, the code Meta gives a call its app lacks the
permission for; the words name the permission."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sandbox.meta import errors
from sandbox.meta.errors import GraphError
from sandbox.meta.fields import FieldSpec
from sandbox.meta.store import Actor, DirectMessage, DirectThread
from sandbox.meta.views import (
    EDGE_MAX,
    MESSAGE_DETAILS,
    Ctx,
    GraphViews,
    JsonObject,
    Listing,
    Paging,
    _fb_time,
    _key,
)

__all__ = ["DirectViews"]

FACEBOOK_LOGIN_SCOPE = "instagram_manage_messages"
INSTAGRAM_LOGIN_SCOPE = "instagram_business_manage_messages"


class DirectViews(GraphViews):
    """Instagram Direct's answers; :meth:`serve_direct` is asked before the other edges."""

    def serve_direct(
        self,
        endpoint: str,
        target: str,
        specs: list[FieldSpec] | None,
        ctx: Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject | None:
        """The answer when the call is Instagram Direct's, else None."""
        s = self.store
        params = dict(ctx.query)
        if endpoint == "conversations" and params.get("platform") == "instagram":
            account = self._direct_account(target, ctx)
            if account is None:
                return None
            threads = self._direct_threads(account, params, ctx)
            return self._direct_page(
                threads, lambda t: self.render_direct_thread(t, specs, ctx), ctx, path, link_params
            )
        if endpoint == "messages" and target in s.direct_threads:
            thread = self._direct_visible(s.direct_threads[target], ctx)
            newest_first = list(reversed(thread.messages))
            detailed = {m.id for m in newest_first[:MESSAGE_DETAILS]}
            return self._direct_page(
                newest_first,
                lambda m: self.render_direct_message(m, specs, ctx, details=m.id in detailed),
                ctx,
                path,
                link_params,
            )
        if endpoint == "node" and target in s.direct_threads:
            thread = self._direct_visible(s.direct_threads[target], ctx)
            return self.render_direct_thread(thread, specs, ctx)
        if endpoint == "node" and target in s.direct_messages:
            message = s.direct_messages[target]
            thread = self._direct_visible(s.direct_threads[message.thread_id], ctx)
            if message not in thread.messages[-MESSAGE_DETAILS:]:
                raise errors.not_found(target, instagram=True)
            return self.render_direct_message(message, specs, ctx)
        return None

    # -- who may read which inbox -----------------------------------------------------------
    def _direct_account(self, target: str, ctx: Ctx) -> str | None:
        """The Instagram account whose inbox ``target`` names for this token; None when the
        call is not Direct's to answer (another node, which the other edges refuse)."""
        s, token = self.store, ctx.token
        if target in s.pages:
            if token.type != "PAGE" or token.page_id != target:
                raise GraphError(190, "(#190) This method must be called with a Page Access Token")
            self._direct_scope(FACEBOOK_LOGIN_SCOPE, ctx)
            return s.pages[target].instagram_account or ""
        if target in s.ig_accounts and token.type == "INSTAGRAM" and token.user_id == target:
            self._direct_scope(INSTAGRAM_LOGIN_SCOPE, ctx)
            return target
        return None

    def _direct_scope(self, scope: str, ctx: Ctx) -> None:
        if scope not in ctx.token.scopes:
            raise GraphError(
                10,
                f"(#10) This endpoint requires the '{scope}' permission. Requires {scope} "
                "permission to manage the object",
                type_="OAuthException",
            )

    def _direct_viewer(self, ctx: Ctx) -> str | None:
        token = ctx.token
        if token.type == "INSTAGRAM":
            return token.user_id if INSTAGRAM_LOGIN_SCOPE in token.scopes else None
        page = self.store.pages.get(token.page_id or "")
        if page is None or FACEBOOK_LOGIN_SCOPE not in token.scopes:
            return None
        return page.instagram_account

    def _direct_listed(self, thread: DirectThread, ctx: Ctx) -> bool:
        # "Advanced Access is required to access conversations between your business and
        # people who do not have a role on your messaging app, your Instagram Professional
        # account ..." (Messenger Conversations API): through the Page, its app's access.
        page = self.store.pages.get(ctx.token.page_id or "")
        standard_only = ctx.withhold or (page is not None and not page.advanced_access)
        return bool(thread.messages) and not standard_only

    def _direct_visible(self, thread: DirectThread, ctx: Ctx) -> DirectThread:
        if thread.account_id != self._direct_viewer(ctx) or not self._direct_listed(thread, ctx):
            raise errors.not_found(thread.id, instagram=True)
        return thread

    # -- edges -------------------------------------------------------------------------------
    def _direct_threads(self, account_id: str, params: dict[str, str], ctx: Ctx) -> list[Any]:
        """The account's threads listed for this token, most recently active first."""
        s = self.store
        threads = [
            t
            for t in s.direct_threads.values()
            if t.account_id == account_id and self._direct_listed(t, ctx)
        ]
        if user := params.get("user_id"):
            threads = [t for t in threads if s.igsid(s.ig_users[t.user_key], account_id) == user]
        if params.get("since") or params.get("until"):
            raise GraphError(
                100, "(#100) Time-based pagination is not available for the conversations endpoint"
            )
        return sorted(threads, key=lambda t: (t.updated, t.seq), reverse=True)

    def _direct_page(
        self,
        items: list[Any],
        render: Callable[[Any], JsonObject],
        ctx: Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        """One page of ``items`` (newest first), cursor paging as Messenger's is recorded."""
        listing = Listing(
            items,
            dict(ctx.query),
            path,
            link_params,
            Paging(
                "cursor",
                True,
                EDGE_MAX,
                lambda i: _key(i.updated if isinstance(i, DirectThread) else i.created, i.seq),
            ),
        )
        return self._list_answer(listing, ctx, render)

    # -- rendering ---------------------------------------------------------------------------
    def _direct_party(self, who: Actor, account_id: str) -> JsonObject:
        ident, username = self._ig_author(who, account_id)
        return {"username": username, "id": ident}

    def render_direct_thread(
        self, thread: DirectThread, specs: list[FieldSpec] | None, ctx: Ctx
    ) -> JsonObject:
        person: Actor = ("iguser", thread.user_key)
        ours: Actor = ("account", thread.account_id)
        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
            "id": lambda t, f, c: t.id,
            "updated_time": lambda t, f, c: _fb_time(t.updated),
            "participants": lambda t, f, c: {
                "data": [
                    self._direct_party(person, t.account_id),
                    self._direct_party(ours, t.account_id),
                ]
            },
        }
        return self._render("IGConversation", thread, specs, ctx, ("id", "updated_time"), fields)

    def render_direct_message(
        self,
        message: DirectMessage,
        specs: list[FieldSpec] | None,
        ctx: Ctx,
        *,
        details: bool = True,
    ) -> JsonObject:
        thread = self.store.direct_threads[message.thread_id]
        other: Actor = (
            ("account", thread.account_id)
            if message.sender[0] == "iguser"
            else ("iguser", thread.user_key)
        )
        return self._render_message(
            "IGMessage",
            message,
            lambda who: self._direct_party(who, thread.account_id),
            other,
            specs,
            ctx,
            details=details,
        )
