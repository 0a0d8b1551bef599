"""X sandbox search and counts, through the real tweepy client, against recorded X responses
(tweepy's cassettes, academictwitteR's full-archive counts pages) and both OpenAPI specs."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import tweepy
import yaml
from support import FIXTURES
from support.x_sandbox import TOKEN, Clock, get, recorded, spec

from connectors._http import RewritingAdapter, mount
from sandbox.x.api import XSandbox

RECENT, ALL = "/2/tweets/search/recent", "/2/tweets/search/all"
COUNTS_RECENT, COUNTS_ALL = "/2/tweets/counts/recent", "/2/tweets/counts/all"
FULL_POST = {
    "tweet.fields": "author_id,conversation_id,created_at,entities,in_reply_to_user_id,lang,"
    "public_metrics,referenced_tweets,edit_history_tweet_ids",
    "user.fields": "created_at,description,location,public_metrics,url,username,verified",
    "expansions": "author_id,entities.mentions.username,in_reply_to_user_id,"
    "referenced_tweets.id,referenced_tweets.id.author_id",
}
INVALID = "https://api.twitter.com/2/problems/invalid-request"


def connect(sb: XSandbox) -> tweepy.Client:
    c = tweepy.Client(bearer_token=TOKEN, return_type=dict)
    mount(c.session, RewritingAdapter({"https://api.twitter.com": sb.url}))
    return c


def ids(body: dict[str, Any]) -> list[str]:
    return [p["id"] for p in body.get("data", [])]


def minute(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%MZ")


def cassette(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(response headers, body) of a recorded tweepy cassette."""
    doc = yaml.safe_load((FIXTURES / "tweepy" / f"{name}.yaml").read_text())
    resp = doc["interactions"][0]["response"]
    raw = resp["body"]["string"]
    raw = raw if isinstance(raw, bytes) else base64.b64decode(raw)
    return resp["headers"], json.loads(gzip.decompress(raw))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[XSandbox]:
    with XSandbox(clock=clock, full_archive_per_second=None) as sb:
        yield sb


@pytest.fixture
def client(sandbox: XSandbox) -> tweepy.Client:
    return connect(sandbox)


class World:
    """A brand, its customers, replies both ways, a self-thread, a suspended and a deleted post."""

    def __init__(self, sb: XSandbox, clock: Clock) -> None:
        self.sb = sb
        self.users = {n: sb.add_user(n)["id"] for n in ("Acme", "alice", "bob", "carol", "dave")}
        self.p: dict[str, str] = {}
        u = self.users
        for name, author, text, parent in [
            ("p1", "alice", "@acme my order is late", None),
            ("p2", "Acme", "sorry, checking", "p1"),
            ("p3", "alice", "thanks", "p2"),
            ("p4", "bob", "@ACME @carol hello", None),
            ("p5", "Acme", "Big launch today", None),
            ("p6", "carol", "congrats", "p5"),
            ("p7", "Acme", "2/ details", "p5"),
            ("p8", "Acme", "we are @acme", None),
            ("p9", "bob", "@alice hi", None),
            ("p10", "dave", "@acme spam", None),
            ("p11", "carol", "@acme soon gone", None),
        ]:
            in_reply_to = self.p[parent] if parent else None
            self.p[name] = sb.add_post(u[author], text, in_reply_to=in_reply_to)["id"]
            clock.advance(minutes=1)
        sb.suspend_user(u["dave"])
        sb.delete_post(self.p["p11"])
        clock.advance(minutes=5)

    def of(self, names: str) -> list[str]:
        return [self.p[n] for n in names.split()]


@pytest.fixture
def world(sandbox: XSandbox, clock: Clock) -> World:
    return World(sandbox, clock)


