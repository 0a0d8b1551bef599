"""The state schema. Alembic migrations in ``migrations/`` create exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)

from syncd.contracts.redaction import redact_stored
from syncd.model import DEFAULT_TARGET


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RedactedText(TypeDecorator[str]):
    """Text from outside (an API's error, a refusal's reason) stored with the configured
    secrets and credential-shaped text taken out, as from log lines
    (:func:`syncd.contracts.redaction.redact_stored`): ``syncd status`` shows what is stored."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else redact_stored(value)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# An id column that is BIGINT on PostgreSQL but INTEGER (rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Column sizes follow what can arrive (PostgreSQL enforces them; SQLite does not). Names from
# the config (sources, the CRM, brand accounts) are refused there past NAME_MAX; a CRM text
# field holds up to 255 characters (KEY_MAX), so a user id or handle on a CRM record fits,
# and a longer one (a long text field mapped by mistake) is left out of the copy with a
# warning (syncd.state.crm_keys). X's values are bounded by its connector.
NAME_MAX = 100
KEY_MAX = 255
# A customer's priority value: a picklist value (255 at most) or short text; a longer value
# is no value any mapping names, and is stored as none.
PRIORITY_MAX = 255
# A network's ids: X's are 19 digits, but a Mastodon status or actor URI and a Bluesky
# at-uri run to 70-200 characters; the CRM's external id (network:id) caps them at 255 anyway.
ID_MAX = 255
# SQLite enforces no length and cannot rebuild a table others reference: there the columns
# keep the 64 they were created with (migration 0016 widens them on PostgreSQL only).
NetworkId = String(ID_MAX).with_variant(String(64), "sqlite")

# Brand accounts: the handle from config, the immutable id resolved once.
accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("network", String(32), nullable=False),
    Column("handle", String(100), nullable=False),
    Column("user_id", NetworkId, nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=False),
    # Account.display_name: the brand's name in CRM history where its handle is no name.
    Column("display_name", String(200)),
    UniqueConstraint("source", "handle", name="uq_accounts_source_handle"),
)

# People on a network, keyed on the immutable user id. The handle is only the latest seen.
identities = Table(
    "identities",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("network", String(32), nullable=False),
    Column("user_id", NetworkId, nullable=False),
    Column("handle", String(100)),
    Column("display_name", String(200)),
    Column("description", Text),
    Column("location", String(200)),
    Column("url", String(500)),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # When the profile was last read from the network (None: never, only the id is known).
    # A fresh one is not read again: networks bill user objects.
    Column("profile_read_at", UtcDateTime()),
    # Resolution schedule for identities without a link: when to ask the CRM again.
    Column("resolve_after", UtcDateTime()),
    Column("resolve_attempts", Integer, nullable=False, server_default="0"),
    UniqueConstraint("network", "user_id", name="uq_identities_network_user_id"),
)

# identity → CRM person. One current link per identity and CRM, with why it was made; every
# change is also written to link_events, so a link can always be explained.
links = Table(
    "links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("identity_id", Id, ForeignKey("identities.id"), nullable=False),
    Column("crm", String(100), nullable=False),
    Column("crm_object", String(64), nullable=False),
    Column("crm_id", String(64), nullable=False),
    Column("crm_name", String(300)),
    # The customer's priority value (CrmRef.priority), kept current by the change watch.
    Column("crm_priority", String(PRIORITY_MAX)),
    # The CRM's record for the identity's account (a Salesforce SocialPersona) and the person
    # it was written under: current while that is still crm_id, written again once not (a
    # relink, a merge followed).
    Column("persona_id", String(64)),
    Column("persona_parent_id", String(64)),
    Column("matcher", String(64), nullable=False),
    Column("score", Float),
    Column("reasons", JSON),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("identity_id", "crm", name="uq_links_identity_id_crm"),
    Index("ix_links_crm_id", "crm", "crm_id"),
)

# The history of links: made, removed, followed to a merge survivor, a candidate rejected.
link_events = Table(
    "link_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("identity_id", Id, ForeignKey("identities.id"), nullable=False),
    Column("crm", String(100), nullable=False),
    Column("action", String(16), nullable=False),  # link, unlink, merge, reject
    Column("crm_object", String(64)),
    Column("crm_id", String(64)),
    Column("crm_name", String(300)),
    Column("matcher", String(64)),
    Column("score", Float),
    Column("reasons", JSON),
    Column("actor", String(100), nullable=False),  # "resolver", "admin", "writer" …
    Column("note", Text),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_link_events_identity_id", "identity_id"),
)

