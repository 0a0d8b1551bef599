"""How one stored interaction reads in a CRM person's history (subject, description)."""

from __future__ import annotations

from syncd.contracts.text import label
from syncd.model import Direction, HistoryRecord
from syncd.state.outbox import ReadyDelivery


def subject(network: str, direction: Direction, brand: str, handle: str | None) -> str:
    """``X mention from @handle`` / ``X reply from @brand to @handle``."""
    who = f"@{handle}" if handle else "an unknown user"
    name = label(network)
    if direction is Direction.OUTBOUND:
        return f"{name} reply from @{brand} to {who}"
    return f"{name} mention from {who}"


def build_record(d: ReadyDelivery) -> HistoryRecord:
    return HistoryRecord(
        external_id=f"{d.network}:{d.post_id}",
        who=d.who,
        network=d.network,
        direction=d.direction,
        subject=subject(d.network, d.direction, d.account, d.handle),
        description=d.text,
        occurred_at=d.created_at,
        handle=d.handle,
        url=d.url,
        conversation_id=d.conversation_id,
    )