# -- the query language ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("@acme", "p8 p6 p4 p3 p1"),  # a reply's leading @handle counts; so does a self-mention
        ("@ACME", "p8 p6 p4 p3 p1"),
        ("to:acme", "p7 p6 p3"),  # the self-thread reply p7 too, as on X
        ("from:Acme", "p8 p7 p5 p2"),
        ("@acme OR to:acme", "p8 p7 p6 p4 p3 p1"),
        ("(@acme OR to:acme) -from:acme", "p6 p4 p3 p1"),
        ("from:acme is:reply", "p7 p2"),
        ("from:acme -is:reply", "p8 p5"),
        ("to:acme from:acme", "p7"),
        ("@alice OR @carol", "p9 p4 p2"),
        ("from:alice (@acme OR @bob)", "p3 p1"),
        ("-(from:alice OR from:bob) @acme", "p8 p6"),
        ("@acme -from:bob -from:alice", "p8 p6"),
        ("@acme from:bob OR from:carol", "p6 p4"),  # AND binds tighter than OR
        ("from:acme is:retweet", ""),  # the sandbox has no reposts or quotes
        ("from:acme -is:quote", "p8 p7 p5 p2"),
        ("from:dave OR @nobody", ""),  # suspended author, unknown handle
    ],
)
def test_query_operators(
    client: tweepy.Client, sandbox: XSandbox, world: World, query: str, expected: str
) -> None:
    want = world.of(expected) if expected else []
    assert ids(client.search_recent_tweets(query, max_results=100)) == want
    assert ids(client.search_all_tweets(query, max_results=100)) == want
    assert sandbox.matching_ids(query) == want


def test_from_and_to_take_user_ids(client: tweepy.Client, world: World) -> None:
    acme = world.users["Acme"]
    assert ids(client.search_recent_tweets(f"from:{acme}")) == world.of("p8 p7 p5 p2")
    assert ids(client.search_recent_tweets(f"to:{acme} -from:{acme}")) == world.of("p6 p3")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("is:reply", "is/has/lang cannot be used as a standalone operator (at position 1)"),
        ("@acme OR is:reply", "standalone operator (at position 10)"),
        ("-from:acme", "Rules must contain at least one positive, non-stopword clause"),
        ("@acme OR -from:bob", "positive, non-stopword clause (at position 10)"),
        ("@acme OR (is:reply -from:bob)", "standalone operator (at position 11)"),
        ("lang:en @acme", "Reference to invalid operator 'lang'. Operator is not available"),
        ("@acme has:links", "Reference to invalid operator 'has:links'"),
        ("@acme AND to:acme", "Ambiguous use of and as a keyword. Use a space"),
        ("(@acme OR to:acme", "Missing closing parenthesis (at position 1)"),
        ("@acme)", "missing EOF at ')' (at position 6)"),
        ("@acme OR", "no viable alternative at input '<EOF>' (at position 9)"),
        ("() @acme", "no viable alternative at input ')' (at position 2)"),
        ("- @acme", "no viable alternative at input '-' (at position 1)"),
        ("acme", "keyword acme is not supported"),
        ('@acme "late order"', 'phrase "late order" is not supported (at position 7)'),
        ("#launch @acme", "Reference to invalid operator 'hashtag'"),
        ("from:no-such!", "Reference to invalid operator 'from'"),
    ],
)
def test_queries_x_refuses_are_its_400(sandbox: XSandbox, query: str, message: str) -> None:
    resp = get(sandbox, RECENT, query=query)
    assert resp.status_code == 400
    body = resp.json()
    assert body["title"] == "Invalid Request" and body["type"] == INVALID
    assert body["detail"] == "One or more parameters to your request was invalid."
    [error] = body["errors"]
    assert error["parameters"] == {"query": [query]}
    assert error["message"].startswith("There were errors processing your request: ")
    assert message in error["message"]


def test_missing_or_blank_query(client: tweepy.Client, sandbox: XSandbox) -> None:
    resp = get(sandbox, COUNTS_RECENT)
    assert resp.json()["errors"][0]["message"] == "The `query` query parameter can not be empty"
    with pytest.raises(tweepy.BadRequest, match="'query' must be a non-empty string"):
        client.search_recent_tweets(" ")


# -- paging, ids and time -------------------------------------------------------------------------
def test_paging_is_stable_while_posts_arrive(
    client: tweepy.Client, sandbox: XSandbox, clock: Clock
) -> None:
    acme = sandbox.add_user("acme")["id"]
    fan = sandbox.add_user("fan")["id"]
    first = []
    for i in range(95):
        first.append(sandbox.add_post(fan, f"@acme old {i}")["id"])
        clock.advance(seconds=1)
    clock.advance(seconds=10)
    arrived: list[str] = []
    seen: list[str] = []
    pages = tweepy.Paginator(client.search_recent_tweets, "@acme OR to:acme", max_results=10)
    for page in pages:
        seen += ids(page)
        for _ in range(3):  # new posts arrive, already searchable, between two pages
            arrived.append(sandbox.add_post(fan, f"@acme new {len(arrived)}")["id"])
        clock.advance(seconds=15)
        sandbox.add_post(acme, "a reply", in_reply_to=first[0])  # and posts by the brand
    assert seen == first[::-1]  # newest first, nothing twice, nothing lost
    assert len(arrived) == 30
    since = client.search_recent_tweets("@acme -from:acme", since_id=seen[0], max_results=100)
    assert ids(since) == arrived[::-1]
    # until_id bounds a walk from above, exclusively.
    older = client.search_recent_tweets("@acme", until_id=first[5], max_results=10)
    assert ids(older) == first[4::-1]


