"""Keys on file in the CRM, and a pipeline staged on the Salesforce stand-in, for the CRM-key
tests."""

from __future__ import annotations

from datetime import timedelta

from connectors.salesforce.crm import SalesforceCrm
from support.pipeline import BRAND, Clock, scripted, seed_cursor, two_page_walk
from syncd.model import CrmRef, IdentityKey, KeyOnFile, KeysOnFile, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.resolver.stage import ResolveSettings
from syncd.state.db import Database
from syncd.state.tables import links

T = "2026-11-22T10:00:00.000+0000"


def person(obj: str, rid: str, *keys: KeyOnFile, rank: int = 0, stamp: str = T) -> KeysOnFile:
    return KeysOnFile(CrmRef(obj, rid, rid), tuple(keys), rank, stamp)


def x(user_id: str | None = None, handle: str | None = None) -> KeyOnFile:
    return KeyOnFile("x", user_id, handle)


def k(user_id: str, handle: str | None = None) -> IdentityKey:
    return IdentityKey("x", user_id, handle)


# -- the resolve stage -----------------------------------------------------------------------
def stage_on(db: Database, client: SalesforceCrm) -> tuple[Pipeline, Clock]:
    """Alice (X user 7) and Bob (8) mention the brand; the copy is used once loaded."""
    seed_cursor(db, "100")
    clock = Clock()
    resolve = ResolveSettings(backoff=timedelta(hours=1), crm_check=timedelta(minutes=5))
    p = Pipeline(db, "sf", client, PipelineSettings(retries=0, resolve=resolve), clock=clock)
    p.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    return p, clock


def linked_to(db: Database) -> dict[int, str]:
    with db.connect() as conn:
        return {r.identity_id: r.crm_id for r in conn.execute(links.select())}
