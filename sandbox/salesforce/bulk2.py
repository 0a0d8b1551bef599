"""Bulk API 2.0 ingest jobs of the Salesforce stand-in: create, upload CSV, close, poll, results.

Written from the Bulk API 2.0 developer guide (create-job, upload-job-data, close-job,
get-job-info, the three result resources, job states, limits) and what clients and real orgs
show of the answers:

- One CSV upload per job, at most 150 MB once base64-encoded (about 100 MB raw); a second
  ``PUT`` is refused with "Found multiple contents for job" (seen live from real orgs).
- Closing a job (``UploadComplete``) queues it; the records are then applied in internal
  batches of 10,000, each in DML chunks of 200 through the very code of sObject Collections
  (:mod:`.collections`): required fields, picklists, look-ups, unique external ids and
  "Duplicate external id specified" within one chunk behave as they do there.
- Every internal batch counts against the daily batch allocation (15,000 per rolling 24 h,
  shared with Bulk API 1.0) and its records against the 150,000,000 records a day. "If the
  limit is exceeded while processing your job data, the remaining data isn't processed. The
  ingest job is marked as having failed": its rows are then unprocessed records.
- CSV cells are applied as Bulk loads them: an empty cell leaves the field as it is, ``#N/A``
  clears it.
- Result CSVs start with ``"sf__Id","sf__Created"`` (successful) or ``"sf__Id","sf__Error"``
  (failed) and then echo each record's uploaded text; ``sf__Error`` reads
  ``CODE:message:Field1,Field2 --``. Unprocessed records are the uploaded header and rows.

What the guide does not say and is inferred here (the codes follow Bulk 2.0's spelling,
"INVALIDJOB", "INVALIDJOBSTATE"): an oversized upload is refused 400 CLIENTINPUTERROR (Bulk
1.0 answers ``ClientInputError: Failed to read request. Exceeded max size limit``), a field over
32,000 characters or a record over 400,000 fails that record as STRING_TOO_LONG, and closing a
job without data fails it.

A real job is processed in the background while the client polls. Here processing happens when
the job is closed, unless :attr:`Bulk2.in_progress_polls` is set: then the job answers
``InProgress`` to that many polls of its info and is processed by the next one (or by
:meth:`Bulk2.settle`), so a test sees a client poll and can abort or crash mid-job.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.salesforce.collections import (
    ID_LOOKUP,
    MAX_RECORDS,
    create_many,
    delete_many,
    upsert_many,
)
from sandbox.salesforce.schema import make_id
from sandbox.salesforce.store import RequestError, SalesforceStore

MAX_UPLOAD_BASE64 = 150 * 1024 * 1024  # bytes of one upload once base64-encoded
BATCH_RECORDS = 10_000  # records of one internal batch
DAILY_BATCHES = 15_000  # per rolling 24 h, shared with Bulk API 1.0
DAILY_RECORDS = 150_000_000  # per rolling 24 h
MAX_FIELD_CHARS = 32_000
MAX_RECORD_CHARS = 400_000
WINDOW = timedelta(hours=24)
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
DELIMITERS = {
    "BACKQUOTE": "`",
    "CARET": "^",
    "COMMA": ",",
    "PIPE": "|",
    "SEMICOLON": ";",
    "TAB": "\t",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
TERMINAL = ("JobComplete", "Failed", "Aborted")
# What "Aborting already … Job not allowed" calls each terminal state (a real org's wording).
_DONE_WORD = {"JobComplete": "Completed", "Failed": "Failed", "Aborted": "Aborted"}


def _refuse(status: int, code: str, message: str) -> RequestError:
    return RequestError(status, code, message)


def _not_found() -> RequestError:
    return _refuse(404, "NOT_FOUND", "The requested resource does not exist")


@dataclass
class Row:
    raw: str  # the record's text as uploaded: the results echo it
    values: list[str]


@dataclass
class Job:
    id: str
    operation: str
    sobject: str
    external_id: str | None
    line_ending: str
    delimiter: str
    api_version: str
    created_by: str
    created: str
    modstamp: str
    state: str = "Open"
    uploads: int = 0
    header_raw: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    successful: list[tuple[str, bool, Row]] = field(default_factory=list)
    failed: list[tuple[str, str, Row]] = field(default_factory=list)
    unprocessed: list[Row] = field(default_factory=list)
    error_message: str | None = None
    polls_left: int = 0  # InProgress answers still due before the job is processed

    def brief(self) -> dict[str, Any]:
        """What create, close and the job list answer."""
        info: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
        }
        if self.external_id is not None:
            info["externalIdFieldName"] = self.external_id
        info.update(
            concurrencyMode="Parallel",
            contentType="CSV",
            apiVersion=float(self.api_version),
            jobType="V2Ingest",
            contentUrl=f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches",
            lineEnding=self.line_ending,
            columnDelimiter=self.delimiter,
        )
        return info

    def info(self) -> dict[str, Any]:
        """What GET jobs/ingest/{id} answers."""
        done = self.state in TERMINAL
        info = {
            **self.brief(),
            "numberRecordsProcessed": len(self.successful) + len(self.failed) if done else 0,
            "numberRecordsFailed": len(self.failed) if done else 0,
            "retries": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }
        if self.error_message is not None:
            info["errorMessage"] = self.error_message
        return info


def _split_records(text: str, ending: str) -> list[str]:
    """The records of a CSV text, each as uploaded; a quoted cell may hold line breaks."""
    out: list[str] = []
    pending: str | None = None
    for piece in text.split(ending):
        pending = piece if pending is None else pending + ending + piece
        if pending.count('"') % 2 == 0:  # escaped quotes ("") keep the count even
            out.append(pending)
            pending = None
    if pending is not None:
        out.append(pending)
    while out and out[-1] == "":
        out.pop()
    return out


def _cells(raw: str, delimiter: str) -> list[str]:
    return next(csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter), [])


def _error_text(errors: Sequence[dict[str, Any]]) -> str:
    """``sf__Error`` as Bulk writes it: ``CODE:message:Field1,Field2 --`` per error."""
    parts = []
    for e in errors:
        fields = ",".join(e.get("fields") or [])
        parts.append(f"{e['statusCode']}:{e['message']}:{fields + ' ' if fields else ''}--")
    return "".join(parts)


class Bulk2:
    """The org's ingest jobs. Not locked by itself: the sandbox calls it under its lock."""

    def __init__(
        self, store: SalesforceStore, clock: Callable[[], datetime], user_id: Callable[[], str]
    ) -> None:
        self.store = store
        self.clock = clock
        self.user_id = user_id
        self.jobs: dict[str, Job] = {}
        self.batch_limit = DAILY_BATCHES
        self.record_limit = DAILY_RECORDS
        self.max_upload = MAX_UPLOAD_BASE64
        self.in_progress_polls = 0  # see the module docstring
        self._serial = 0
        self._usage: list[tuple[datetime, int, int]] = []  # (when, batches, records)

    # -- allocations ----------------------------------------------------------------------
    def _window(self) -> list[tuple[datetime, int, int]]:
        since = self.clock() - WINDOW
        self._usage = [u for u in self._usage if u[0] > since]
        return self._usage

    @property
    def batches_used(self) -> int:
        """Internal batches run in the last 24 hours (the DailyBulkApiBatches used)."""
        return sum(u[1] for u in self._window())

    @property
    def records_used(self) -> int:
        """Records processed in the last 24 hours."""
        return sum(u[2] for u in self._window())

    # -- resources ------------------------------------------------------------------------
    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise _not_found()
        return job

    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def create(self, body: Any, version: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _refuse(400, "JSON_PARSER_ERROR", "Expected a JSON object for the job")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise _refuse(400, "INVALIDJOB", f"Invalid operation: {operation}")
        name = body.get("object")
        table = self.store.table(name) if isinstance(name, str) else None
        if table is None:
            raise _refuse(400, "INVALIDENTITY", f"sObject type '{name}' is not supported.")
        if body.get("contentType", "CSV") != "CSV":
            raise _refuse(400, "INVALIDJOB", f"Invalid contentType: {body.get('contentType')}")
        ending = body.get("lineEnding", "LF")
        delimiter = body.get("columnDelimiter", "COMMA")
        if ending not in LINE_ENDINGS:
            raise _refuse(400, "INVALIDJOB", f"Invalid lineEnding: {ending}")
        if delimiter not in DELIMITERS:
            raise _refuse(400, "INVALIDJOB", f"Invalid columnDelimiter: {delimiter}")
        external = body.get("externalIdFieldName")
        if operation == "upsert":
            if not isinstance(external, str) or not external:
                raise _refuse(
                    400, "INVALIDJOB", "External ID field name is required for upsert operation"
                )
            key = table.fields.get(external.lower())
            if key is None or (
                key != "Id"
                and key not in table.external
                and key not in ID_LOOKUP.get(table.name, ())
            ):
                raise _refuse(
                    400,
                    "INVALIDJOB",
                    f"Field name provided, {external} is not an External ID or indexed field "
                    f"for {table.name}",
                )
            external = key
        else:
            external = None
        self._serial += 1
        now = self._now()
        job = Job(
            id=make_id("750", self._serial),
            operation=operation,
            sobject=table.name,
            external_id=external,
            line_ending=ending,
            delimiter=delimiter,
            api_version=version,
            created_by=self.user_id(),
            created=now,
            modstamp=now,
        )
        self.jobs[job.id] = job
        return job.brief()

    def upload(self, job_id: str, body: bytes) -> None:
        job = self._job(job_id)
        if job.state != "Open":
            raise _refuse(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is not Open: data can only be uploaded to an Open job",
            )
        if job.uploads:
            raise _refuse(
                400,
                "INVALIDJOB",
                f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / "
                "'Delete' the current Job then create a new Job and make sure you only do "
                "'PUT' once on a given Job.",
            )
        encoded = 4 * -(-len(body) // 3)  # the size Salesforce counts, once base64-encoded
        if encoded > self.max_upload:
            raise _refuse(
                400,
                "CLIENTINPUTERROR",
                f"Failed to read request. Exceeded max size limit of {self.max_upload}",
            )
        job.uploads += 1
        text = body.decode("utf-8-sig", errors="replace")
        records = _split_records(text, LINE_ENDINGS[job.line_ending])
        if not records:
            return
        job.header_raw = records[0]
        job.header = [h.strip() for h in _cells(records[0], DELIMITERS[job.delimiter])]
        job.rows = [Row(r, _cells(r, DELIMITERS[job.delimiter])) for r in records[1:] if r]
        job.modstamp = self._now()

    def set_state(self, job_id: str, body: Any) -> dict[str, Any]:
        job = self._job(job_id)
        state = body.get("state") if isinstance(body, dict) else None
        if state == "Aborted":
            if job.state in TERMINAL:
                raise _refuse(
                    400,
                    "INVALIDJOBSTATE",
                    f"Aborting already {_DONE_WORD[job.state]} Job not allowed",
                )
            job.state = "Aborted"
            job.unprocessed = list(job.rows)
            job.modstamp = self._now()
            return job.brief()
        if state != "UploadComplete":
            raise _refuse(400, "INVALIDJOBSTATE", f"Invalid state: {state}")
        if job.state != "Open":
            word = _DONE_WORD.get(job.state, "Closed")
            raise _refuse(400, "INVALIDJOBSTATE", f"Closing already {word} Job not allowed")
        job.state = "UploadComplete"
        job.modstamp = self._now()
        answer = job.brief()  # the close answers UploadComplete, whatever follows
        if self.in_progress_polls > 0:
            job.polls_left = self.in_progress_polls
        else:
            self._process(job)
        return answer

    def info(self, job_id: str) -> dict[str, Any]:
        """A poll: a job held InProgress counts it down, then is processed."""
        job = self._job(job_id)
        if job.state in ("UploadComplete", "InProgress"):
            if job.polls_left > 0:
                job.polls_left -= 1
                job.state = "InProgress"
            else:
                self._process(job)
        return job.info()

    def settle(self) -> None:
        """Process every closed job still waiting for polls, as the org would on its own."""
        for job in self.jobs.values():
            if job.state in ("UploadComplete", "InProgress"):
                job.polls_left = 0
                self._process(job)

    def listing(self) -> dict[str, Any]:
        records = [
            {
                **j.brief(),
                "retries": 0,
                "totalProcessingTime": 0,
                "apiActiveProcessingTime": 0,
                "apexProcessingTime": 0,
            }
            for j in self.jobs.values()
        ]
        return {"done": True, "records": records, "nextRecordsUrl": None}

    def delete(self, job_id: str) -> None:
        job = self._job(job_id)
        if job.state in ("Open", "InProgress"):
            raise _refuse(
                400, "INVALIDJOBSTATE", f"Deleting a job in state {job.state} is not allowed"
            )
        del self.jobs[job.id]

    def results(self, job_id: str, kind: str) -> str:
        """One of the three result CSVs: "successful", "failed" or "unprocessed"."""
        job = self._job(job_id)
        sep = DELIMITERS[job.delimiter]
        if kind == "unprocessed":
            lines = [job.header_raw, *(r.raw for r in job.unprocessed)] if job.header_raw else []
        elif kind == "successful":
            head = f'"sf__Id"{sep}"sf__Created"'
            lines = [f"{head}{sep}{job.header_raw}" if job.header_raw else head]
            for rec_id, created, row in job.successful:
                lines.append(f'"{rec_id}"{sep}"{str(created).lower()}"{sep}{row.raw}')
        else:
            head = f'"sf__Id"{sep}"sf__Error"'
            lines = [f"{head}{sep}{job.header_raw}" if job.header_raw else head]
            for rec_id, error, row in job.failed:
                quoted = error.replace('"', '""')
                lines.append(f'"{rec_id}"{sep}"{quoted}"{sep}{row.raw}')
        return "".join(line + "\n" for line in lines)

    # -- processing -----------------------------------------------------------------------
    def _fail(self, job: Job, message: str, rest: Sequence[Row]) -> None:
        job.state = "Failed"
        job.error_message = message
        job.unprocessed = list(rest)
        job.modstamp = self._now()

    def _process(self, job: Job) -> None:
        if job.state not in ("UploadComplete", "InProgress"):
            return
        table = self.store.table(job.sobject)
        assert table is not None  # create() checked it, and objects are never dropped
        if not job.uploads:
            self._fail(job, "InvalidBatch : No data was uploaded for this job", [])
            return
        # The header shows the data's line ending; a quoted cell may hold any line break.
        if job.header_raw.endswith("\r") if job.line_ending == "LF" else "\n" in job.header_raw:
            self._fail(
                job,
                "ClientInputError : LineEnding is invalid on user data. Current LineEnding "
                f"setting is {job.line_ending}",
                job.rows,
            )
            return
        for name in job.header:
            # a custom field new to the stand-in is created on write, as elsewhere here
            if table.fields.get(name.lower()) is None and not name.endswith("__c"):
                self._fail(job, f"InvalidBatch : Field name not found : {name}", job.rows)
                return
        rows = job.rows
        for start in range(0, len(rows), BATCH_RECORDS):
            batch = rows[start : start + BATCH_RECORDS]
            if self.batches_used + 1 > self.batch_limit:
                self._fail(
                    job, "ExceededQuota : Daily limit of Bulk API batches exceeded", rows[start:]
                )
                return
            if self.records_used + len(batch) > self.record_limit:
                self._fail(
                    job, "ExceededQuota : Daily limit of Bulk API records exceeded", rows[start:]
                )
                return
            self._usage.append((self.clock(), 1, len(batch)))
            for chunk in range(0, len(batch), MAX_RECORDS):
                self._apply(job, table.name, batch[chunk : chunk + MAX_RECORDS])
        job.state = "JobComplete"
        job.modstamp = self._now()

    def _fields(self, job: Job, row: Row) -> dict[str, Any] | str:
        """The record a row loads, or the sf__Error that fails it before any DML."""
        if len(row.raw) > MAX_RECORD_CHARS:
            return f"STRING_TOO_LONG:Record exceeds {MAX_RECORD_CHARS} characters:--"
        fields: dict[str, Any] = {}
        for name, value in zip(job.header, row.values, strict=False):
            if len(value) > MAX_FIELD_CHARS:
                return f"STRING_TOO_LONG:{name}: data value too large:{name} --"
            if value == "":
                continue  # an empty cell leaves the field alone
            fields[name] = None if value == "#N/A" else value
        return fields

    def _apply(self, job: Job, sobject: str, rows: Sequence[Row]) -> None:
        """One DML chunk of at most 200 records through sObject Collections."""
        ready: list[tuple[Row, dict[str, Any]]] = []
        for row in rows:
            fields = self._fields(job, row)
            if isinstance(fields, str):
                job.failed.append((self._row_id(job, row), fields, row))
            elif job.operation == "update" and not fields.get("Id"):
                job.failed.append(
                    ("", "MISSING_ARGUMENT:Id not specified in an update call:--", row)
                )
            elif job.operation in ("delete", "hardDelete") and not fields.get("Id"):
                job.failed.append(
                    ("", "MISSING_ARGUMENT:Id not specified in a delete call:--", row)
                )
            else:
                ready.append((row, fields))
        if not ready:
            return
        records = [{"attributes": {"type": sobject}, **f} for _, f in ready]
        try:
            if job.operation == "insert":
                results = create_many(self.store, records, False)
            elif job.operation in ("update", "upsert"):
                key = "Id" if job.operation == "update" else job.external_id or "Id"
                results = upsert_many(self.store, sobject, key, records, False)
            else:
                results = delete_many(self.store, [f["Id"] for _, f in ready], False)
        except RequestError as exc:  # the chunk refused as a whole, e.g. a value that cannot bind
            if len(ready) > 1:  # so that only the row at fault fails, as Bulk retries it alone
                for row, _ in ready:
                    self._apply(job, sobject, [row])
                return
            job.failed.append(
                (self._row_id(job, ready[0][0]), f"{exc.error_code}:{exc.message}:--", ready[0][0])
            )
            return
        for (row, _), result in zip(ready, results, strict=True):
            if result["success"]:
                if job.operation == "hardDelete":
                    self._purge(sobject, result["id"])
                created = bool(result.get("created", job.operation == "insert"))
                job.successful.append((result["id"], created, row))
            else:
                job.failed.append((self._row_id(job, row), _error_text(result["errors"]), row))

    def _row_id(self, job: Job, row: Row) -> str:
        """sf__Id of a failed row (API 53.0 on): the record it named or its upsert key
        matched, else empty."""
        cells = dict(zip(job.header, row.values, strict=False))
        if job.operation in ("update", "delete", "hardDelete"):
            return cells.get("Id", "")
        table = self.store.table(job.sobject)
        key = job.external_id
        if job.operation != "upsert" or table is None or key is None:
            return ""
        if key == "Id":
            return cells.get("Id", "")
        return table.exact.get(key, {}).get(cells.get(key, ""), "")

    def _purge(self, sobject: str, record_id: str) -> None:
        table = self.store.table(sobject)
        if table is not None:
            table.records.pop(record_id, None)


def parse_json(body: bytes) -> Any:
    if not body:
        raise _refuse(
            400,
            "JSON_PARSER_ERROR",
            "The HTTP entity body is required, but this request has no entity body.",
        )
    return json.loads(body)