def test_tokens_belong_to_their_query_and_endpoint(sandbox: XSandbox, clock: Clock) -> None:
    sandbox.add_user("acme")
    fan = sandbox.add_user("fan")["id"]
    for i in range(12):
        sandbox.add_post(fan, f"@acme {i}")
    clock.advance(minutes=1)
    token = get(sandbox, RECENT, query="@acme").json()["meta"]["next_token"]
    assert get(sandbox, RECENT, query="@acme", pagination_token=token).status_code == 200
    for path, query, bad in [
        (RECENT, "@acme", "garbage!"),
        (RECENT, "@acme OR to:acme", token),
        (ALL, "@acme", token),
    ]:
        resp = get(sandbox, path, query=query, next_token=bad)
        assert resp.status_code == 400
        assert resp.json()["errors"][0]["parameters"] == {"next_token": [bad]}


@pytest.mark.parametrize(
    ("path", "value", "status"),
    [
        *[(RECENT, 9, 400), (RECENT, 10, 200), (RECENT, 100, 200), (RECENT, 101, 400)],
        *[(ALL, 9, 400), (ALL, 500, 200), (ALL, 501, 400)],
    ],
)
def test_max_results_bounds(
    sandbox: XSandbox, world: World, path: str, value: int, status: int
) -> None:
    resp = get(sandbox, path, query="@acme OR to:acme", max_results=value)
    assert resp.status_code == status
    if status == 400:
        high = 100 if path == RECENT else 500
        assert resp.json()["errors"] == [
            {
                "parameters": {"max_results": [str(value)]},
                "message": f"The `max_results` query parameter value [{value}] is not between "
                f"10 and {high}",
            }
        ]


def test_default_page_is_ten(client: tweepy.Client, sandbox: XSandbox, clock: Clock) -> None:
    sandbox.add_user("acme")
    fan = sandbox.add_user("fan")["id"]
    for i in range(11):
        sandbox.add_post(fan, f"@acme {i}")
    clock.advance(minutes=1)
    page = client.search_recent_tweets("@acme", sort_order="relevancy")
    assert page["meta"]["result_count"] == 10 and "next_token" in page["meta"]


def test_time_windows(client: tweepy.Client, sandbox: XSandbox, clock: Clock) -> None:
    sandbox.add_user("acme")
    fan = sandbox.add_user("fan")["id"]
    t0 = clock.now
    made = [
        sandbox.add_post(fan, "@acme x", created_at=t0 + timedelta(hours=h))["id"] for h in range(6)
    ]
    clock.now = t0 + timedelta(hours=6)
    window = {"start_time": t0 + timedelta(hours=1), "end_time": t0 + timedelta(hours=4)}
    assert ids(client.search_recent_tweets("@acme", **window)) == made[3:0:-1]
    # since_id and until_id narrow a time window further (both apply).
    narrower = client.search_recent_tweets("@acme", since_id=made[1], **window)
    assert ids(narrower) == made[3:1:-1]
    assert ids(client.search_recent_tweets("@acme", until_id=made[2], **window)) == [made[1]]
    with pytest.raises(tweepy.BadRequest, match="'start_time' must be before 'end_time'"):
        client.search_recent_tweets("@acme", start_time=window["end_time"], end_time=t0)


def test_search_lags_ten_seconds_like_x(sandbox: XSandbox, clock: Clock) -> None:
    sandbox.add_user("acme")
    fan = sandbox.add_user("fan")["id"]
    post = sandbox.add_post(fan, "@acme just now")["id"]
    clock.advance(seconds=9)
    assert get(sandbox, RECENT, query="@acme").json() == {"meta": {"result_count": 0}}
    end = clock.now - timedelta(seconds=5)
    resp = get(sandbox, RECENT, query="@acme", end_time=end.isoformat())
    assert resp.json()["errors"] == [
        {
            "parameters": {"end_time": [minute(end)]},
            "message": f"Invalid 'end_time':'{minute(end)}'. 'end_time' must be a minimum of 10 "
            "seconds prior to the request time.",
        }
    ]
    clock.advance(seconds=2)
    assert ids(get(sandbox, RECENT, query="@acme").json()) == [post]


