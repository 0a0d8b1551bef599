"""How the X sandbox shapes its answers: fields, expansions, and X's problem bodies.

Two dialects exist because the published specs disagree: spec 2.159 (and the API as recorded)
name the expansion ``includes.tweets`` and the problem types ``https://api.twitter.com/2/problems/…``;
spec 2.167 says ``includes.posts``, ``https://api.x.com/2/problems/…``, and requires
``repost_count`` / ``post_count`` in public metrics. The "posts" dialect adds the new names
beside the old ones wherever the old ones are not rejected, so a parser for either works.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.faults import FaultRule
from sandbox.server import Request, Response
from sandbox.x.store import JsonObject, StoredPost, StoredUser, XStore

DEFAULT_POST_FIELDS = ("id", "text", "edit_history_tweet_ids")
DEFAULT_USER_FIELDS = ("id", "name", "username")


# Every value either spec lets a client ask for. Fields the sandbox does not model are accepted
# and left out of the answer, which is what X does for fields a post simply does not have.
def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


POST_FIELDS = _names(
    "article article_title attachments author_id card_uri community_id context_annotations "
    "conversation_id created_at display_text_range edit_controls edit_history_tweet_ids "
    "edit_history_post_ids entities geo id in_reply_to_user_id lang matched_media_notes "
    "media_metadata non_public_metrics note_tweet note_post note_request_suggestions "
    "organic_metrics paid_partnership possibly_sensitive promoted_metrics public_metrics "
    "referenced_tweets referenced_posts reply_settings scopes source suggested_source_links "
    "suggested_source_links_with_counts text withheld"
)
USER_FIELDS = _names(
    "affiliation confirmed_email connection_status created_at description entities id "
    "is_identity_verified location most_recent_tweet_id most_recent_post_id name parody "
    "pinned_tweet_id pinned_post_id profile_banner_url profile_image_url protected "
    "public_metrics receives_your_dm subscribes_to_you subscription subscription_type url "
    "username verified verified_followers_count verified_type withheld"
)
POST_EXPANSIONS = _names(
    "article.cover_media article.media_entities attachments.media_keys "
    "attachments.media_source_tweet attachments.poll_ids author_id edit_history_tweet_ids "
    "edit_history_post_ids entities.mentions.username entities.note.mentions.username "
    "geo.place_id in_reply_to_user_id referenced_tweets.id "
    "referenced_tweets.id.attachments.media_keys referenced_tweets.id.author_id "
    "referenced_posts username"
)
USER_EXPANSIONS = _names(
    "affiliation affiliation.user_id most_recent_tweet_id most_recent_post_id "
    "pinned_tweet_id pinned_post_id"
)
# 2.167's names for the same things, rendered under the name the client asked for.
_POST_FIELD_ALIASES = {
    "referenced_posts": "referenced_tweets",
    "edit_history_post_ids": "edit_history_tweet_ids",
}


@dataclass(frozen=True)
class Dialect:
    includes_key: str  # "tweets" or "posts"
    problem_base: str

    @classmethod
    def for_includes_key(cls, includes_key: str) -> Dialect:
        if includes_key == "tweets":
            return cls("tweets", "https://api.twitter.com/2/problems/")
        if includes_key == "posts":
            return cls("posts", "https://api.x.com/2/problems/")
        raise ValueError(f"includes_key must be 'tweets' or 'posts', got {includes_key!r}")

    @property
    def newer(self) -> bool:
        return self.includes_key == "posts"


# -- problem bodies (shapes copied from recorded X responses) --------------------------------
UNAUTHORIZED: JsonObject = {
    "title": "Unauthorized",
    "type": "about:blank",
    "status": 401,
    "detail": "Unauthorized",
}
# A user token without the scopes an endpoint needs (tweet.read, users.read).
FORBIDDEN: JsonObject = {
    "title": "Forbidden",
    "type": "about:blank",
    "status": 403,
    "detail": "Forbidden",
}
TOO_MANY_REQUESTS: JsonObject = {
    "title": "Too Many Requests",
    "detail": "Too Many Requests",
    "type": "about:blank",
    "status": 429,
}


def not_found(dialect: Dialect, resource_type: str, parameter: str, value: str) -> JsonObject:
    return {
        "value": value,
        "detail": f"Could not find {resource_type} with {parameter}: [{value}].",
        "title": "Not Found Error",
        "resource_type": resource_type,
        "parameter": parameter,
        "resource_id": value,
        "type": dialect.problem_base + "resource-not-found",
    }


def suspended(dialect: Dialect, parameter: str, value: str) -> JsonObject:
    # Yes, X files a suspension under "resource-not-found" with the title "Forbidden".
    return {
        "parameter": parameter,
        "resource_id": value,
        "value": value,
        "detail": f"User has been suspended: [{value}].",
        "title": "Forbidden",
        "resource_type": "user",
        "type": dialect.problem_base + "resource-not-found",
    }


# X's answer (403) to an app without the access an endpoint needs, e.g. full-archive search
# without Pro/Enterprise access: the body recorded in tweepy#2098 (search_all_tweets),
# xdevplatform/samples#160 and xdevplatform/twitter-api-java-sdk#67. tweepy raises Forbidden.
SANDBOX_CLIENT_ID = "20000001"


def client_forbidden(dialect: Dialect) -> JsonObject:
    return {
        "client_id": SANDBOX_CLIENT_ID,
        "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use "
        "keys and tokens from a Twitter developer App that is attached to a Project. You can "
        "create a project via the developer portal.",
        "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
        "title": "Client Forbidden",
        "required_enrollment": "Appropriate Level of API Access",
        "reason": "client-not-enrolled",
        "type": dialect.problem_base + "client-forbidden",
    }


def unsupported_authentication(dialect: Dialect) -> JsonObject:
    """X's 403 to an app-only token on an endpoint that acts for a user (GET /2/users/me)."""
    return {
        "title": "Unsupported Authentication",
        "detail": "Authenticating with OAuth 2.0 Application-Only is forbidden for this "
        "endpoint.  Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 "
        "User Context].",
        "type": dialect.problem_base + "unsupported-authentication",
        "status": 403,
    }


