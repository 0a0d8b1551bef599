"""How one stored interaction reads in a CRM person's history (subject, description)."""

from __future__ import annotations

from syncd.model import Direction, HistoryRecord
from syncd.state.outbox import ReadyDelivery

NETWORK_LABELS = {"x": "X", "mastodon": "Mastodon", "bluesky": "Bluesky"}


def network_label(network: str) -> str:
    return NETWORK_LABELS.get(network, network.title())


def subject(network: str, direction: Direction, brand: str, handle: str | None) -> str:
    """``X mention from @handle`` / ``X reply from @brand to @handle``."""
    who = f"@{handle}" if handle else "an unknown user"
    label = network_label(network)
    if direction is Direction.OUTBOUND:
        return f"{label} reply from @{brand} to {who}"
    return f"{label} mention from {who}"


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
