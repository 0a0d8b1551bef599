"""The read budget as ``syncd status`` prints it: one block per source billed per resource."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from syncd.model import PAUSE_AT, ReadCounts, Standing


def print_budgets(console: Console, standings: Sequence[Standing]) -> None:
    for st in standings:
        console.print(
            f"reads {st.source}: today {_reads(st.today)} (${st.today_cost:,.2f}); this period "
            f"(since {st.period_start}, resets {st.resets_at:%Y-%m-%d %H:%M} UTC) "
            f"{_reads(st.month)}",
            highlight=False,
        )
        console.print(f"  {_used(st)}", highlight=False)
        if st.capped_until is not None:
            console.print(
                f"  [red]CAPPED[/] by the network until {st.capped_until:%Y-%m-%d %H:%M} UTC: "
                f"nothing of {st.source} is read until then ({escape(st.capped_reason or '')})",
                highlight=False,
            )
        elif st.backfills_paused:
            console.print(
                f"  [yellow]BACKFILLS PAUSED[/] ({PAUSE_AT}% used) until the period resets; "
                "live polling goes on",
                highlight=False,
            )


def _reads(counts: ReadCounts) -> str:
    return f"{counts.posts:,} posts, {counts.users:,} users, {counts.owned_posts:,} owned posts"


def _used(st: Standing) -> str:
    line = f"used {st.posts_used:,} posts, ${st.cost:,.2f}"
    limits = [f"{st.budget_posts:,} posts"] if st.budget_posts else []
    limits += [f"${st.budget_dollars:,.2f}"] if st.budget_dollars else []
    if limits and st.percent is not None:
        line += f" of a budget of {' / '.join(limits)} ({st.percent:.0f}%)"
    else:
        line += " (no budget set)"
    if st.network_posts is not None and st.network_cap:
        line += (
            f"; the network counts {st.network_posts:,} of its {st.network_cap:,} cap "
            f"({st.cap_percent or 0:.0f}%)"
        )
    return line
