"""The X stand-in's user authentication, as X does it: OAuth 2.0 Authorization Code with PKCE
and refresh-token rotation, OAuth 1.0a HMAC-SHA1 signatures, ``GET /2/users/me``, and the usage
meter counting owned reads apart. Everything is offline: a loopback sandbox in-process."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import tweepy
from support.x_sandbox import TOKEN, Clock, get, spec

from connectors._http import RewritingAdapter, mount
from sandbox.x.api import XSandbox

CLIENT = "syncd-test-client"
CALLBACK = "http://127.0.0.1/callback"
VERIFIER = "v" * 43 + "-verifier-of-a-test"


def challenge(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def authorize_url(verifier: str = VERIFIER, **overrides: str) -> str:
    query = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": CALLBACK,
        "scope": "tweet.read users.read offline.access",
        "state": "the-state",
        "code_challenge": challenge(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }
    return "https://x.com/i/oauth2/authorize?" + urlencode(query)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[XSandbox]:
    with XSandbox(clock=clock, access_token_lifetime=600) as sb:
        sb.add_user("acme", "Acme")
        sb.add_user("globex", "Globex")
        sb.auth.add_client(CLIENT, redirect_uris=[CALLBACK])
        yield sb


def user_id(sb: XSandbox, handle: str) -> str:
    user = sb.user_by_username(handle)
    assert user is not None
    return str(user["id"])


def token_request(sb: XSandbox, form: dict[str, str], **kwargs: Any) -> requests.Response:
    return requests.post(sb.url + "/2/oauth2/token", data=form, timeout=5, **kwargs)


def code_for(sb: XSandbox, handle: str = "acme", **overrides: str) -> str:
    redirect = sb.approve(authorize_url(**overrides), handle)
    query = parse_qs(urlsplit(redirect).query)
    assert redirect.startswith(CALLBACK + "?") and query["state"] == ["the-state"]
    return query["code"][0]


def exchange(sb: XSandbox, code: str, verifier: str = VERIFIER) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": CALLBACK,
        "client_id": CLIENT,
    }
    return token_request(sb, form)


# -- OAuth 2.0: authorization code with PKCE --------------------------------------------------
def test_a_pkce_code_becomes_tokens_that_read_as_the_user(sandbox: XSandbox) -> None:
    answer = exchange(sandbox, code_for(sandbox))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 600
    assert set(body["scope"].split()) == {"tweet.read", "users.read", "offline.access"}
    me = get(sandbox, "/2/users/me", token=body["access_token"])
    assert me.status_code == 200
    assert me.json()["data"] == {"id": user_id(sandbox, "acme"), "name": "Acme", "username": "acme"}
    assert spec("2.167").errors("/2/users/me", 200, me.json()) == []


@pytest.mark.parametrize(
    "spoil",
    ["verifier", "redirect_uri", "client", "reuse", "expired"],
)
def test_a_code_is_refused_unless_everything_matches(
    sandbox: XSandbox, clock: Clock, spoil: str
) -> None:
    sandbox.auth.add_client("another-client")
    code = code_for(sandbox)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": VERIFIER,
        "redirect_uri": CALLBACK,
        "client_id": CLIENT,
    }
    if spoil == "verifier":
        form["code_verifier"] = VERIFIER + "x"
    elif spoil == "redirect_uri":
        form["redirect_uri"] = "http://127.0.0.1/elsewhere"
    elif spoil == "client":
        form["client_id"] = "another-client"
    elif spoil == "reuse":
        assert token_request(sandbox, form).status_code == 200
    else:
        clock.advance(seconds=31)  # X's codes live 30 seconds
    answer = token_request(sandbox, form)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert "authorization code was invalid" in answer.json()["error_description"]


def test_plain_challenge_and_refused_consent_parameters(sandbox: XSandbox) -> None:
    code = code_for(
        sandbox, code_challenge="plain-verifier-" + "p" * 40, code_challenge_method="plain"
    )
    assert exchange(sandbox, code, "plain-verifier-" + "p" * 40).status_code == 200
    with pytest.raises(ValueError, match="redirect_uri"):
        sandbox.approve(authorize_url(redirect_uri="http://evil.example/cb"), "acme")
    with pytest.raises(ValueError, match="state"):
        sandbox.approve(authorize_url(state=""), "acme")


def test_a_confidential_client_must_send_http_basic(sandbox: XSandbox) -> None:
    sandbox.auth.add_client("confidential", secret="client-S3CRET", redirect_uris=[CALLBACK])
    refresh = sandbox.auth.issue_tokens("confidential", user_id(sandbox, "acme"))["refresh_token"]
    form = {
        "grant_type": "refresh_token",
        "refresh_token": str(refresh),
        "client_id": "confidential",
    }
    bare = token_request(sandbox, form)
    assert bare.status_code == 401 and bare.json()["error"] == "unauthorized_client"
    wrong = token_request(sandbox, form, auth=("confidential", "not-it"))
    assert wrong.status_code == 401
    right = token_request(sandbox, form, auth=("confidential", "client-S3CRET"))
    assert right.status_code == 200, right.text


def test_refresh_rotates_and_access_tokens_expire(sandbox: XSandbox, clock: Clock) -> None:
    first = sandbox.auth.issue_tokens(CLIENT, user_id(sandbox, "acme"))
    form = {"grant_type": "refresh_token", "refresh_token": str(first["refresh_token"])}
    second = token_request(sandbox, {**form, "client_id": CLIENT})
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    again = token_request(sandbox, {**form, "client_id": CLIENT})  # the retired one
    assert again.status_code == 400
    assert again.json()["error_description"] == "Value passed for the token was invalid."
    fresh = second.json()["access_token"]
    assert get(sandbox, "/2/users/me", token=fresh).status_code == 200
    clock.advance(seconds=601)
    assert get(sandbox, "/2/users/me", token=fresh).status_code == 401


def test_user_tokens_need_the_read_scopes(sandbox: XSandbox) -> None:
    narrow = sandbox.auth.issue_tokens(CLIENT, user_id(sandbox, "acme"), scopes=["tweet.read"])
    answer = get(sandbox, "/2/users/me", token=str(narrow["access_token"]))
    assert answer.status_code == 403
    assert "refresh_token" not in narrow  # no offline.access, no refresh token


def test_users_me_refuses_the_app_token(sandbox: XSandbox) -> None:
    answer = get(sandbox, "/2/users/me")
    assert answer.status_code == 403
    assert answer.json()["title"] == "Unsupported Authentication"
    assert answer.json()["type"].endswith("/2/problems/unsupported-authentication")


# -- OAuth 1.0a ---------------------------------------------------------------------------------
@pytest.fixture
def signed(sandbox: XSandbox) -> tuple[str, str, str, str]:
    sandbox.auth.add_consumer("consumer-key-1", "consumer-S3CRET")
    token, secret = sandbox.auth.issue_oauth1_token("consumer-key-1", user_id(sandbox, "acme"))
    return "consumer-key-1", "consumer-S3CRET", token, secret


def test_tweepy_oauth1_user_context_is_verified(
    sandbox: XSandbox, signed: tuple[str, str, str, str]
) -> None:
    key, secret, token, token_secret = signed
    assert token.startswith(user_id(sandbox, "acme") + "-")  # shaped like X's
    client = tweepy.Client(
        consumer_key=key,
        consumer_secret=secret,
        access_token=token,
        access_token_secret=token_secret,
        return_type=dict,
    )
    mount(client.session, RewritingAdapter({"https://api.twitter.com": sandbox.url}))
    assert client.get_me(user_auth=True)["data"]["username"] == "acme"
    mentions = client.get_users_mentions(user_id(sandbox, "acme"), max_results=5, user_auth=True)
    assert mentions["meta"]["result_count"] == 0


@pytest.mark.parametrize("spoil", ["consumer_secret", "token_secret", "query", "unknown_token"])
def test_a_wrong_signature_is_refused(
    sandbox: XSandbox, signed: tuple[str, str, str, str], spoil: str
) -> None:
    key, secret, token, token_secret = signed
    auth = tweepy.OAuth1UserHandler(
        key,
        secret + ("x" if spoil == "consumer_secret" else ""),
        token + ("x" if spoil == "unknown_token" else ""),
        token_secret + ("x" if spoil == "token_secret" else ""),
    ).apply_auth()  # requests-oauthlib's OAuth1, as tweepy signs with it
    url = f"https://api.x.com/2/users/{user_id(sandbox, 'acme')}/mentions?max_results=5"
    request = requests.Request("GET", url, auth=auth).prepare()
    assert request.url is not None
    if spoil == "query":  # signed for one query, sent with another
        request.url = request.url.replace("max_results=5", "max_results=6")
    request.url = request.url.replace("https://api.x.com", sandbox.url)
    with requests.Session() as session:
        answer = session.send(request, timeout=5)
    assert answer.status_code == 401


def test_the_unspoiled_signature_passes(
    sandbox: XSandbox, signed: tuple[str, str, str, str]
) -> None:
    key, secret, token, token_secret = signed
    auth = tweepy.OAuth1UserHandler(key, secret, token, token_secret).apply_auth()
    url = f"https://api.x.com/2/users/{user_id(sandbox, 'acme')}/mentions?max_results=5"
    request = requests.Request("GET", url, auth=auth).prepare()
    assert request.url is not None
    request.url = request.url.replace("https://api.x.com", sandbox.url)
    with requests.Session() as session:
        assert session.send(request, timeout=5).status_code == 200


# -- the usage meter: owned reads ------------------------------------------------------------
def test_owned_reads_are_counted_apart(sandbox: XSandbox, clock: Clock) -> None:
    acme, globex = user_id(sandbox, "acme"), user_id(sandbox, "globex")
    fan = sandbox.add_user("fan")["id"]
    news = sandbox.add_post(acme, "News from Acme")["id"]
    sandbox.add_post(fan, "@acme nice news", in_reply_to=news)
    sandbox.add_post(fan, "@acme another")
    sandbox.add_post(fan, "@globex hello")
    own = str(sandbox.auth.issue_tokens(CLIENT, acme)["access_token"])
    expand = {"expansions": "referenced_tweets.id"}
    usage = sandbox.usage

    assert get(sandbox, f"/2/users/{acme}/mentions", token=own, **expand).status_code == 200
    # Two mentions are owned; the replied-to post expanded beside them is an ordinary read.
    assert (usage.owned_posts_returned, usage.posts_returned) == (2, 3)
    assert (usage.owned_posts_billed, usage.unowned_posts_billed) == (2, 1)

    # Another user's mentions with acme's token: X serves them, as ordinary reads.
    answer = get(sandbox, f"/2/users/{globex}/mentions", token=own)
    assert answer.status_code == 200 and len(answer.json()["data"]) == 1
    assert (usage.owned_posts_billed, usage.unowned_posts_billed) == (2, 2)

    # The same mentions with the app token: not owned, and already billed today.
    assert get(sandbox, f"/2/users/{acme}/mentions").status_code == 200
    assert usage.owned_posts_returned == 2 and usage.unowned_posts_returned == 4
    assert (usage.owned_posts_billed, usage.unowned_posts_billed) == (2, 2)

    # Own posts with the own token are owned too; a new UTC day bills again.
    clock.advance(days=1)
    assert get(sandbox, f"/2/users/{acme}/tweets", token=own).status_code == 401  # expired
    own = str(sandbox.auth.issue_tokens(CLIENT, acme)["access_token"])
    assert get(sandbox, f"/2/users/{acme}/tweets", token=own).status_code == 200
    assert (usage.owned_posts_billed, usage.unowned_posts_billed) == (3, 2)
    assert usage.posts_billed == usage.owned_posts_billed + usage.unowned_posts_billed


def test_a_user_token_has_its_own_rate_windows(sandbox: XSandbox) -> None:
    acme = user_id(sandbox, "acme")
    own = str(sandbox.auth.issue_tokens(CLIENT, acme)["access_token"])
    app = get(sandbox, f"/2/users/{acme}/mentions")
    user = get(sandbox, f"/2/users/{acme}/mentions", token=own)
    assert app.headers["x-rate-limit-remaining"] == user.headers["x-rate-limit-remaining"]
    assert (
        get(sandbox, f"/2/users/{acme}/mentions", token=TOKEN).headers["x-rate-limit-remaining"]
        != app.headers["x-rate-limit-remaining"]
    )