def test_recent_search_reaches_back_seven_days(
    client: tweepy.Client, sandbox: XSandbox, clock: Clock
) -> None:
    sandbox.add_user("acme")
    fan = sandbox.add_user("fan")["id"]
    now = clock.now
    ages = [timedelta(days=40), timedelta(days=20), timedelta(days=8), timedelta(days=6)]
    made = [sandbox.add_post(fan, "@acme x", created_at=now - age)["id"] for age in ages]
    assert ids(client.search_recent_tweets("@acme")) == [made[3]]
    start = now - timedelta(days=8)
    resp = get(sandbox, RECENT, query="@acme", start_time=start.isoformat())
    assert (resp.status_code, resp.json()) == (
        400,
        {
            "errors": [
                {
                    "parameters": {"start_time": [minute(start)]},
                    "message": f"Invalid 'start_time':'{minute(start)}'. 'start_time' must be on "
                    f"or after {minute(now - timedelta(days=7))}",
                }
            ],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": INVALID,
        },
    )
    with pytest.raises(tweepy.BadRequest, match="must be on or after"):
        client.get_recent_tweets_count("@acme", start_time=start)
    # A since_id cursor older than the reach: X's 400 names the smallest id still allowed.
    for stale in made[1:3]:
        assert get(sandbox, RECENT, query="@acme", since_id=stale).json()["errors"] == [
            {
                "parameters": {"since_id": [stale]},
                "message": "'since_id' must be a tweet id created after "
                f"{minute(now - timedelta(days=7))}. Please use a 'since_id' that is larger "
                f"than {made[2]}",
            }
        ]
    assert ids(client.search_all_tweets("@acme", since_id=made[1])) == made[:1:-1]
    # Full archive reaches everything, but defaults to the 30 days before end_time, as X does.
    assert ids(client.search_all_tweets("@acme")) == made[:0:-1]
    assert ids(client.search_all_tweets("@acme", start_time=now - timedelta(days=50))) == made[::-1]
    assert client.get_recent_tweets_count("@acme")["meta"] == {"total_tweet_count": 1}
    assert client.get_all_tweets_count("@acme")["meta"] == {"total_tweet_count": 3}


def test_search_is_not_cut_by_timeline_horizons(clock: Clock) -> None:
    with XSandbox(clock=clock, mentions_horizon=5, timeline_horizon=5) as sb:
        sb.add_user("acme")
        fan = sb.add_user("fan")["id"]
        made = [sb.add_post(fan, f"@acme {i}")["id"] for i in range(30)]
        clock.advance(minutes=1)
        acme = sb.user_by_username("acme")
        assert acme is not None
        assert len(ids(get(sb, f"/2/users/{acme['id']}/mentions", max_results=100).json())) == 5
        assert ids(get(sb, RECENT, query="@acme", max_results=100).json()) == made[::-1]
        assert ids(get(sb, ALL, query="from:fan", max_results=100).json()) == made[::-1]


def test_posts_stored_out_of_time_order_answer_the_same(sandbox: XSandbox, clock: Clock) -> None:
    sandbox.add_user("acme")
    fan = sandbox.add_user("fan")["id"]
    rng = random.Random(7)
    made = {}
    for i in range(200):
        at = clock.now - timedelta(minutes=rng.randrange(3000))
        made[sandbox.add_post(fan, f"@acme {i}", created_at=at)["id"]] = at
    assert not sandbox.store.time_ordered  # search steps over the window instead of bisecting
    start, end = clock.now - timedelta(minutes=2000), clock.now - timedelta(minutes=500)
    want = sorted((p for p, at in made.items() if start <= at < end), key=int, reverse=True)
    walked: list[str] = []
    token = None
    while True:
        extra: dict[str, str] = {"next_token": token} if token else {}
        params = {"start_time": start.isoformat(), "end_time": end.isoformat(), **extra}
        body = get(sandbox, RECENT, query="@acme", max_results=10, **params).json()
        walked += ids(body)
        if (token := body["meta"].get("next_token")) is None:
            break
    assert walked == want


