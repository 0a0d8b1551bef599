"""Salesforce Bulk API 2.0 ingest jobs: many history records upserted in one job, on the same
external id the sObject Collections upserts use.

A job is made in steps the writer keeps in state between them (:class:`BulkJob`): created
(its id stored before any record is uploaded, so a crash after it finds the job again),
records uploaded as one CSV and the job closed, then polled until Salesforce is done, and
its per-record results read back and matched to the records by their key. A job found
still ``Open`` after a crash was never closed: it is aborted, and its records go out again
(upserts on their keys: a record sent twice is one record). Bulk 2.0 costs a handful of
calls per job, where Collections cost one per 200 records.

simple-salesforce's one-call ``sf.bulk2.<Object>.upsert`` creates, uploads, closes and waits
in one go, with no moment to store the job id: the steps here are its client's own
(``SFBulk2Type._client``), taken one at a time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simple_salesforce.api import Salesforce

from connectors.salesforce.records import refusal
from connectors.salesforce.session import Budget, SalesforceSession
from syncd.model import WriteResult

__all__ = [
    "BulkJob",
    "BulkStatus",
    "Upload",
    "abort",
    "create",
    "poll",
    "results",
    "upload",
]

# What Salesforce says of a job (GET /jobs/ingest/{id}: state).
OPEN, UPLOAD_COMPLETE, IN_PROGRESS = "Open", "UploadComplete", "InProgress"
JOB_COMPLETE, FAILED, ABORTED = "JobComplete", "Failed", "Aborted"
DONE = frozenset({JOB_COMPLETE, FAILED, ABORTED})
# An upload over 100 MB of CSV is refused (150 MB base64-encoded on the wire).
MAX_UPLOAD_BYTES = 100_000_000


@dataclass(frozen=True)
class BulkJob:
    id: str
    sobject: str
    key_field: str


@dataclass(frozen=True)
class BulkStatus:
    state: str
    processed: int = 0
    failed: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.state in DONE


def _client(sf: Salesforce, sobject: str) -> Any:
    return getattr(sf.bulk2, sobject)._client


def create(session: SalesforceSession, sobject: str, key_field: str, budget: Budget) -> BulkJob:
    """A new upsert job on ``key_field`` (no record in it yet)."""

    def make(sf: Salesforce) -> Any:
        return _client(sf, sobject).create_job("upsert", external_id_field=key_field)

    answer = session.run(f"create {sobject} bulk job", make, budget)
    return BulkJob(str(answer["id"]), sobject, key_field)


class Upload:
    """One job's CSV, built a record at a time, holding no more than one upload may carry.

    The columns are fixed up front (every field a record of the object may carry): an entry
    without one leaves its cell empty, which Bulk 2.0 reads as "leave the field alone", as
    leaving it out of an sObject Collections entry does; a None is sent as ``#N/A``, Bulk's
    way of clearing a field; booleans as true/false."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\n")
        self._writer.writerow(self.columns)
        self.size = len(self._out.getvalue().encode())
        self.records = 0

    def add(self, entry: Mapping[str, Any]) -> bool:
        """Add one entry; False (and nothing added) when it would make the upload too big."""
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow([_cell(entry, c) for c in self.columns])
        text = line.getvalue()
        size = len(text.encode())
        if self.size + size > MAX_UPLOAD_BYTES:
            return False
        self._out.write(text)
        self.size += size
        self.records += 1
        return True

    def text(self) -> str:
        """The CSV, once: the buffer is let go (a job's upload is held a few times over)."""
        text = self._out.getvalue()
        self._out.close()
        return text


def _cell(entry: Mapping[str, Any], column: str) -> str:
    if column not in entry:
        return ""
    value = entry[column]
    if value is None:
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def upload(session: SalesforceSession, job: BulkJob, data: Upload, budget: Budget) -> None:
    """The job's records uploaded, and the job closed for Salesforce to process."""
    if not data.records:
        raise ValueError("a bulk job needs at least one record")
    text = data.text()

    def send(sf: Salesforce) -> None:
        client = _client(sf, job.sobject)
        client.upload_job_data(job.id, text)
        client.close_job(job.id)

    session.run(f"upload {job.sobject} bulk job", send, budget)


def poll(session: SalesforceSession, job: BulkJob, budget: Budget) -> BulkStatus:
    """Where the job stands."""

    def ask(sf: Salesforce) -> Any:
        return _client(sf, job.sobject).get_job(job.id, False)

    info = session.run(f"poll {job.sobject} bulk job", ask, budget)
    return BulkStatus(
        str(info.get("state")),
        int(info.get("numberRecordsProcessed") or 0),
        int(info.get("numberRecordsFailed") or 0),
        info.get("errorMessage") or None,
    )


def abort(session: SalesforceSession, job: BulkJob, budget: Budget) -> None:
    def stop(sf: Salesforce) -> None:
        _client(sf, job.sobject).abort_job(job.id, False)

    session.run(f"abort {job.sobject} bulk job", stop, budget)


def results(session: SalesforceSession, job: BulkJob, budget: Budget) -> dict[str, WriteResult]:
    """A finished job's result for each record it processed, by the record's key (the key
    column), from its successful and failed records. A record it did not process (its
    unprocessed records: the job was aborted or failed part way) has none: the caller
    retries it."""

    def read(sf: Salesforce) -> tuple[str, str]:
        kind = getattr(sf.bulk2, job.sobject)
        return kind.get_successful_records(job.id), kind.get_failed_records(job.id)

    good, bad = session.run(f"results of {job.sobject} bulk job", read, budget)
    found: dict[str, WriteResult] = {}
    for row in csv.DictReader(_lines(good)):
        key = row.get(job.key_field) or ""
        created = str(row.get("sf__Created", "")).lower() == "true"
        found[key] = WriteResult(key, True, row.get("sf__Id") or None, created=created)
    for row in csv.DictReader(_lines(bad)):
        key = row.get(job.key_field) or ""
        # "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
        code, _, message = str(row.get("sf__Error") or "").partition(":")
        code = code.strip() or "UNKNOWN_ERROR"
        found[key] = WriteResult(
            key, False, None, None, code, message.strip() or "no reason given", refusal(code)
        )
    return found


def _lines(text: str) -> Iterator[str]:
    """``text``'s lines, each with its "\n", as iterating ``io.StringIO(text)`` gives them
    (csv joins a quoted field's lines again), without its copy: a StringIO read from holds
    4 bytes per character, and a 50,000-record job's results took 100 MB or more so."""
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", start)
        stop = end if stop < 0 else stop + 1
        yield text[start:stop]
        start = stop