# The review queue: people the resolver found but was not sure enough of. An admin accepts
# one (it becomes the link) or rejects it (never offered again for that author).
candidates = Table(
    "candidates",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("identity_id", Id, ForeignKey("identities.id"), nullable=False),
    Column("crm", String(100), nullable=False),
    Column("crm_object", String(64), nullable=False),
    Column("crm_id", String(64), nullable=False),
    Column("crm_name", String(300)),
    Column("crm_priority", String(PRIORITY_MAX)),  # as links.crm_priority
    Column("matcher", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # open, accepted, rejected, stale
    Column("created_at", UtcDateTime(), nullable=False),
    Column("decided_at", UtcDateTime()),
    Column("decided_by", String(100)),
    UniqueConstraint("identity_id", "crm", "crm_id", name="uq_candidates_identity_id_crm"),
    Index("ix_candidates_crm_state", "crm", "state"),
    Index("ix_candidates_crm_id", "crm", "crm_id"),
)

# Every handle an identity has had: a renamed author is still the same person.
identity_handles = Table(
    "identity_handles",
    metadata,
    Column("identity_id", Id, ForeignKey("identities.id"), primary_key=True),
    Column("handle", String(100), primary_key=True),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
)

interactions = Table(
    "interactions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("network", String(32), nullable=False),
    Column("post_id", NetworkId, nullable=False),
    Column("source", String(100), nullable=False),
    Column("account", String(100), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("direction", String(16), nullable=False),
    # Both NULL where the network withheld who wrote it (syncd.model.Interaction): such a
    # row has no identity and no delivery until a later read names its author and fills
    # them in. author_id is the brand's id on its replies.
    Column("author_id", NetworkId),
    Column("counterpart_identity_id", Id, ForeignKey("identities.id")),
    Column("text", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("url", String(500), nullable=False),
    Column("conversation_id", NetworkId),
    Column("in_reply_to_post_id", NetworkId),
    Column("in_reply_to_user_id", NetworkId),  # Interaction.in_reply_to_user_id
    Column("private", Boolean, nullable=False, server_default=false()),  # a private message
    Column("raw", JSON, nullable=False),
    # Interaction.ref: how the network reads the post again where post_id cannot serve. Not a
    # payload: kept when the raw payload is emptied, so a post can still be checked then.
    Column("ref", String(ID_MAX)),
    Column("fetched_at", UtcDateTime(), nullable=False),
    # The backfill job that stored it first (None: the live poller), for its progress.
    Column("backfill_id", Id),
    UniqueConstraint("network", "post_id", name="uq_interactions_network_post_id"),
    Index("ix_interactions_counterpart", "counterpart_identity_id"),
    Index("ix_interactions_backfill_id", "backfill_id"),
)

# Where each stream's walk stands. Advanced only in the transaction that stores its page.
cursors = Table(
    "cursors",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("account", String(100), primary_key=True),
    Column("stream", String(32), primary_key=True),
    Column("since_id", NetworkId),
    Column("pagination_token", String(500)),
    Column("pending_since_id", NetworkId),
    # What the walk under way has seen so far (posts, oldest id), for telling at its end whether
    # it stopped at since_id or at the API's horizon; moves with the page like the token.
    Column("walk_seen", Integer, nullable=False, server_default="0"),
    Column("walk_oldest_id", NetworkId),
    Column("last_success_at", UtcDateTime()),
    Column("last_attempt_at", UtcDateTime()),
    Column("last_error", RedactedText),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Answers in a row that could not be read at all (a body that does not parse): the
    # stream is parked at a bound instead of being asked again forever. 0 after any page.
    Column("unreadable", Integer, nullable=False, server_default="0"),
    # Why the last poll left its walk before the end (the [daemon] max_pages_per_walk bound),
    # for `syncd status`; None once a walk ends.
    Column("walk_stopped", Text),
    # When the last walk began, and which instance (owner_id) began it: of several instances
    # sharing the state, one walks a stream at a time and keeps it while it polls
    # (syncd.state.walks.take_turn).
    Column("walk_started_at", UtcDateTime()),
    Column("walk_started_by", String(200)),
)

# A stream's per-object marks (syncd.model.Cursor.marks): where its source stands in each
# object it re-reads (a post's comments, a thread's messages). Loaded with the cursor, changed
# in the transaction that stores the page (and the cursor) that moved them, and gone with
# their cursor row. ``value`` is unbounded: a network's paging cursor runs to hundreds of
# characters.
stream_marks = Table(
    "stream_marks",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("account", String(100), primary_key=True),
    Column("stream", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["source", "account", "stream"],
        ["cursors.source", "cursors.account", "cursors.stream"],
        name="fk_stream_marks_cursors",
        ondelete="CASCADE",
    ),
)

# Objects a source's webhook said changed (syncd.model.WebhookHint), for its poller to read
# through the API: one row per (source, object, kind), so a delivery Meta sends again (or a
# replayed one) adds nothing. ``taken_at`` is set in the transaction that stores the page
# the object was read into; until then the hint is offered to every walk of its account.
webhook_hints = Table(
    "webhook_hints",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    # The brand account's network id (accounts.user_id) the delivery was for.
    Column("account", String(ID_MAX), nullable=False),
    Column("object_id", String(ID_MAX), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("taken_at", UtcDateTime()),
    UniqueConstraint("source", "object_id", "kind", name="uq_webhook_hints_source_object_id_kind"),
    Index("ix_webhook_hints_untaken", "source", "account", "taken_at"),
)

# The outbox: one row per interaction × CRM. "pending" rows are written once their
# counterpart has a link; "written" holds the CRM record id; "dead" needs an admin.
# Conversations worked as cases in a CRM (Crm.case_policy): one row per case syncd opened,
# under the key it was upserted on (the external id of the post that opened it). The
# author's latest one takes posts outside any reply chain within the policy's join window.
cases = Table(
    "cases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("crm", String(100), nullable=False),
    Column("case_key", String(ID_MAX), nullable=False),
    Column("identity_id", Id, ForeignKey("identities.id"), nullable=False),
    Column("crm_case_id", String(64), nullable=False),
    Column("opened_at", UtcDateTime(), nullable=False),  # the opening post's time
    Column("last_post_at", UtcDateTime(), nullable=False),  # the latest post's time
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("crm", "case_key", name="uq_cases_crm_case_key"),
    Index("ix_cases_crm_identity_id_last_post_at", "crm", "identity_id", "last_post_at"),
)

# A CRM's bulk jobs writing a backlog of deliveries (Crm BulkWriting), kept from the moment
# the CRM made the job: a writer stopped at any step finds it again.
bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("crm", String(100), nullable=False),
    Column("target", String(32), nullable=False),
    Column("job_id", String(64), nullable=False),  # the CRM's id of the job
    # made (records assigned, maybe not sent) → sent (closed: the CRM processes it) → done
    # (its results stored) or abandoned (never sent: aborted, records free again).
    Column("state", String(16), nullable=False),
    Column("records", Integer, nullable=False),
    Column("error", RedactedText),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("crm", "job_id", name="uq_bulk_jobs_crm_job_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("interaction_id", Id, ForeignKey("interactions.id"), nullable=False),
    # The interaction's counterpart (which never changes), kept here too: whether a pending
    # delivery waits for its author is then read from an index, not from the interaction
    # row, so a large held backlog stays cheap to step over.
    Column("identity_id", Id, ForeignKey("identities.id"), nullable=False),
    Column("crm", String(100), nullable=False),
    # Which of the CRM's history targets (Crm.history_targets) this delivery writes: each
    # interaction is one delivery per target, so one target's failure holds back no other.
    Column("target", String(32), nullable=False, server_default=DEFAULT_TARGET),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error_code", String(100)),
    Column("last_error", RedactedText),
    Column("crm_record_id", String(64)),
    # Written before the delivery of the post it answers (WriteResult.awaits_reply_to):
    # pending again once that one is written.
    Column("awaits_reply_to", Boolean, nullable=False, server_default=false()),
    # Its conversation's case, where the CRM works conversations as cases (Crm.case_policy):
    # decided once per interaction, for all its targets, before any is written. case_id
    # None once decided: no case.
    Column("case_decided", Boolean, nullable=False, server_default=false()),
    Column("case_id", Id, ForeignKey("cases.id")),
    # The bulk job writing it (syncd.pipeline.bulk): none of the writer's batches take it
    # meanwhile.
    Column("bulk_job_id", Id, ForeignKey("bulk_jobs.id")),
    Column("next_attempt_at", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("written_at", UtcDateTime()),
    # PostgreSQL only (SQLite is single-instance and never claims): the process writing it
    # to the CRM now, and until when; a claim past its time is anyone's again.
    Column("claimed_by", Text),
    Column("claim_until", UtcDateTime()),
    UniqueConstraint(
        "interaction_id", "crm", "target", name="uq_deliveries_interaction_id_crm_target"
    ),
    Index("ix_deliveries_crm_state_identity_id", "crm", "state", "identity_id"),
    # The few written deliveries waiting for the record of the post they answer: looked for
    # after every written batch, so found without reading the rest.
    Index(
        "ix_deliveries_awaits_reply_to",
        "id",
        sqlite_where=text("awaits_reply_to"),
        postgresql_where=text("awaits_reply_to"),
    ),
)

# API items that could not be translated, kept whole with the reason.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("network", String(32), nullable=False),
    Column("item_id", NetworkId),
    Column("reason", RedactedText, nullable=False),
    Column("raw", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # A bad item read again (a replayed page, a backfill) is looked up here before insert.
    Index("ix_quarantine_network_item_id", "network", "item_id"),
)

# Accounts (or the CRM) whose credentials were refused three times in a row: their jobs stay
# paused until `syncd resume NAME` deletes the row or a config reload clears them all. In state,
# not in memory, so `syncd status` in another process can show them.
parked = Table(
    "parked",
    metadata,
    Column("name", String(200), primary_key=True),  # "source:handle[:stream]" or "crm"
    Column("reason", RedactedText, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("parked_at", UtcDateTime(), nullable=False),
    # auth: credentials refused (an account, the CRM); unreadable: one stream's answers
    # ("source:handle:stream") kept failing to parse.
    Column("kind", String(16), nullable=False, server_default="auth"),
)

# Where the watch for changed CRM people stands: the CRM's own mark (opaque) and when it was
# last asked. A person created or changed since wakes the held authors they could be.
crm_watch = Table(
    "crm_watch",
    metadata,
    Column("crm", String(100), primary_key=True),
    Column("mark", Text),
    Column("checked_at", UtcDateTime(), nullable=False),
)

# A local copy of the CRM people carrying a network user id or handle, so the id and handle
# matchers cost no query per batch of authors. Loaded page by page (``crm_key_loads``), kept
# current by the change watch, reloaded whole once a day (deletions show up no other way).
# A person's rows are replaced together; ``handle`` is stored without '@', case-folded.
crm_keys = Table(
    "crm_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("crm", String(100), nullable=False),
    Column("record_id", String(40), nullable=False),
    Column("object", String(100), nullable=False),
    Column("name", Text),
    Column("priority", String(PRIORITY_MAX)),  # the customer's priority value (CrmRef.priority)
    Column("rank", Integer, nullable=False),  # the CRM's object order: Contacts before Leads
    Column("stamp", String(40), nullable=False),  # when the CRM record last changed
    Column("network", String(32), nullable=False),
    Column("user_id", String(KEY_MAX)),
    Column("handle", String(KEY_MAX)),
    Column("seen_at", UtcDateTime(), nullable=False),  # last read from the CRM
    Index("ix_crm_keys_user_id", "crm", "network", "user_id"),
    Index("ix_crm_keys_handle", "crm", "network", "handle"),
    Index("ix_crm_keys_record", "crm", "record_id"),
)

# Where loading ``crm_keys`` stands: the page cursor of a load under way and when it began;
# when the last whole load ended (none yet: the copy is not used, look-ups go to the CRM).
crm_key_loads = Table(
    "crm_key_loads",
    metadata,
    Column("crm", String(100), primary_key=True),
    Column("cursor", Text),
    Column("started_at", UtcDateTime()),
    Column("loaded_at", UtcDateTime()),
)

# Admin backfills: a window of past posts read through whichever endpoints reach it. Where the
# job stands (segment, page token, counts) advances in the transaction that stores each page.
backfills = Table(
    "backfills",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("network", String(32), nullable=False),
    Column("account", String(100), nullable=False),
    Column("since", UtcDateTime(), nullable=False),
    Column("until", UtcDateTime(), nullable=False),
    Column("streams", JSON, nullable=False),
    Column("plan", JSON, nullable=False),  # the segments: stream, route, query, window
    Column("estimate", JSON),
    Column("segment", Integer, nullable=False, server_default="0"),
    Column("token", String(500)),  # the next page of the current segment
    Column("status", String(16), nullable=False),  # queued running paused done cancelled failed
    Column("read", Integer, nullable=False, server_default="0"),  # posts the API returned
    Column("new", Integer, nullable=False, server_default="0"),  # of them, not stored before
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("error", RedactedText),
    Column("lease_owner", String(200)),  # the owner_id ("host:pid:nonce") of the process working it
    Column("lease_until", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Index("ix_backfills_status", "status"),
)

# The compliance job's record of each written post it re-checked on the network: when it last
# asked, when the network first said it was deleted, and when the CRM record was dealt with
# (deleted or marked, ``action``), so a post is asked once per interval and acted on once.
post_checks = Table(
    "post_checks",
    metadata,
    Column("interaction_id", Id, ForeignKey("interactions.id"), primary_key=True),
    Column("checked_at", UtcDateTime(), nullable=False),
    Column("deleted_at", UtcDateTime()),
    Column("acted_at", UtcDateTime()),
    Column("action", String(16)),  # delete, mark
    Column("error", RedactedText),  # the CRM's last refusal, until the action succeeds
    Index("ix_post_checks_deleted", "deleted_at", "acted_at"),
)

# Posts a live walk could not reach: it crossed the API's horizon before meeting since_id, so
# everything after ``since_id`` and before ``until_id`` (both exclusive) is missing. Closed by a
# backfill job bounded by those ids (``backfill_id``); ``unclosable`` when no configured access
# reaches it, logged once (``reported_at``).
gaps = Table(
    "gaps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("network", String(32), nullable=False),
    Column("account", String(100), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("since_id", NetworkId, nullable=False),
    Column("until_id", NetworkId, nullable=False),
    Column("walk_seen", Integer, nullable=False),  # posts the cut walk returned
    Column("state", String(16), nullable=False),  # open closing closed unclosable
    Column("reason", RedactedText),
    Column("backfill_id", Id),
    Column("recovered", Integer, nullable=False, server_default="0"),  # posts not stored before
    Column("reported_at", UtcDateTime()),
    Column("detected_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime()),
    UniqueConstraint(
        "source", "account", "stream", "until_id", name="uq_gaps_source_account_stream_until"
    ),
    Index("ix_gaps_state", "state"),
    Index("ix_gaps_backfill_id", "backfill_id"),
)

# Resources a source's pages returned, per UTC day, as the network bills them (X: posts,
# posts read with the account's own token, user objects): the local count of the read budget
# (syncd.budget.ledger). Incremented in the transaction that stores each page, by an upsert, so
# instances sharing PostgreSQL add up instead of overwriting each other.
api_reads = Table(
    "api_reads",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("network", String(32), nullable=False),
    Column("posts", BigInteger, nullable=False, server_default="0"),
    Column("owned_posts", BigInteger, nullable=False, server_default="0"),
    Column("users", BigInteger, nullable=False, server_default="0"),
)

# Per source, the rest of the budget's state: the network's own usage figures and when they
# were last asked for (by any instance: at most every 15 minutes), the cap the network
# answered ``usage-capped`` for and until when, and the highest threshold logged, when
# (``alerted_at``: it counts for the billing period holding that moment).
source_budgets = Table(
    "source_budgets",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("checked_at", UtcDateTime()),
    Column("read_at", UtcDateTime()),
    Column("project_posts", BigInteger),
    Column("project_cap", BigInteger),
    Column("cap_reset_day", Integer),
    Column("project_day", Date),
    Column("project_day_posts", BigInteger),
    Column("capped_until", UtcDateTime()),
    Column("capped_reason", RedactedText),
    Column("alert_level", Integer, nullable=False, server_default="0"),
    Column("alerted_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# People forgotten on request (``syncd forget``), kept only as keyed hashes (HMAC-SHA256 under
# ``forget_state.salt``) of the network user id and of every handle they had: ingest drops
# their posts and never stores their identity again, and redacts them from others' posts.
# ``person`` is the hash of their user id: it groups one person's rows for ``--unsuppress``.
suppressed = Table(
    "suppressed",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("network", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # user_id, handle
    Column("digest", String(64), nullable=False),
    Column("person", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("network", "person", "kind", "digest", name="uq_suppressed_network_person"),
    Index("ix_suppressed_person", "person"),
)

# One row (id 1): the installation's key for those hashes, made by the first ``forget``, and a
# count of forgets, which a writer reads before and after a CRM write to tell whether someone
# was forgotten while the write was under way.
forget_state = Table(
    "forget_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("salt", String(64), nullable=False),
    Column("generation", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime(), nullable=False),
)