def invalid_request(dialect: Dialect, parameter: str, raw: str, message: str) -> JsonObject:
    return {
        "errors": [{"parameters": {parameter: [raw]}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": dialect.problem_base + "invalid-request",
    }


class Renderer:
    """Renders posts and users with the requested fields and collects expansions for one
    response. Not thread-safe; one per request, used under the sandbox lock."""

    def __init__(
        self,
        store: XStore,
        dialect: Dialect,
        *,
        post_fields: Iterable[str] = (),
        user_fields: Iterable[str] = (),
        expansions: Iterable[str] = (),
    ) -> None:
        self.store = store
        self.dialect = dialect
        self.post_fields = list(dict.fromkeys([*DEFAULT_POST_FIELDS, *post_fields]))
        self.user_fields = list(dict.fromkeys([*DEFAULT_USER_FIELDS, *user_fields]))
        self.expansions = set(expansions)
        if "referenced_posts" in self.expansions:
            self.expansions.add("referenced_tweets.id")
        self.errors: list[JsonObject] = []
        self._users: dict[str, JsonObject] = {}
        self._posts: dict[str, JsonObject] = {}
        self._error_keys: set[tuple[str, str]] = set()

    # -- objects -------------------------------------------------------------------------
    def post(self, post: StoredPost) -> JsonObject:
        full = post.as_dict()
        # X sends a post's text with &, < and > as HTML entities (see the recordings).
        full["text"] = full["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if self.dialect.newer:
            metrics = full["public_metrics"]
            metrics["repost_count"] = metrics["retweet_count"]
        for alias, name in _POST_FIELD_ALIASES.items():
            if name in full:
                full[alias] = full[name]
        return {k: full[k] for k in self.post_fields if k in full}

    def user(self, user: StoredUser) -> JsonObject:
        full = user.as_dict(self.store.post_count(user.id))
        if self.dialect.newer:
            metrics = full["public_metrics"]
            metrics["post_count"] = metrics["tweet_count"]
        authored = self.store.authored_index(user.id)
        if authored:
            full["most_recent_tweet_id"] = full["most_recent_post_id"] = str(authored[-1])
        return {k: full[k] for k in self.user_fields if k in full}

    # -- expansions ----------------------------------------------------------------------
    def expand(self, posts: Iterable[StoredPost]) -> None:
        """Collect what ``expansions`` ask for from the primary posts of a response."""
        exp = self.expansions
        for post in posts:
            if "author_id" in exp:
                self._include_user_id(post.author_id, "author_id")
            if "in_reply_to_user_id" in exp and post.in_reply_to_user_id is not None:
                self._include_user_id(post.in_reply_to_user_id, "in_reply_to_user_id")
            if "entities.mentions.username" in exp:
                for mention in post.mentions:
                    self._include_username(mention["username"])
            want_ref = "referenced_tweets.id" in exp
            want_ref_author = "referenced_tweets.id.author_id" in exp
            if post.replied_to is not None and (want_ref or want_ref_author):
                ref = self.store.visible_post(post.replied_to)
                if ref is None:
                    # The reference stays in data; the gap is reported, not fatal (as on X).
                    self._error(
                        not_found(
                            self.dialect, "tweet", "referenced_tweets.id", str(post.replied_to)
                        )
                    )
                    continue
                if want_ref:
                    self._posts.setdefault(str(ref.id), self.post(ref))
                if want_ref_author:
                    self._include_user_id(ref.author_id, "referenced_tweets.id.author_id")

    def _include_user_id(self, user_id: str, parameter: str) -> None:
        user = self.store.users.get(user_id)
        if user is None:
            self._error(not_found(self.dialect, "user", parameter, user_id))
        elif user.suspended:
            self._error(suspended(self.dialect, parameter, user_id))
        else:
            self._users.setdefault(user.id, self.user(user))

    def _include_username(self, username: str) -> None:
        parameter = "entities.mentions.username"
        user = self.store.user_by_username(username)
        if user is None:
            self._error(not_found(self.dialect, "user", parameter, username))
        elif user.suspended:
            self._error(suspended(self.dialect, parameter, username))
        else:
            self._users.setdefault(user.id, self.user(user))

    def _error(self, problem: JsonObject) -> None:
        key = (problem["parameter"], problem["value"])
        if key not in self._error_keys:
            self._error_keys.add(key)
            self.errors.append(problem)

    # -- assembly ------------------------------------------------------------------------
    def body(self, data: Any = None, meta: JsonObject | None = None) -> JsonObject:
        """A response body in X's key order; empty parts are left out, as X does."""
        out: JsonObject = {}
        if data is not None and data != []:
            out["data"] = data
        includes: JsonObject = {}
        if self._users:
            includes["users"] = list(self._users.values())
        if self._posts:
            includes[self.dialect.includes_key] = list(self._posts.values())
        if includes:
            out["includes"] = includes
        if self.errors:
            out["errors"] = list(self.errors)
        if meta is not None:
            out["meta"] = meta
        return out


# -- the bad_item fault ------------------------------------------------------------------------
# What a broken field becomes, by how it is broken: a value of another JSON type, or one of the
# right type that parses as nothing.
_WRONG_TYPE: dict[str, Any] = {"id": 12345, "created_at": 1700000000, "author_id": ["1"]}
_BAD_VALUE: dict[str, Any] = {"id": "not-an-id", "created_at": "yesterday", "author_id": ""}


def break_first_item(resp: Response, rule: FaultRule) -> Response:
    try:
        body = json.loads(resp.body)
        item = body["data"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return resp  # nothing to break: an empty page or an error stays as it is
    for name in rule.fields or ["created_at"]:
        if rule.how == "missing":
            item.pop(name, None)
        elif rule.how == "wrong_type":
            item[name] = _WRONG_TYPE.get(name, {"unexpected": True})
        else:
            item[name] = _BAD_VALUE.get(name, "")
    return Response.json(body, resp.status, resp.headers)


# -- the repeat_token fault --------------------------------------------------------------------
def repeat_token(resp: Response, req: Request) -> Response:
    """The answer with ``meta.next_token`` set to the token the request sent (a walk that
    follows it reads this page forever); a request without a token, or an answer without a
    next page, stays as it is."""
    sent = req.query.get("pagination_token") or req.query.get("next_token")
    try:
        body = json.loads(resp.body)
        meta = body["meta"]
    except (ValueError, KeyError, TypeError):
        return resp
    if not sent or not isinstance(meta, dict) or "next_token" not in meta:
        return resp
    meta["next_token"] = sent
    return Response.json(body, resp.status, resp.headers)