# -- counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("granularity", "step"), [("minute", 60), ("hour", 3600), ("day", 86400)])
def test_counts_add_up_to_what_search_returns(
    client: tweepy.Client, sandbox: XSandbox, clock: Clock, granularity: str, step: int
) -> None:
    sandbox.add_user("acme")
    fan = sandbox.add_user("fan")["id"]
    rng = random.Random(granularity)
    t = clock.now - timedelta(days=3)
    while t < clock.now:
        sandbox.add_post(fan, "@acme hi" if rng.random() < 0.8 else "@other hi", created_at=t)
        t += timedelta(minutes=rng.randrange(1, 90), seconds=rng.randrange(60))
    start, end = clock.now - timedelta(days=2, seconds=17), clock.now - timedelta(minutes=3)
    window = {"start_time": start, "end_time": end}
    body = client.get_recent_tweets_count("@acme", granularity=granularity, **window)
    found: list[dict[str, Any]] = []
    for page in tweepy.Paginator(
        client.search_recent_tweets, "@acme", tweet_fields=["created_at"], max_results=100, **window
    ):
        found += page.get("data", [])
    assert body["meta"]["total_tweet_count"] == len(found) > 0
    buckets = body["data"]
    assert buckets[0]["start"] == start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert buckets[-1]["end"] == end.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for prev, nxt in itertools.pairwise(buckets):
        assert prev["end"] == nxt["start"]  # oldest first, contiguous, aligned
        assert datetime.fromisoformat(nxt["start"]).timestamp() % step == 0
    for b in buckets:
        inside = [p for p in found if b["start"] <= p["created_at"] < b["end"]]
        assert b["tweet_count"] == len(inside)


def test_recent_counts_match_the_tweepy_recording(clock: Clock) -> None:
    headers, rec = cassette("test_client_get_recent_tweets_count")
    clock.now = datetime(2021, 9, 20, 19, 18, 34, tzinfo=UTC)  # the recording's Date header
    with XSandbox(clock=clock) as sb:
        sb.add_user("tweepy")
        fan = sb.add_user("fan")["id"]
        for bucket in rec["data"]:
            at = datetime.fromisoformat(bucket["start"])
            for _ in range(bucket["tweet_count"]):
                sb.add_post(fan, "@tweepy test", created_at=at)
        resp = get(sb, COUNTS_RECENT, query="@tweepy")
        assert resp.json() == rec  # 169 hourly buckets, edges cut at start and end, exactly
        assert resp.headers["x-rate-limit-limit"] == headers["x-rate-limit-limit"][0] == "300"


def test_full_archive_counts_page_like_the_recording(clock: Clock) -> None:
    pages = [recorded(f"tweets_counts_all-{n}") for n in ("8b7f73", "f2df3f", "a744d8", "01339f")]
    clock.now = datetime(2021, 6, 24, 18, 30, 39, tzinfo=UTC)
    with XSandbox(clock=clock) as sb:
        sb.add_user("commtwitter")
        fan = sb.add_user("fan")["id"]
        for page in reversed(pages):
            for bucket in page["body"]["data"]:
                at = datetime.fromisoformat(bucket["start"]) + timedelta(hours=12)
                for _ in range(bucket["tweet_count"]):
                    sb.add_post(fan, "@commtwitter x", created_at=at)
        answered = list(
            tweepy.Paginator(
                connect(sb).get_all_tweets_count,
                "@commtwitter",
                start_time=datetime(2021, 3, 1, tzinfo=UTC),
                end_time=datetime(2021, 6, 5, tzinfo=UTC),
                granularity="day",
            )
        )
        # Newest page first, 31 days a page, each oldest first with its own total.
        assert len(answered) == len(pages)
        for ours, theirs in zip(answered, pages, strict=True):
            assert ours["data"] == theirs["body"]["data"]
            assert list(ours["meta"]) == list(theirs["body"]["meta"])
            assert ours["meta"]["total_tweet_count"] == theirs["body"]["meta"]["total_tweet_count"]


