"""Identity resolution: which CRM person is this social author?

The chain, in order: an existing link in state (such identities never reach this module: the
outbox query only offers unlinked ones), then the CRM field holding the network's immutable
user id, then the CRM field holding the handle. The CRM connector runs the look-ups batched
and reports which field matched; an ambiguous match is no match. Nobody is ever invented: an
author the CRM does not know stays held and is asked about again later.
"""

from __future__ import annotations

from collections.abc import Sequence

from syncd.connector import Crm
from syncd.model import Match
from syncd.state.outbox import Unresolved


def resolve_batch(crm: Crm, todo: Sequence[Unresolved]) -> dict[int, Match]:
    """Identity row id → match, for those the CRM could place. One batched look-up."""
    keys = [u.key for u in todo]
    found = crm.lookup(keys)
    return {u.identity_id: found[u.key] for u in todo if u.key in found}
