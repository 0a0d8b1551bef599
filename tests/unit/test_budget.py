"""The read budget's arithmetic, the X usage answer and refusal, the counts a page carries, and
the budget's configuration keys. Pure: no server, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from connectors.x.parse import parse_page
from connectors.x.usage import USAGE_CAP_RECHECK, cap_resume, parse_usage
from syncd.budget.ledger import budgets
from syncd.cli import cli
from syncd.config import settings as config
from syncd.errors import TransientError
from syncd.model import (
    Account,
    Budget,
    Cursor,
    Ledger,
    Prices,
    ProjectUsage,
    ReadCounts,
    Reads,
    Stream,
    period,
    standing,
)

T = datetime(2027, 3, 9, 12, 0, tzinfo=UTC)
# X's pay-per-use prices, as an X source's settings declare them by default.
PRICES = Prices(post=0.005, user=0.010, owned_post=0.001)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


# -- the billing period -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "reset_day", "start", "end"),
    [
        (utc(2027, 3, 9, 12), 10, utc(2027, 2, 10), utc(2027, 3, 10)),
        (utc(2027, 3, 10), 10, utc(2027, 3, 10), utc(2027, 4, 10)),  # the reset belongs to it
        (utc(2027, 3, 9, 23, 59, 59), None, utc(2027, 3, 1), utc(2027, 4, 1)),  # calendar month
        (utc(2027, 2, 28, 1), 31, utc(2027, 2, 28), utc(2027, 3, 31)),  # a short month's last day
        (utc(2027, 2, 27), 31, utc(2027, 1, 31), utc(2027, 2, 28)),
        (utc(2027, 12, 20), 15, utc(2027, 12, 15), utc(2028, 1, 15)),  # over the year's end
        (utc(2027, 1, 3), 15, utc(2026, 12, 15), utc(2027, 1, 15)),
    ],
)
def test_the_period_runs_from_one_reset_day_to_the_next(
    now: datetime, reset_day: int | None, start: datetime, end: datetime
) -> None:
    assert period(now, reset_day) == (start, end)


# -- where a source stands ----------------------------------------------------------------------
def test_cost_prices_each_resource_and_owned_posts_at_their_own_price() -> None:
    month = ReadCounts(posts=1000, users=200, owned_posts=3000)
    st = standing("x", Budget(PRICES, dollars=100.0), Ledger(), ReadCounts(), month, T)
    assert st.cost == pytest.approx(1000 * 0.005 + 200 * 0.010 + 3000 * 0.001)
    assert st.posts_used == 4000  # owned posts are posts read too
    assert st.percent == pytest.approx(st.cost)  # of $100
    custom = Budget(dollars=100.0, prices=Prices(post=0.01, user=0.0, owned_post=0.0))
    assert standing("x", custom, Ledger(), ReadCounts(), month, T).cost == pytest.approx(10.0)


def test_usage_is_the_larger_of_the_local_count_and_the_networks() -> None:
    month = ReadCounts(posts=1000, users=10)
    ahead = Ledger(read_at=T - timedelta(hours=1), project_posts=1500, project_cap=2000)
    st = standing("x", Budget(PRICES, posts=10_000), ahead, ReadCounts(), month, T)
    assert st.posts_used == 1500
    # Posts only the network counted cost the post price too.
    assert st.cost == pytest.approx(1500 * 0.005 + 10 * 0.010)
    assert st.percent == pytest.approx(15.0)
    assert st.cap_percent == pytest.approx(75.0)
    behind = Ledger(read_at=T - timedelta(hours=1), project_posts=400, project_cap=2000)
    assert (
        standing("x", Budget(PRICES, posts=10_000), behind, ReadCounts(), month, T).posts_used
        == 1000
    )


def test_network_figures_of_an_earlier_period_do_not_count() -> None:
    old = Ledger(read_at=utc(2027, 2, 28), project_posts=9000, project_cap=10_000)
    st = standing("x", Budget(PRICES, posts=10_000), old, ReadCounts(), ReadCounts(posts=5), T)
    assert st.posts_used == 5 and st.network_posts is None and st.cap_percent is None
    assert not st.backfills_paused


@pytest.mark.parametrize(
    ("posts", "band", "paused"),
    [(79, 0, False), (80, 80, False), (89, 80, False), (90, 90, True), (100, 100, True)],
)
def test_thresholds(posts: int, band: int, paused: bool) -> None:
    st = standing(
        "x", Budget(PRICES, posts=100), Ledger(), ReadCounts(), ReadCounts(posts=posts), T
    )
    assert (st.band, st.backfills_paused) == (band, paused)


def test_the_higher_of_posts_dollars_and_the_network_cap_decides() -> None:
    month = ReadCounts(posts=100, users=900)  # $0.50 of posts, $9 of users
    st = standing("x", Budget(PRICES, posts=1000, dollars=10.0), Ledger(), ReadCounts(), month, T)
    assert st.percent == pytest.approx(95.0) and st.backfills_paused
    capped_soon = Ledger(read_at=T, project_posts=95, project_cap=100)
    no_budget = standing("x", Budget(PRICES), capped_soon, ReadCounts(), ReadCounts(), T)
    assert no_budget.percent is None and no_budget.band == 90 and no_budget.backfills_paused


def test_a_cap_counts_until_it_ends() -> None:
    cap = Ledger(capped_until=T + timedelta(hours=12), capped_reason="429")
    assert (
        standing("x", Budget(PRICES), cap, ReadCounts(), ReadCounts(), T).capped_until is not None
    )
    over = standing("x", Budget(PRICES), cap, ReadCounts(), ReadCounts(), T + timedelta(hours=12))
    assert over.capped_until is None and over.capped_reason is None


# -- what a page carries ---------------------------------------------------------------------
def test_a_page_counts_every_post_and_user_x_bills() -> None:
    brand = Account("x", "acme", "1")
    body = {
        "data": [
            {
                "id": "10",
                "text": "@acme hi",
                "author_id": "2",
                "created_at": "2027-03-09T10:00:00Z",
            },
            {
                "id": "11",
                "text": "@acme yo",
                "author_id": "1",
                "created_at": "2027-03-09T10:01:00Z",
            },
            {"text": "no id at all"},
        ],
        "includes": {
            "users": [
                {"id": "2", "username": "fan", "name": "Fan"},
                {"id": "1", "username": "acme"},
            ],
            # The replied-to post, and one also in data (billed once that day).
            "tweets": [{"id": "9", "text": "news", "author_id": "1"}, {"id": "10", "text": "x"}],
        },
        "meta": {"result_count": 3},
    }
    page = parse_page(body, account=brand, stream=Stream.MENTIONS, cursor=Cursor())
    # The brand's own mention is no history and the id-less post is quarantined: both billed.
    assert len(page.interactions) == 1
    assert page.reads == Reads(posts=3, expanded=1, users=2, owned=False)
    owned = parse_page(body, account=brand, stream=Stream.MENTIONS, cursor=Cursor(), owned=True)
    assert owned.reads == Reads(posts=3, expanded=1, users=2, owned=True)
    empty = parse_page({"meta": {"result_count": 0}}, account=brand, stream=Stream.MENTIONS,
                       cursor=Cursor())  # fmt: skip
    assert empty.reads == Reads()


# -- X's usage answer and refusal ------------------------------------------------------------
def test_the_documented_usage_answer_is_read() -> None:
    documented = {
        "data": {
            "cap_reset_day": 10,
            "project_cap": "5000000000",
            "project_id": "1369785403853424",
            "project_usage": "43435",
        }
    }
    assert parse_usage(documented) == ProjectUsage(43435, 5_000_000_000, 10)


def test_spec_2_159_integers_and_the_latest_day_are_read() -> None:
    body = {
        "data": {
            "cap_reset_day": 3,
            "project_cap": 2000000,
            "project_usage": 1200,
            "daily_project_usage": {
                "project_id": 7,
                "usage": [
                    {"date": "2027-03-09T00:00:00.000Z", "usage": "200"},
                    {"date": "2027-03-08T00:00:00.000Z", "usage": 1000},
                    {"date": "someday", "usage": 5},
                ],
            },
        }
    }
    assert parse_usage(body) == ProjectUsage(1200, 2_000_000, 3, date(2027, 3, 9), 200)


@pytest.mark.parametrize(
    "data",
    [
        {"cap_reset_day": 0, "project_cap": "-1", "project_usage": "lots"},
        {"cap_reset_day": 32, "project_cap": True, "project_usage": None},
        {"daily_project_usage": {"usage": "nope"}},
    ],
)
def test_figures_x_garbles_are_unknown_not_wrong(data: dict[str, Any]) -> None:
    assert parse_usage({"data": data}) == ProjectUsage()


@pytest.mark.parametrize("body", [[], {"errors": [{"title": "x"}]}, {"data": []}, "text"])
def test_an_unreadable_usage_answer_is_transient(body: object) -> None:
    with pytest.raises(TransientError, match="usage"):
        parse_usage(body)


def _refusal(body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = 429
    response._content = body
    return response


def test_a_daily_cap_resets_at_midnight_a_monthly_one_is_rechecked() -> None:
    daily = _refusal(b'{"title":"UsageCapExceeded","period":"Daily","scope":"Account"}')
    assert cap_resume(daily, T) == (utc(2027, 3, 10), "Daily")
    monthly = _refusal(b'{"title":"UsageCapExceeded","period":"Monthly","scope":"Product"}')
    assert cap_resume(monthly, T) == (T + USAGE_CAP_RECHECK, "Monthly")
    assert cap_resume(_refusal(b"<html>usage-capped</html>"), T) == (T + USAGE_CAP_RECHECK, None)


# -- configuration -----------------------------------------------------------------------------
CONFIG = """
[state]
url = "sqlite:///{tmp}/state.db"