def test_search_bodies_have_the_recorded_shape(
    client: tweepy.Client, sandbox: XSandbox, world: World, clock: Clock
) -> None:
    for i in range(10):
        sandbox.add_post(world.users["bob"], f"@alice more {i}")
    clock.advance(minutes=1)
    for method, name in [
        (client.search_recent_tweets, "test_client_search_recent_tweets"),
        (client.search_all_tweets, "test_client_search_all_tweets"),
    ]:
        _, rec = cassette(name)
        ours = method("@acme OR @alice OR to:acme")
        assert {frozenset(p) for p in ours["data"]} == {frozenset(rec["data"][0])}
        assert list(ours["meta"]) == list(rec["meta"])  # newest, oldest, count, next_token
    body = get(sandbox, RECENT, query="@nobody").json()
    assert body == {"meta": {"result_count": 0}}


# -- access, rate limits, faults ------------------------------------------------------------------
def test_full_archive_without_access_is_x_403(clock: Clock) -> None:
    with XSandbox(clock=clock, full_archive=False) as sb:
        sb.add_user("acme")
        c = connect(sb)
        with pytest.raises(tweepy.Forbidden, match="attached to a Project") as exc:
            c.search_all_tweets("@acme")
        assert exc.value.response.json() == {
            "client_id": "20000001",
            "detail": "When authenticating requests to the Twitter API v2 endpoints, you must "
            "use keys and tokens from a Twitter developer App that is attached to a Project. You "
            "can create a project via the developer portal.",
            "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
            "title": "Client Forbidden",
            "required_enrollment": "Appropriate Level of API Access",
            "reason": "client-not-enrolled",
            "type": "https://api.twitter.com/2/problems/client-forbidden",
        }
        assert "x-rate-limit-remaining" not in exc.value.response.headers
        with pytest.raises(tweepy.Forbidden):
            c.get_all_tweets_count("@acme")
        assert c.search_recent_tweets("@acme") == {"meta": {"result_count": 0}}
        forbidden = get(sb, ALL, query="@acme").json()
        assert spec("2.159").errors(ALL, 403, forbidden) == []
        sb.full_archive = True
        assert c.search_all_tweets("@acme") == {"meta": {"result_count": 0}}


def test_rate_limits_per_endpoint(clock: Clock) -> None:
    with XSandbox(clock=clock, rate_limits={"search_recent": 2}) as sb:
        sb.add_user("acme")
        reset = str(int(clock.now.timestamp()) + 900)
        seen = [get(sb, RECENT, query="@acme").headers for _ in range(2)]
        assert [h["x-rate-limit-remaining"] for h in seen] == ["1", "0"]
        assert {(h["x-rate-limit-limit"], h["x-rate-limit-reset"]) for h in seen} == {("2", reset)}
        limited = get(sb, RECENT, query="@acme")
        assert limited.status_code == 429
        assert spec("2.159").errors(RECENT, 429, limited.json()) == []
        with pytest.raises(tweepy.TooManyRequests):
            connect(sb).search_recent_tweets("@acme")
        # The recorded limits, each endpoint in its own window.
        for path, limit in [(ALL, "300"), (COUNTS_RECENT, "300"), (COUNTS_ALL, "300")]:
            resp = get(sb, path, query="@acme")
            assert (resp.status_code, resp.headers["x-rate-limit-limit"]) == (200, limit)
            assert resp.headers["x-rate-limit-remaining"] == "299"
        assert cassette("test_client_search_recent_tweets")[0]["x-rate-limit-limit"] == ["450"]
        # Full archive also allows one request per second; that refusal resets next second.
        second = get(sb, ALL, query="@acme")
        assert second.status_code == 429
        assert second.headers["x-rate-limit-limit"] == "1"
        assert second.headers["x-rate-limit-reset"] == str(int(clock.now.timestamp()) + 1)
        clock.advance(seconds=1)
        again = get(sb, ALL, query="@acme")
        assert (again.status_code, again.headers["x-rate-limit-remaining"]) == (200, "298")


