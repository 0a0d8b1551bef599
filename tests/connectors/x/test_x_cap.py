"""The X stand-in's project cap against the specs: ``GET /2/usage/tweets`` from its usage meter,
``usage-capped`` once the cap is reached (429, or the 403 X also sends) until the reset day,
and the X source reading the figures and classifying the refusal through tweepy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from openapi_schema_validator import OAS30Validator
from support.x_sandbox import TOKEN, Clock, get, spec

from connectors.x.source import XSource
from sandbox.x.api import XSandbox
from sandbox.x.cap import cap_period
from syncd.errors import UsageCapped
from syncd.model import Account, Cursor, ProjectUsage, Stream

START = datetime(2027, 3, 9, 12, 0, tzinfo=UTC)
ALL_FIELDS = (
    "cap_reset_day,daily_client_app_usage,daily_project_usage,project_cap,project_id,project_usage"
)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[XSandbox]:
    with XSandbox(clock=clock, project_cap=4, cap_reset_day=10) as sb:
        yield sb


def mentions(sb: XSandbox, brand: str) -> int:
    return get(sb, f"/2/users/{brand}/mentions", expansions="author_id").status_code


def seeded(sb: XSandbox, posts: int) -> str:
    brand = str(sb.add_user("acme")["id"])
    fan = str(sb.add_user("fan")["id"])
    for n in range(posts):
        sb.add_post(fan, f"@acme {n}")
    return brand


def test_usage_answers_from_the_meter_as_spec_2_167_says(sandbox: XSandbox, clock: Clock) -> None:
    brand = seeded(sandbox, 3)
    assert mentions(sandbox, brand) == 200  # 3 posts billed today
    clock.advance(days=1)
    assert mentions(sandbox, brand) == 200  # billed again: a new UTC day
    answer = get(sandbox, "/2/usage/tweets", **{"usage.fields": ALL_FIELDS, "days": "3"})
    assert answer.status_code == 200
    body = answer.json()
    assert spec("2.167").errors("/2/usage/tweets", 200, body) == []
    data = body["data"]
    # March 9 belongs to the period before the reset on the 10th: only today's 3 count.
    assert (data["cap_reset_day"], data["project_cap"], data["project_usage"]) == (10, "4", "3")
    daily = data["daily_project_usage"]["usage"]
    assert [(d["date"][:10], d["usage"]) for d in daily] == [
        ("2027-03-08", "0"),
        ("2027-03-09", "3"),
        ("2027-03-10", "3"),
    ]
    assert data["daily_client_app_usage"][0]["usage_result_count"] == 3
    default = get(sandbox, "/2/usage/tweets").json()["data"]
    assert set(default) == {"cap_reset_day", "project_cap", "project_id", "project_usage"}
    assert sandbox.usage.posts_returned == 6  # asking for figures bills nothing


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"days": "0"}, "days"), ({"days": "91"}, "days"), ({"usage.fields": "cost"}, "usage.fields")],
)
def test_bad_usage_parameters_are_x_invalid_requests(
    sandbox: XSandbox, params: dict[str, str], parameter: str
) -> None:
    answer = get(sandbox, "/2/usage/tweets", **params)
    assert answer.status_code == 400
    assert parameter in answer.json()["errors"][0]["parameters"]


@pytest.mark.parametrize("status", [429, 403])
def test_billed_endpoints_are_capped_until_the_reset_day(
    sandbox: XSandbox, clock: Clock, status: int
) -> None:
    sandbox.cap_status = status
    brand = seeded(sandbox, 5)
    assert mentions(sandbox, brand) == 200  # 5 posts: past the cap of 4 in one go
    refused = get(sandbox, f"/2/users/{brand}/mentions")
    assert refused.status_code == status
    body = refused.json()
    assert body["type"] == "https://api.twitter.com/2/problems/usage-capped"
    assert (body["title"], body["period"], body["scope"]) == (
        "UsageCapExceeded",
        "Monthly",
        "Product",
    )
    validator = OAS30Validator(
        {"$ref": "spec#/components/schemas/UsageCapExceededProblem"},
        registry=spec("2.159").registry,
    )
    assert [e.message for e in validator.iter_errors(body)] == []
    assert get(sandbox, "/2/users/by/username/fan").status_code == status  # users are billed too
    assert refused.headers["x-rate-limit-remaining"]  # the request counted, as on X
    # What bills nothing still answers: the figures and the counts.
    assert get(sandbox, "/2/usage/tweets").json()["data"]["project_usage"] == "5"
    assert get(sandbox, "/2/tweets/counts/recent", query="@acme").status_code == 200
    clock.now = datetime(2027, 3, 10, tzinfo=UTC)  # the reset day
    assert mentions(sandbox, brand) == 200


def test_the_cap_period_follows_the_reset_day() -> None:
    assert cap_period(START, 10) == (
        datetime(2027, 2, 10, tzinfo=UTC),
        datetime(2027, 3, 10, tzinfo=UTC),
    )
    assert cap_period(datetime(2027, 2, 28, 5, tzinfo=UTC), 31)[0] == datetime(
        2027, 2, 28, tzinfo=UTC
    )


def test_the_x_source_reads_the_figures_and_classifies_the_cap(sandbox: XSandbox) -> None:
    brand = seeded(sandbox, 5)
    source = XSource(TOKEN, api_base_url=sandbox.url, page_size=5)
    try:
        first = source.project_usage()
        assert first == ProjectUsage(posts=0, cap=4, reset_day=10, day=START.date(), day_posts=0)
        account = Account("x", "acme", brand)
        page = source.fetch(account, Stream.MENTIONS, Cursor())
        # The local count is what the meter saw cross the wire: posts, the fan and @acme.
        assert (page.reads.posts, page.reads.users) == (5, 2)
        assert (sandbox.usage.posts_returned, sandbox.usage.users_returned) == (5, 2)
        assert source.project_usage().posts == source.project_usage().day_posts == 5
        before = datetime.now(UTC)  # the connector's clock is the real one
        with pytest.raises(UsageCapped) as capped:
            source.fetch(account, Stream.MENTIONS, Cursor())
        # A monthly cap's reset is not in the refusal: the guard learns it from the figures.
        assert capped.value.period == "Monthly" and capped.value.status == 429
        hour = timedelta(hours=1)
        assert before + hour <= capped.value.resume_at <= datetime.now(UTC) + hour
    finally:
        source.close()