[[sources]]
name = "acme-x"
type = "x"
bearer_token = "env:BUDGET_X_BEARER"
accounts = ["acme"]
{budget}

[crm]
type = "salesforce"
username = "u@example.com"
password = "env:BUDGET_SF_PASSWORD"
security_token = "env:BUDGET_SF_PASSWORD"
"""


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BUDGET_X_BEARER", "b")
    monkeypatch.setenv("BUDGET_SF_PASSWORD", "p")

    def _write(budget: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(CONFIG.format(tmp=tmp_path, budget=budget))
        return path

    return _write


def test_budget_keys_and_their_defaults(write: Any) -> None:
    loaded = config.load(write("budget_posts = 2000000\nbudget_dollars = 500"))
    assert budgets(loaded.sources) == {
        "acme-x": Budget(posts=2_000_000, dollars=500.0, prices=Prices(0.005, 0.010, 0.001))
    }
    plain = config.load(write("price_per_user = 0.02\nprice_per_owned_post = 0"))
    assert budgets(plain.sources)["acme-x"] == Budget(prices=Prices(0.005, 0.02, 0.0))


@pytest.mark.parametrize(
    ("budget", "key", "message"),
    [
        ("budget_posts = 0", "budget_posts", "must be greater than 0"),
        ("budget_posts = -5", "budget_posts", "must be greater than 0"),
        ("budget_posts = 2e6", "budget_posts", "must be an integer"),
        ('budget_posts = "2000000"', "budget_posts", "numbers are written without quotes"),
        ("budget_dollars = 0", "budget_dollars", "must be greater than 0"),
        ("price_per_user = -0.01", "price_per_user", "must be at least 0"),
        ('price_per_owned_post = "cheap"', "price_per_owned_post", "must be a number"),
        ("budget_post = 10", "budget_post", "did you mean 'budget_posts'?"),
    ],
)
def test_budget_mistakes_name_the_key_and_exit_2(
    write: Any, budget: str, key: str, message: str
) -> None:
    result = CliRunner().invoke(cli, ["--config", str(write(budget)), "status"])
    assert result.exit_code == 2, result.output
    assert f"sources[0].{key}: " in result.output and message in result.output
