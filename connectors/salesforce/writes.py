"""History writes in as few Salesforce calls as their order allows.

Each target's records go in sObject Collections upserts of 200. A SocialPost names its
author's SocialPersona, which may first have to be looked for (a query) and then written:
three steps in order for a batch of posts, where a batch of Tasks takes one. One Composite
call carries up to five query and collections subrequests and counts as one call against the
org's allocation, so each call here carries the next step of everything whose previous step
is answered: persona look-ups first (the longest road), then persona writes, then
SocialPosts and Tasks. A thousand interactions written to both targets, every author new,
take four calls, not seventeen.

Subrequests never refer to one another (``@{ref}``: their behaviour on a partial failure is
not documented): each call is built from the answers to the calls before it. A subrequest
that fails whole (its status in ``compositeResponse``) is mapped as the same request failing
on its own is (:func:`connectors.salesforce.session.classify`); the records of its target
not answered yet are left unwritten (:class:`syncd.errors.PartialWrite`) and the writer sends
them again. Every write here is an upsert on a key or an update by Id, so a write Salesforce
applied before failing is not made twice. Without key fields (``social_post_match =
"query"``) personas and posts are created, not upserted: those go as before, a call each
(:func:`connectors.salesforce.personas.with_personas`,
:func:`connectors.salesforce.social_posts.write_by_query`), after the query that finds what
an earlier try made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import urlencode

from simple_salesforce.api import Salesforce

from connectors.salesforce import composite
from connectors.salesforce.personas import (
    FIND_SOQL,
    Match,
    matching,
    persona_entries,
    row_match,
    with_personas,
)
from connectors.salesforce.records import (
    BATCH,
    SOCIAL_PERSONA,
    SOCIAL_POST,
    parse_upsert_results,
    persona_key,
    persona_provider,
    social_post_record,
    task_record,
)
from connectors.salesforce.session import Budget, SalesforceSession, classify
from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.social_posts import in_queries, write_by_query
from syncd.errors import AuthError, ExternalError, PartialWrite, RateLimited, TransientError
from syncd.model import HistoryRecord, Persona, Refusal, WriteResult

Build = Callable[[HistoryRecord, SalesforceSettings], dict[str, Any]]
# Each history target ([crm] history): its object, the field its upserts are keyed on, and
# how a record reads there.
TARGETS: dict[str, Callable[[SalesforceSettings], tuple[str, str, Build]]] = {
    "task": lambda s: (s.history_object, s.external_id_field, task_record),
    "social_post": lambda s: (SOCIAL_POST, s.social_post_key_field, social_post_record),
}
SOCIAL = "social_post"


def noted(answer: WriteResult, record: HistoryRecord) -> WriteResult:
    """A SocialPost's answer with what the writer keeps: the persona it was written with, and
    whether it answers a post whose SocialPost was not known (its ReplyToId is to come)."""
    if not answer.ok:
        return answer
    return replace(
        answer,
        persona_id=record.author.persona_id if record.author is not None else None,
        awaits_reply_to=bool(record.in_reply_to) and record.reply_to_id is None,
    )


def unknown_target(record: HistoryRecord) -> WriteResult:
    message = f"no history target {record.target!r} in Salesforce"
    return WriteResult(
        record.external_id, False, None, None, "UNKNOWN_TARGET", message, Refusal.FINAL
    )


def finish(
    results: Sequence[WriteResult | None], failures: dict[str, ExternalError]
) -> list[WriteResult]:
    """The answers, every record answered; else the first failure when nothing was, and a
    PartialWrite when some targets were answered and others failed."""
    if failures:
        if all(r is None for r in results):
            raise next(iter(failures.values()))
        raise PartialWrite(results, failures)
    return [r for r in results if r is not None]


@dataclass
class _Job:
    """One request: a query or a collections write, for ``target``'s records."""

    target: str
    action: str
    method: str
    path: str  # below services/data/vXX.X/
    read: Callable[[Any], None]  # takes the answer's body
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None

    def subrequest(self, sf: Salesforce, ref: str) -> dict[str, Any]:
        url = f"/services/data/v{sf.sf_version}/{self.path}"
        if self.params:
            url += "?" + urlencode(self.params)
        sub: dict[str, Any] = {"method": self.method, "url": url, "referenceId": ref}
        if self.body is not None:
            sub["body"] = self.body
        return sub


def _more(body: dict[str, Any], sf: Salesforce) -> dict[str, Any]:
    return dict(sf.query_more(body["nextRecordsUrl"], identifier_is_url=True))


