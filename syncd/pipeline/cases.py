"""Cases: each interaction's conversation found, and its case filed with the CRM, before its
records are written (for a CRM that works conversations as cases: Crm.case_policy).

A post belongs to the conversation of the post it answers when that post is the same
customer's (their own, or the brand's answer to them); otherwise to its author's latest case
whose posts are within the policy's join window; otherwise an inbound post the policy lets
open one opens a new one. The brand's posts join, never open. A customer linked to a person
the CRM cannot open cases for (a Salesforce Lead) has none. The CRM answers whether a case
was joined as it was, reopened, or replaced by a new one (closed too long ago); the decision
is stored for every delivery of the interaction (one per history target), so all of them
carry the same case.

Network calls happen outside transactions: the decisions are read, the CRM asked, and the
answers stored in one transaction. A crash between asks again: a new case is upserted on
the key of the post that opens it, so the CRM finds the one it made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection

from syncd.contracts import CaseFiling
from syncd.model import (
    CaseOpening,
    CaseOutcome,
    CasePolicy,
    CaseRequest,
    CaseResult,
    Direction,
    Refusal,
)
from syncd.pipeline.context import Context
from syncd.pipeline.history import subject
from syncd.state import cases as state
from syncd.state import outbox
from syncd.state.coordination import retry_conflicts

log = logging.getLogger("syncd.pipeline")

ROUND_BATCHES = 5  # write batches of interactions decided a round


@dataclass
class CasesResult:
    decided: int = 0  # interactions whose case was decided (a case or none)
    opened: int = 0
    joined: int = 0  # posts joining a case opened before
    reopened: int = 0
    failed: int = 0  # interactions whose case the CRM refused (retried, or dead-lettered)


@dataclass
class _Conversation:
    """A case this round touches: one state holds (``case``) or a new one (``case`` None,
    opened by ``posts[0]``)."""

    identity_id: int
    case: state.Case | None
    posts: list[outbox.ReadyDelivery] = field(default_factory=list)

    @property
    def opened_at(self) -> datetime:
        times = [p.created_at for p in self.posts]
        return min([self.case.opened_at, *times] if self.case else times)

    @property
    def last_post_at(self) -> datetime:
        times = [p.created_at for p in self.posts]
        return max([self.case.last_post_at, *times] if self.case else times)

    def request(self) -> CaseRequest:
        # A new case: its first post opens it. A case joined: the latest post asks, so a
        # case closed meanwhile is reopened (or replaced) for where the conversation is now.
        post = self.posts[0] if self.case is None else max(self.posts, key=lambda p: p.created_at)
        return CaseRequest(
            key=post.external_id,
            who=post.who,
            network=post.network,
            subject=subject(
                post.network,
                post.direction,
                post.account,
                post.handle,
                name=post.name,
                brand_name=post.brand_name,
            ),
            description=post.text,
            occurred_at=post.created_at,
            url=post.url,
            case_id=self.case.crm_case_id if self.case is not None else None,
        )


def plan(
    waiting: Sequence[outbox.ReadyDelivery],
    parents: Mapping[tuple[str, str], state.Parent],
    latest: Mapping[int, Sequence[state.Case]],
    policy: CasePolicy,
) -> tuple[dict[int, _Conversation | None], list[_Conversation]]:
    """Each waiting interaction's conversation (None: no case), oldest first; and the
    conversations, in the order they were first met."""
    window = policy.join_window
    decided: dict[int, _Conversation | None] = {}
    conversations: list[_Conversation] = []
    existing: dict[int, _Conversation] = {}  # by case row id
    # This round's posts, for the ones answering them: (whose, direction, conversation).
    here: dict[tuple[str, str], tuple[int, Direction, _Conversation | None]] = {}
    mine: dict[int, list[_Conversation]] = {}  # by identity: this round's conversations

    def take(case: state.Case) -> _Conversation:
        if case.id not in existing:
            existing[case.id] = _Conversation(case.identity_id, case)
            conversations.append(existing[case.id])
            mine.setdefault(case.identity_id, []).append(existing[case.id])
        return existing[case.id]

    def chained(w: outbox.ReadyDelivery) -> tuple[_Conversation | None, bool]:
        """The conversation of the post ``w`` answers, if the same customer's; and whether
        that post is the brand's."""
        if w.in_reply_to is None:
            return None, False
        key = (w.network, w.in_reply_to)
        if key in here:
            whose, direction, conversation = here[key]
            same = whose == w.identity_id
            return (conversation if same else None), direction is Direction.OUTBOUND
        parent = parents.get(key)
        if parent is None:
            return None, False
        brand = parent.direction is Direction.OUTBOUND
        if parent.case is None or parent.identity_id != w.identity_id:
            return None, brand
        return take(parent.case), brand

    def recent(w: outbox.ReadyDelivery) -> _Conversation | None:
        """The customer's latest case whose posts are within the join window of ``w``."""
        options = [*mine.get(w.identity_id, ())]
        options += [take(c) for c in latest.get(w.identity_id, ()) if c.id not in existing][:1]
        fits = [
            c for c in options if c.opened_at - window <= w.created_at <= c.last_post_at + window
        ]
        return max(fits, key=lambda c: c.last_post_at, default=None)

    for w in waiting:
        conversation: _Conversation | None = None
        if w.who.object in policy.owners:
            conversation, to_brand = chained(w)
            if conversation is None:
                conversation = recent(w)
            if conversation is None and _opens(w, to_brand, policy.opening):
                conversation = _Conversation(w.identity_id, None)
                conversations.append(conversation)
                mine.setdefault(w.identity_id, []).append(conversation)
        if conversation is not None:
            conversation.posts.append(w)
        decided[w.interaction_id] = conversation
        here[(w.network, w.post_id)] = (w.identity_id, w.direction, conversation)
    # A case of state looked at for the join window and joined by none asks nothing.
    return decided, [c for c in conversations if c.posts]


