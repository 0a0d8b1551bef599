"""sandbox.seed.file_everyone: the chaos benchmark's world, where every author is a customer
the CRM knows by each of their networks' ids, so each interaction has one right answer."""

from __future__ import annotations

from sandbox.bluesky.api import BlueskySandbox
from sandbox.config import META_IDENTITY_FIELDS
from sandbox.mastodon.api import MastodonSandbox
from sandbox.meta.api import MetaSandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import file_everyone, seed
from sandbox.x.api import XSandbox


def test_every_customer_on_meta_is_on_file_by_their_meta_ids_found_by_evidence_too() -> None:
    bluesky = BlueskySandbox()  # its __enter__ is typed as the base server's
    with (
        XSandbox() as x,
        SalesforceSandbox() as sf,
        MastodonSandbox() as mastodon,
        bluesky,
        MetaSandbox() as meta,
    ):
        # Mastodon and Bluesky: their customers are the ones found by evidence.
        world = seed(x, sf, 200, 1, mastodon=mastodon, bluesky=bluesky, meta=meta)
        not_in_crm = {id(c) for c in world.customers if c.crm_id is None}
        file_everyone(world, sf)
        records = {r["Id"]: r for obj in ("Contact", "Lead") for r in sf.records(obj)}
    fb, ig = META_IDENTITY_FIELDS["facebook"], META_IDENTITY_FIELDS["instagram"]
    on_meta = [c for c in world.customers if c.facebook_id or c.instagram_id]
    # The case that was missed: filed here, found by evidence, on Meta.
    assert any(id(c) in not_in_crm and c.by_evidence for c in on_meta)
    for c in on_meta:
        assert c.crm_id is not None
        record = records[c.crm_id]
        if c.facebook_id:
            assert record.get(fb["user_id"]) == c.facebook_id, c
        if c.instagram_id and c.instagram is not None:
            assert record.get(ig["user_id"]) == c.instagram_id, c
            assert record.get(ig["handle"]) == c.instagram.username, c