class HistoryWrite:
    """One ``upsert_history`` with key fields: records of any targets, in rounds of one call
    each (see the module's docstring)."""

    def __init__(
        self,
        session: SalesforceSession,
        settings: SalesforceSettings,
        records: Sequence[HistoryRecord],
    ) -> None:
        self.session, self.settings, self.budget = session, settings, Budget()
        self.records = list(records)
        self.results: list[WriteResult | None] = [None] * len(records)
        self.failures: dict[str, ExternalError] = {}
        # Per target, the records ready to be sent (a SocialPost once its persona is known).
        self.ready: dict[str, list[int]] = {}
        # SocialPosts waiting for their author's persona, by persona key; the author's
        # first record; what the look-ups found; the persona writes not sent yet.
        self.blocked: dict[str, list[int]] = {}
        self.pending: dict[str, tuple[HistoryRecord, Persona]] = {}
        self.found: dict[Match, dict[str, Any]] = {}
        self.queries: list[str] = []
        self.planned = False
        self.persona_jobs: list[_Job] = []
        for i, r in enumerate(self.records):
            if r.target not in TARGETS:
                self.results[i] = unknown_target(r)
            elif r.target == SOCIAL and r.author is not None and r.author.persona_id is None:
                if (key := persona_key(r)) is None:  # pragma: no cover - an author has a key
                    continue
                self.pending.setdefault(key, (r, r.author))
                self.blocked.setdefault(key, []).append(i)
            else:
                self.ready.setdefault(r.target, []).append(i)
        user_ids = [author.user_id for _, author in self.pending.values()]
        self.queries = in_queries(FIND_SOQL, "ExternalId", user_ids)

    def run(self) -> list[WriteResult]:
        while jobs := self._next_jobs():
            self._send(jobs)
        for i, result in enumerate(self.results):
            # Every record is answered or its target failed; never one silently left out.
            target = self.records[i].target
            if result is None and target not in self.failures:
                raise RuntimeError(f"{self.records[i].external_id} ({target}) was not sent")
        return finish(self.results, self.failures)

    # -- what goes next --------------------------------------------------------------------
    def _next_jobs(self) -> list[_Job]:
        jobs: list[_Job] = []
        room = composite.MAX_QUERIES
        if SOCIAL not in self.failures:
            if not self.queries and not self.planned:
                self._plan_personas()  # the look-ups are all answered
            while self.queries and len(jobs) < room:
                jobs.append(self._query_job(self.queries.pop(0)))
            while self.persona_jobs and len(jobs) < room:
                jobs.append(self.persona_jobs.pop(0))
        # Full batches first; a part batch only when no more of its target is to come, or
        # a slot would go unused (sending it now costs nothing; holding it, perhaps a call).
        for full in (True, False):
            for target, waiting in self.ready.items():
                more = target == SOCIAL and bool(self.blocked)
                while waiting and len(jobs) < room:
                    if len(waiting) < BATCH and full and more:
                        break
                    part, waiting[:] = waiting[:BATCH], waiting[BATCH:]
                    jobs.append(self._upsert_job(target, part))
        return jobs

    def _query_job(self, soql: str) -> _Job:
        return _Job(
            SOCIAL, f"find {SOCIAL_PERSONA}", "GET", "query", self._read_personas, {"q": soql}
        )

    def _read_personas(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise TransientError(f"salesforce find {SOCIAL_PERSONA}: unreadable answer")
        rows = list(body.get("records") or [])
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            body = self.session.run(f"find {SOCIAL_PERSONA}", partial(_more, body), self.budget)
            rows += body.get("records") or []
        for row in rows:
            self.found.setdefault(row_match(row), row)

    def _plan_personas(self) -> None:
        """Each new author's persona: found as it is, moved under the linked person, or
        written; the posts of those found as they are are ready at once."""
        self.planned = True
        found: dict[str, dict[str, Any]] = {}
        for key, (r, author) in self.pending.items():
            row = self.found.get(matching(*persona_provider(r.network), author.user_id))
            if row is not None:
                found[key] = row
        entries = persona_entries(self.settings, self.pending, found, keyed=True)
        for key, persona_id in entries.ids.items():
            self._persona_known(key, persona_id)
        for (action, method, path), todo in entries.calls:
            for start in range(0, len(todo), BATCH):
                part = todo[start : start + BATCH]
                keys = [k for k, _ in part]
                body = {"allOrNone": False, "records": [e for _, e in part]}

                def read(answer: Any, keys: list[str] = keys) -> None:
                    for key, result in zip(keys, parse_upsert_results(keys, answer), strict=True):
                        if result.ok and result.crm_id:
                            self._persona_known(key, result.crm_id)
                        else:
                            self._persona_refused(key, result)

                self.persona_jobs.append(
                    _Job(SOCIAL, f"{action} {SOCIAL_PERSONA}", method, path, read, body=body)
                )

    def _persona_known(self, key: str, persona_id: str) -> None:
        waiting = self.ready.setdefault(SOCIAL, [])
        for i in self.blocked.pop(key, []):
            r = self.records[i]
            if r.author is not None:
                self.records[i] = replace(r, author=replace(r.author, persona_id=persona_id))
            waiting.append(i)
        waiting.sort()

    def _persona_refused(self, key: str, answer: WriteResult) -> None:
        # Its author's posts are refused as the persona was (a person gone: resolve again).
        for i in self.blocked.pop(key, []):
            external_id = self.records[i].external_id
            self.results[i] = replace(answer, external_id=external_id, crm_id=None)

    def _upsert_job(self, target: str, indexes: list[int]) -> _Job:
        s = self.settings
        obj, key_field, build = TARGETS[target](s)
        chunk = [self.records[i] for i in indexes]
        body = {"allOrNone": False, "records": [build(r, s) for r in chunk]}

        def read(answer: Any) -> None:
            keys = [r.external_id for r in chunk]
            for i, r, result in zip(
                indexes, chunk, parse_upsert_results(keys, answer), strict=True
            ):
                self.results[i] = noted(result, r) if target == SOCIAL else result

        path = f"composite/sobjects/{obj}/{key_field}"
        return _Job(target, f"upsert {obj}", "PATCH", path, read, body=body)

    # -- the calls -------------------------------------------------------------------------
    def _send(self, jobs: list[_Job]) -> None:
        if len(jobs) == 1:  # as a request of its own: the same call, without the envelope
            job = jobs[0]

            def alone(sf: Salesforce) -> Any:
                return sf.restful(job.path, method=job.method, params=job.params, json=job.body)

            try:
                body = self.session.run(job.action, alone, self.budget)
            except (AuthError, RateLimited):
                raise
            except ExternalError as exc:
                self._fail(job.target, exc)
                return
            self._read(job, body)
            return

        def together(sf: Salesforce) -> list[tuple[str, int, Any]]:
            subs = [job.subrequest(sf, f"r{n}") for n, job in enumerate(jobs)]
            return [
                (sub["url"], status, body)
                for sub, (status, body) in zip(subs, composite.answers(sf, subs), strict=True)
            ]

        try:
            answers = self.session.run("composite", together, self.budget)
        except (AuthError, RateLimited):
            raise
        except ExternalError as exc:
            for job in jobs:
                self._fail(job.target, exc)
            return
        for job, (url, status, body) in zip(jobs, answers, strict=True):
            if 200 <= status < 300:
                self._read(job, body)
                continue
            mapped = classify(composite.error(url, status, job.action, body), job.action)
            if mapped is None:  # pragma: no cover - composite.error makes a SalesforceError
                raise AssertionError(f"unmapped answer {status} to {job.action}")
            if isinstance(mapped, AuthError | RateLimited):
                raise mapped
            self._fail(job.target, mapped)

    def _read(self, job: _Job, body: Any) -> None:
        try:
            job.read(body)
        except ExternalError as exc:  # an unreadable answer: nothing of it is taken
            if isinstance(exc, AuthError | RateLimited):
                raise
            self._fail(job.target, exc)

    def _fail(self, target: str, exc: ExternalError) -> None:
        """The target's records not answered yet are not written this time."""
        self.failures.setdefault(target, exc)
        self.ready.pop(target, None)
        if target == SOCIAL:
            self.queries, self.persona_jobs, self.planned = [], [], True
            self.blocked.clear()


def write_by_steps(
    session: SalesforceSession,
    settings: SalesforceSettings,
    records: Sequence[HistoryRecord],
) -> list[WriteResult]:
    """Without key fields: each target's records a call per 200, SocialPosts after their
    personas, as each step must be seen done before the next may be sent again."""
    s, budget = settings, Budget()
    by_target: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_target.setdefault(r.target, []).append(i)
    results: list[WriteResult | None] = [None] * len(records)
    failures: dict[str, ExternalError] = {}
    for target, indexes in by_target.items():
        if target not in TARGETS:
            for i in indexes:
                results[i] = unknown_target(records[i])
            continue
        obj, key_field, build = TARGETS[target](s)
        try:
            for start in range(0, len(indexes), BATCH):
                part = indexes[start : start + BATCH]
                chunk = [records[i] for i in part]
                if target == SOCIAL:
                    chunk, refused = with_personas(session, s, chunk, budget)
                    for j, answer in refused.items():
                        results[part[j]] = answer
                    part = [i for j, i in enumerate(part) if j not in refused]
                    chunk = [r for j, r in enumerate(chunk) if j not in refused]
                    if not chunk:
                        continue
                    answers = write_by_query(session, s, chunk, budget)
                else:
                    payload = {"allOrNone": False, "records": [build(r, s) for r in chunk]}
                    body = session.restful(
                        f"upsert {obj}",
                        f"composite/sobjects/{obj}/{key_field}",
                        budget,
                        method="PATCH",
                        json=payload,
                    )
                    answers = parse_upsert_results([r.external_id for r in chunk], body)
                for i, r, answer in zip(part, chunk, answers, strict=True):
                    results[i] = noted(answer, r) if target == SOCIAL else answer
        except (AuthError, RateLimited):
            raise
        except ExternalError as exc:  # this target's remaining records; the others go on
            failures[target] = exc
    return finish(results, failures)