def _opens(w: outbox.ReadyDelivery, to_brand: bool, opening: CaseOpening) -> bool:
    if w.direction is not Direction.INBOUND or opening is CaseOpening.NONE:
        return False
    if opening is CaseOpening.ALL:
        return True
    # Answering the brand: a post of the brand account's, or one of its replies syncd holds.
    return to_brand or (
        w.in_reply_to_user_id is not None and w.in_reply_to_user_id == w.brand_user_id
    )


class CaseFiler:
    """Decides the waiting interactions' cases and files them with one CRM."""

    def __init__(self, context: Context, crm: CaseFiling, policy: CasePolicy) -> None:
        self.db = context.db
        self.crm_name = context.crm_name
        self.crm = crm
        self.policy = policy
        self.settings = context.settings
        self.clock = context.clock
        self.retrying = context.retrying
        # The daemon's write job and a backfill's writer may both run a round: one at a
        # time, or both could open a case for one conversation (instances: a job lock).
        self._one_at_a_time = threading.Lock()

    def file(self, limit: int | None = None) -> CasesResult:
        """One round: up to ``limit`` (five write batches) waiting interactions decided."""
        with self._one_at_a_time:
            return self._file(limit)

    def _file(self, limit: int | None) -> CasesResult:
        now = self.clock()
        with self.db.connect() as conn:
            # A round's worth of the writer's calls: its Composite calls carry up to five
            # batches, so a round of one batch would cost it four calls in five.
            size = limit or self.settings.write_batch * ROUND_BATCHES
            waiting = state.waiting(conn, self.crm_name, now, size)
            if not waiting:
                return CasesResult()
            answered = {(w.network, w.in_reply_to) for w in waiting if w.in_reply_to}
            parents = state.parents(conn, self.crm_name, answered)
            latest = state.latest(conn, self.crm_name, {w.identity_id for w in waiting})
        decided, conversations = plan(waiting, parents, latest, self.policy)
        requests = [c.request() for c in conversations]
        answers: Sequence[CaseResult] = (
            self.retrying(partial(self.crm.file_cases, requests)) if requests else []
        )
        if len(answers) != len(requests):
            raise RuntimeError(f"CRM answered {len(answers)} of {len(requests)} case requests")
        # Nothing outside the database happens in it: safe to redo after a conflict.
        return retry_conflicts(partial(self._store, decided, conversations, requests, answers, now))

    def _store(
        self,
        decided: Mapping[int, _Conversation | None],
        conversations: Sequence[_Conversation],
        requests: Sequence[CaseRequest],
        answers: Sequence[CaseResult],
        now: datetime,
    ) -> CasesResult:
        """The CRM's answers and every decision, in one transaction."""
        result = CasesResult()
        rows: dict[int, int] = {}  # id() of a conversation -> its case row
        failed: list[tuple[_Conversation, CaseResult]] = []
        with self.db.transaction() as conn:
            for conversation, request, answer in zip(conversations, requests, answers, strict=True):
                if not answer.ok or answer.case_id is None:
                    failed.append((conversation, answer))
                    continue
                if conversation.case is None or answer.outcome is CaseOutcome.OPENED:
                    rows[id(conversation)] = state.store_case(
                        conn,
                        self.crm_name,
                        key=request.key,
                        identity_id=conversation.identity_id,
                        crm_case_id=answer.case_id,
                        # A case replacing one closed too long ago starts with its posts.
                        opened_at=min(p.created_at for p in conversation.posts),
                        last_post_at=conversation.last_post_at,
                        now=now,
                    )
                    result.opened += 1
                else:
                    rows[id(conversation)] = conversation.case.id
                    state.joined(conn, conversation.case.id, conversation.last_post_at, now)
                    result.reopened += answer.outcome is CaseOutcome.REOPENED
                    result.joined += len(conversation.posts)
            decisions: dict[int, int | None] = {}
            for interaction_id, its in decided.items():
                if its is None:
                    decisions[interaction_id] = None
                elif id(its) in rows:
                    decisions[interaction_id] = rows[id(its)]
            state.decide(conn, self.crm_name, decisions)
            result.decided = len(decisions)
            for conversation, answer in failed:
                self._refused(conn, conversation, answer, now)
                result.failed += len(conversation.posts)

        return result

    def _refused(
        self, conn: Connection, conversation: _Conversation, answer: CaseResult, now: datetime
    ) -> None:
        """The posts of a conversation whose case the CRM refused: due again later (a
        refusal it may not repeat), or dead letters an admin replays once the org is fixed;
        undecided either way, so they are decided again first."""
        attempts = max(p.attempts for p in conversation.posts)
        retry = answer.refusal in (Refusal.RETRY, Refusal.GONE)
        retry_at = (
            now + timedelta(seconds=min(30 * 2**attempts, 3600))
            if retry and attempts + 1 < self.settings.record_max_attempts
            else None
        )
        code = answer.error_code or "UNKNOWN_ERROR"
        message = f"its Case was not opened: {answer.error_message or 'no reason given'}"
        if retry_at is None:
            log.warning(
                "dead-lettered %d post(s) whose Case the CRM refused: %s %s",
                len(conversation.posts),
                code,
                message,
            )
        ids = [p.interaction_id for p in conversation.posts]
        for delivery_id in state.pending_deliveries(conn, self.crm_name, ids):
            outbox.mark_failed(
                conn,
                delivery_id,
                code=code,
                message=message,
                now=now,
                retry_at=retry_at,
            )