@pytest.mark.parametrize("endpoint", ["search_recent", "search_all", "counts_recent", "counts_all"])
def test_faults_strike_search_endpoints(sandbox: XSandbox, world: World, endpoint: str) -> None:
    path = {"search_recent": RECENT, "search_all": ALL}.get(endpoint) or (
        COUNTS_RECENT if endpoint == "counts_recent" else COUNTS_ALL
    )
    sandbox.inject("status", endpoint=endpoint, status=502)
    assert get(sandbox, path, query="@acme").status_code == 502
    sandbox.inject("rate_limit", endpoint=endpoint)
    limited = get(sandbox, path, query="@acme")
    assert limited.status_code == 429 and limited.headers["x-rate-limit-remaining"] == "0"
    sandbox.inject("malformed", endpoint=endpoint)
    with pytest.raises(ValueError):
        get(sandbox, path, query="@acme").json()
    sandbox.inject("bad_item", endpoint=endpoint, fields=["id", "tweet_count"], how="missing")
    broken = get(sandbox, path, query="@acme").json()["data"][0]
    assert "id" not in broken and "tweet_count" not in broken
    sandbox.inject("drop", endpoint=endpoint)
    with pytest.raises(requests.ConnectionError):
        get(sandbox, path, query="@acme")
    sandbox.inject("stall", endpoint=endpoint, seconds=0.05, phase="after")
    assert get(sandbox, path, query="@acme").status_code == 200
    assert sandbox.faults.injected_by_kind == dict.fromkeys(
        ("status", "rate_limit", "malformed", "bad_item", "drop", "stall"), 1
    )


def test_tweepy_sees_a_fault_on_recent_search(client: tweepy.Client, sandbox: XSandbox) -> None:
    sandbox.add_user("acme")
    sandbox.inject("status", endpoint="search_recent", status=503)
    with pytest.raises(tweepy.TwitterServerError):
        client.search_recent_tweets("@acme")
    assert client.search_recent_tweets("@acme") == {"meta": {"result_count": 0}}


# -- the OpenAPI specs ----------------------------------------------------------------------------
@pytest.mark.parametrize(("includes_key", "version"), [("tweets", "2.159"), ("posts", "2.167")])
def test_answers_match_the_openapi_spec(clock: Clock, includes_key: str, version: str) -> None:
    with XSandbox(clock=clock, includes_key=includes_key, full_archive_per_second=None) as sb:
        w = World(sb, clock)
        old = (clock.now - timedelta(days=60)).isoformat()
        query = "(@acme OR to:acme) -from:acme"
        cases: list[tuple[str, dict[str, Any], int]] = [
            (RECENT, {"query": query, **FULL_POST}, 200),
            (RECENT, {"query": query, "max_results": 10, "since_id": w.p["p1"]}, 200),
            (RECENT, {"query": "@nobody", **FULL_POST}, 200),
            (ALL, {"query": "@acme OR @alice", "max_results": 500, **FULL_POST}, 200),
            (COUNTS_RECENT, {"query": query, "granularity": "minute"}, 200),
            (COUNTS_ALL, {"query": query, "start_time": old, "granularity": "day"}, 200),
            (RECENT, {"query": "is:reply"}, 400),
            (RECENT, {"query": query, "start_time": old}, 400),
            (ALL, {"query": query, "max_results": 501}, 400),
            (COUNTS_ALL, {"query": query, "granularity": "week"}, 400),
        ]
        for path, params, status in cases:
            resp = get(sb, path, **params)
            assert resp.status_code == status, (path, params, resp.text)
            assert spec(version).errors(path, status, resp.json()) == [], (path, params)


# -- scale ----------------------------------------------------------------------------------------
def test_a_page_does_not_scan_every_post(clock: Clock) -> None:
    with XSandbox(clock=clock, full_archive_per_second=None) as sb:
        sb.add_user("quiet")
        sb.add_user("busy")
        fan = sb.add_user("fan")["id"]
        start = clock.now - timedelta(days=20)
        for i in range(20_000):  # the quiet brand's few mentions are the oldest posts
            text = "@quiet hi" if i < 30 else "@busy hi"
            sb.add_post(fan, text, created_at=start + timedelta(seconds=30 * i))
        clock.advance(minutes=1)
        since = (start - timedelta(days=1)).isoformat()
        began = time.perf_counter()
        for _ in range(20):
            quiet = get(sb, ALL, query="@quiet", max_results=500, start_time=since).json()
        per_request = (time.perf_counter() - began) / 20
        assert quiet["meta"]["result_count"] == 30 and per_request < 0.05, per_request
        began = time.perf_counter()
        token, pages = None, 0
        while True:
            extra: dict[str, str] = {"next_token": token} if token else {}
            body = get(sb, ALL, query="@busy", max_results=500, start_time=since, **extra).json()
            pages += 1
            if (token := body["meta"].get("next_token")) is None:
                break
        per_page = (time.perf_counter() - began) / pages
        assert pages == 40 and per_page < 0.25, per_page
