"""How one stored interaction reads in a CRM person's history (subject, description)."""

from __future__ import annotations

from syncd.contracts.text import label
from syncd.model import Direction, HistoryRecord, Persona
from syncd.state.outbox import ReadyDelivery


def subject(
    network: str,
    direction: Direction,
    brand: str,
    handle: str | None,
    *,
    name: str | None = None,
    brand_name: str | None = None,
) -> str:
    """``X mention from @handle`` / ``X reply from @brand to @handle``. Where a network gives
    a person no handle but a name (Facebook), the name; a brand account with a name (a
    Facebook Page, configured by its id), its name rather than ``@<id>``."""
    who = f"@{handle}" if handle else (name or "an unknown user")
    network_name = label(network)
    if direction is Direction.OUTBOUND:
        return f"{network_name} reply from {brand_name or '@' + brand} to {who}"
    return f"{network_name} mention from {who}"


def build_record(d: ReadyDelivery) -> HistoryRecord:
    return HistoryRecord(
        external_id=f"{d.network}:{d.post_id}",
        who=d.who,
        network=d.network,
        direction=d.direction,
        subject=subject(
            d.network, d.direction, d.account, d.handle, name=d.name, brand_name=d.brand_name
        ),
        description=d.text,
        occurred_at=d.created_at,
        handle=d.handle,
        url=d.url,
        conversation_id=d.conversation_id,
        target=d.target,
        in_reply_to=d.in_reply_to,
        reply_to_id=d.reply_to_id,
        case_id=d.case_id,
        private=d.private,
        brand=d.brand_name or d.account,
        author=(
            Persona(d.user_id, d.handle, d.name, url=d.profile_url, persona_id=d.persona_id)
            if d.user_id is not None
            else None
        ),
    )
