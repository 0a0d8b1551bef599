"""Bulk API 2.0 ingest on the Salesforce stand-in, driven by the real simple-salesforce bulk2
client (create job, upload CSV, close, poll, the three result CSVs) and by raw requests where
the library hides an answer."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceError, SalesforceOperationError
from support.salesforce import V, login, raw

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.salesforce.bulk2 import MAX_UPLOAD_BASE64
from sandbox.salesforce.schema import make_id

EXT = "Social_Post_Id__c"


@pytest.fixture
def sb() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def task_by_ext(sf: Any, ext: str) -> dict[str, Any] | None:
    found = sf.query(f"SELECT Id, Subject, WhoId FROM Task WHERE {EXT} = '{ext}'")["records"]
    return found[0] if found else None


def open_job(sb: SalesforceSandbox, sf: Any, csv_text: str, **job: Any) -> str:
    """A Task upsert job with ``csv_text`` uploaded, still Open."""
    body = {"object": "Task", "operation": "upsert", "externalIdFieldName": EXT, **job}
    created = raw(sb, sf, "POST", "jobs/ingest", json=body)
    assert created.status_code == 200, created.text
    job_id: str = created.json()["id"]
    put = raw(
        sb,
        sf,
        "PUT",
        f"jobs/ingest/{job_id}/batches",
        data=csv_text.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert put.status_code == 201, put.text
    return job_id


def state(sb: SalesforceSandbox, sf: Any, job_id: str, new: str) -> Any:
    return raw(sb, sf, "PATCH", f"jobs/ingest/{job_id}", json={"state": new})


def test_upsert_creates_updates_and_fails_rows_with_their_errors(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    existing = sf.Task.create({EXT: "p1", "Subject": "before"})["id"]
    account_id = make_id("001", 1)  # an Account id where WhoId takes a Contact or a Lead
    records = [
        {EXT: "p1", "Subject": "after"},
        {EXT: "p2", "Subject": "new"},
        {EXT: "p3", "Subject": "bad", "WhoId": account_id},
    ]

    [result] = sf.bulk2.Task.upsert(records=records, external_id_field=EXT, wait=0)

    assert result["numberRecordsProcessed"] == 3
    assert result["numberRecordsFailed"] == 1
    assert result["numberRecordsTotal"] == 3
    job_id = result["job_id"]
    ok = {r[EXT]: r for r in rows(sf.bulk2.Task.get_successful_records(job_id))}
    assert ok["p1"]["sf__Id"] == existing and ok["p1"]["sf__Created"] == "false"
    assert ok["p2"]["sf__Created"] == "true"
    new_task = task_by_ext(sf, "p2")
    assert new_task is not None and ok["p2"]["sf__Id"] == new_task["Id"]
    assert ok["p1"]["Subject"] == "after"  # the original columns follow sf__Id, sf__Created
    [failed] = rows(sf.bulk2.Task.get_failed_records(job_id))
    assert failed[EXT] == "p3" and failed["sf__Id"] == ""
    assert failed["sf__Error"] == (
        f"FIELD_INTEGRITY_EXCEPTION:Name ID: id value of incorrect type: {account_id}:WhoId --"
    )
    assert rows(sf.bulk2.Task.get_unprocessed_records(job_id)) == []  # the header alone
    before = task_by_ext(sf, "p1")
    assert before is not None and before["Subject"] == "after"
    assert task_by_ext(sf, "p3") is None


def test_result_csvs_echo_the_uploaded_text_and_quote_only_the_sf_columns(
    sb: SalesforceSandbox,
) -> None:
    sf = login(sb)
    upload = 'Social_Post_Id__c,Subject\nq1,"line one\nline two"\nq2,"say ""hi"""\n'
    job_id = open_job(sb, sf, upload)
    assert state(sb, sf, job_id, "UploadComplete").json()["state"] == "UploadComplete"

    text = sf.bulk2.Task.get_successful_records(job_id)

    header, first, *_ = text.split("\n", 2)
    assert header == '"sf__Id","sf__Created",Social_Post_Id__c,Subject'
    assert first.endswith('"true",q1,"line one')  # the quoted line break is kept as sent
    assert text.endswith(',"true",q2,"say ""hi"""\n')
    saved = task_by_ext(sf, "q1")
    assert saved is not None and saved["Subject"] == "line one\nline two"


def test_an_insert_row_missing_a_required_field_fails_with_the_bulk_error_format(
    sb: SalesforceSandbox,
) -> None:
    sf = login(sb)
    data = [{"LastName": "Lovelace", "FirstName": "Ada"}, {"LastName": "", "FirstName": "Bo"}]

    [result] = sf.bulk2.Contact.insert(records=data, wait=0)

    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (2, 1)
    [failed] = rows(sf.bulk2.Contact.get_failed_records(result["job_id"]))
    assert failed["sf__Error"] == (
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    )
    assert failed["FirstName"] == "Bo"


def test_job_info_carries_the_documented_fields(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    job_id = open_job(sb, sf, "Social_Post_Id__c,Subject\nj1,x\n", lineEnding="LF")
    closed = state(sb, sf, job_id, "UploadComplete").json()

    info = raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()

    assert closed["state"] == "UploadComplete"
    assert info["id"] == job_id and job_id.startswith("750")
    assert info["state"] == "JobComplete"
    assert info["object"] == "Task" and info["operation"] == "upsert"
    assert info["externalIdFieldName"] == EXT
    assert info["jobType"] == "V2Ingest" and info["contentType"] == "CSV"
    assert info["apiVersion"] == float(V)
    assert info["contentUrl"] == f"services/data/v{V}/jobs/ingest/{job_id}/batches"
    assert (info["lineEnding"], info["columnDelimiter"]) == ("LF", "COMMA")
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (1, 0)
    assert info["createdById"] == sb.store.user_id
    assert "errorMessage" not in info
    listed = raw(sb, sf, "GET", "jobs/ingest").json()
    assert [j["id"] for j in listed["records"]] == [job_id] and listed["done"] is True


def test_every_bulk_request_counts_one_api_call(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    before = sb.api_calls

    sf.bulk2.Task.upsert(records=[{EXT: "c1", "Subject": "x"}], external_id_field=EXT, wait=0)

    # create, upload, close, one poll (already JobComplete), and the final job info
    assert sb.api_calls - before == 5


def test_a_job_held_in_progress_is_polled_until_it_completes(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    sb.bulk2.in_progress_polls = 2
    job_id = open_job(sb, sf, "Social_Post_Id__c,Subject\nh1,x\n")
    state(sb, sf, job_id, "UploadComplete")

    seen = [raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()["state"] for _ in range(2)]
    written_while_in_progress = task_by_ext(sf, "h1")
    last = raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()

    assert seen == ["InProgress", "InProgress"]
    assert written_while_in_progress is None
    assert last["state"] == "JobComplete" and last["numberRecordsProcessed"] == 1
    assert task_by_ext(sf, "h1") is not None


def test_simple_salesforce_polls_through_in_progress(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    sb.bulk2.in_progress_polls = 3
    before = sb.api_calls

    [result] = sf.bulk2.Task.upsert(records=[{EXT: "w1"}], external_id_field=EXT, wait=0)

    assert result["numberRecordsProcessed"] == 1
    assert sb.api_calls - before == 5 + 3  # three more polls answered InProgress


def test_an_aborted_job_leaves_its_rows_unprocessed(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    upload = "Social_Post_Id__c,Subject\na1,one\na2,two\n"
    job_id = open_job(sb, sf, upload)

    aborted = state(sb, sf, job_id, "Aborted")

    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    assert sf.bulk2.Task.get_unprocessed_records(job_id) == upload
    assert rows(sf.bulk2.Task.get_successful_records(job_id)) == []
    assert task_by_ext(sf, "a1") is None
    info = raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()
    assert (info["state"], info["numberRecordsProcessed"]) == ("Aborted", 0)


def test_aborting_in_progress_writes_nothing_and_a_finished_job_cannot_be_aborted(
    sb: SalesforceSandbox,
) -> None:
    sf = login(sb)
    sb.bulk2.in_progress_polls = 1
    held = open_job(sb, sf, "Social_Post_Id__c\nb1\n")
    state(sb, sf, held, "UploadComplete")
    assert raw(sb, sf, "GET", f"jobs/ingest/{held}").json()["state"] == "InProgress"
    assert state(sb, sf, held, "Aborted").json()["state"] == "Aborted"
    sb.bulk2.in_progress_polls = 0
    done = open_job(sb, sf, "Social_Post_Id__c\nb2\n")
    state(sb, sf, done, "UploadComplete")

    again = state(sb, sf, done, "Aborted")

    assert task_by_ext(sf, "b1") is None and task_by_ext(sf, "b2") is not None
    assert again.status_code == 400
    assert again.json() == [
        {"errorCode": "INVALIDJOBSTATE", "message": "Aborting already Completed Job not allowed"}
    ]


def test_only_one_upload_per_job(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    job_id = open_job(sb, sf, "Social_Post_Id__c\nu1\n")

    second = raw(sb, sf, "PUT", f"jobs/ingest/{job_id}/batches", data=b"Social_Post_Id__c\nu2\n")

    assert second.status_code == 400
    [error] = second.json()
    assert error["errorCode"] == "INVALIDJOB"
    assert error["message"].startswith(f"Found multiple contents for job: <{job_id}>")


def test_an_upload_over_150_mb_base64_is_refused(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    job_id = open_job_empty(sb, sf)
    # the smallest body whose base64 form passes 150 MB: about 112.5 MB raw
    size = MAX_UPLOAD_BASE64 // 4 * 3 + 1
    body = b"Social_Post_Id__c\n" + b"x" * (size - 18)

    refused = raw(sb, sf, "PUT", f"jobs/ingest/{job_id}/batches", data=body)

    assert refused.status_code == 400
    assert refused.json() == [
        {
            "message": f"Failed to read request. Exceeded max size limit of {MAX_UPLOAD_BASE64}",
            "errorCode": "CLIENTINPUTERROR",
        }
    ]
    assert raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()["state"] == "Open"


def test_the_upload_limit_counts_the_base64_size(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    sb.bulk2.max_upload = 40  # 30 raw bytes are 40 in base64, 31 are 44
    fits, too_big = open_job_empty(sb, sf), open_job_empty(sb, sf)

    at_limit = raw(
        sb, sf, "PUT", f"jobs/ingest/{fits}/batches", data=b"Social_Post_Id__c\n" + b"y" * 12
    )
    over = raw(
        sb, sf, "PUT", f"jobs/ingest/{too_big}/batches", data=b"Social_Post_Id__c\n" + b"y" * 13
    )

    assert at_limit.status_code == 201
    assert over.status_code == 400 and over.json()[0]["errorCode"] == "CLIENTINPUTERROR"


def open_job_empty(sb: SalesforceSandbox, sf: Any) -> str:
    body = {"object": "Task", "operation": "upsert", "externalIdFieldName": EXT}
    job_id: str = raw(sb, sf, "POST", "jobs/ingest", json=body).json()["id"]
    return job_id


def test_internal_batches_of_ten_thousand_spend_the_daily_batch_allocation(
    sb: SalesforceSandbox,
) -> None:
    sf = login(sb)
    sb.bulk2.batch_limit = 1
    upload = "Social_Post_Id__c\n" + "".join(f"d{i}\n" for i in range(10_001))
    job_id = open_job(sb, sf, upload)

    state(sb, sf, job_id, "UploadComplete")

    info = raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "ExceededQuota : Daily limit of Bulk API batches exceeded"
    assert info["numberRecordsProcessed"] == 10_000
    assert sf.bulk2.Task.get_unprocessed_records(job_id) == "Social_Post_Id__c\nd10000\n"
    assert sb.bulk2.batches_used == 1
    limits = sf.limits()["DailyBulkApiBatches"]
    assert (limits["Max"], limits["Remaining"]) == (1, 0)
    with pytest.raises(SalesforceOperationError, match="ExceededQuota"):
        sf.bulk2.Task.upsert(records=[{EXT: "late"}], external_id_field=EXT, wait=0)
    assert task_by_ext(sf, "late") is None
    # the allocation is a rolling 24 hours
    now = sb.clock()
    sb.clock = lambda: now + timedelta(hours=24, seconds=1)
    assert sb.bulk2.batches_used == 0
    [result] = sf.bulk2.Task.upsert(records=[{EXT: "late"}], external_id_field=EXT, wait=0)
    assert result["numberRecordsProcessed"] == 1


def test_a_503_on_upload_fails_the_request_and_the_client_aborts_its_job(
    sb: SalesforceSandbox,
) -> None:
    sf = login(sb)
    sb.inject("status", endpoint="bulk2_upload", status=503)

    with pytest.raises(SalesforceError) as err:
        sf.bulk2.Task.upsert(records=[{EXT: "f1"}], external_id_field=EXT, wait=0)

    assert err.value.status == 503
    [job] = sb.bulk2.jobs.values()
    assert job.state == "Aborted"  # simple-salesforce aborts the Open job it leaves behind
    assert task_by_ext(sf, "f1") is None


def test_faults_reach_the_poll_like_any_data_endpoint(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    job_id = open_job(sb, sf, "Social_Post_Id__c\ng1\n")
    state(sb, sf, job_id, "UploadComplete")
    sb.inject("request_limit", endpoint="bulk2_job")
    sb.inject("status", endpoint="bulk2_job", status=503)

    limited = raw(sb, sf, "GET", f"jobs/ingest/{job_id}")
    unavailable = raw(sb, sf, "GET", f"jobs/ingest/{job_id}")
    fine = raw(sb, sf, "GET", f"jobs/ingest/{job_id}")

    assert limited.status_code == 403 and limited.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert unavailable.status_code == 503
    assert fine.json()["state"] == "JobComplete"


@pytest.mark.parametrize(("setting", "data_ending"), [("LF", "\r\n"), ("CRLF", "\n")])
def test_a_line_ending_other_than_the_jobs_fails_it(
    sb: SalesforceSandbox, setting: str, data_ending: str
) -> None:
    sf = login(sb)
    upload = data_ending.join(["Social_Post_Id__c,Subject", "l1,x", ""])
    job_id = open_job(sb, sf, upload, lineEnding=setting)
    state(sb, sf, job_id, "UploadComplete")

    info = raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()

    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        "ClientInputError : LineEnding is invalid on user data. "
        f"Current LineEnding setting is {setting}"
    )
    assert task_by_ext(sf, "l1") is None


def test_a_crlf_job_keeps_a_line_break_inside_a_quoted_cell(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    job_id = open_job(sb, sf, 'Social_Post_Id__c,Subject\r\nm1,"a\nb"\r\n', lineEnding="CRLF")
    state(sb, sf, job_id, "UploadComplete")

    saved = task_by_ext(sf, "m1")

    assert saved is not None and saved["Subject"] == "a\nb"


def test_unknown_jobs_and_a_finished_job_deleted(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    job_id = open_job(sb, sf, "Social_Post_Id__c\nz1\n")
    open_delete = raw(sb, sf, "DELETE", f"jobs/ingest/{job_id}")
    state(sb, sf, job_id, "UploadComplete")

    deleted = raw(sb, sf, "DELETE", f"jobs/ingest/{job_id}")
    gone = raw(sb, sf, "GET", f"jobs/ingest/{job_id}")

    assert open_delete.status_code == 400
    assert deleted.status_code == 204
    assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "NOT_FOUND"


def test_an_upsert_job_needs_an_external_id_field(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    body = {"object": "Task", "operation": "upsert", "externalIdFieldName": "Subject"}

    refused = raw(sb, sf, "POST", "jobs/ingest", json=body)
    unknown = raw(sb, sf, "POST", "jobs/ingest", json={"object": "Nope", "operation": "insert"})

    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALIDJOB"
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALIDENTITY"


def test_update_and_delete_jobs_name_their_records_by_id(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    kept = sf.Task.create({EXT: "k1", "Subject": "old"})["id"]
    dropped = sf.Task.create({EXT: "k2", "Subject": "old"})["id"]
    missing = make_id("00T", 999_999)

    [updated] = sf.bulk2.Task.update(
        records=[{"Id": kept, "Subject": "new"}, {"Id": missing, "Subject": "x"}], wait=0
    )
    [deleted] = sf.bulk2.Task.delete(records=[{"Id": dropped}], wait=0)

    [ok] = rows(sf.bulk2.Task.get_successful_records(updated["job_id"]))
    assert (ok["sf__Id"], ok["sf__Created"]) == (kept, "false")
    [failed] = rows(sf.bulk2.Task.get_failed_records(updated["job_id"]))
    assert failed["sf__Id"] == missing  # a failed update names the record it meant
    assert deleted["numberRecordsProcessed"] == 1 and deleted["numberRecordsFailed"] == 0
    assert task_by_ext(sf, "k2") is None
    kept_now = task_by_ext(sf, "k1")
    assert kept_now is not None and kept_now["Subject"] == "new"


def test_a_failed_upsert_of_an_existing_record_names_it(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    existing = sf.Task.create({EXT: "e1", "Subject": "x"})["id"]

    [result] = sf.bulk2.Task.upsert(
        records=[{EXT: "e1", "WhoId": make_id("001", 1)}], external_id_field=EXT, wait=0
    )

    [failed] = rows(sf.bulk2.Task.get_failed_records(result["job_id"]))
    assert failed["sf__Id"] == existing


def test_the_daily_record_allocation_fails_a_job_that_would_pass_it(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    sb.bulk2.record_limit = 2
    job_id = open_job(sb, sf, "Social_Post_Id__c\nr1\nr2\nr3\n")

    state(sb, sf, job_id, "UploadComplete")

    info = raw(sb, sf, "GET", f"jobs/ingest/{job_id}").json()
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "ExceededQuota : Daily limit of Bulk API records exceeded"
    assert len(rows(sf.bulk2.Task.get_unprocessed_records(job_id))) == 3
    assert (sb.bulk2.records_used, sb.bulk2.batches_used) == (0, 0)


def test_a_field_over_32000_characters_fails_its_record(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    job_id = open_job(
        sb, sf, f"Social_Post_Id__c,Description\nt1,{'x' * 32_001}\nt2,{'x' * 32_000}\n"
    )

    state(sb, sf, job_id, "UploadComplete")

    [failed] = rows(sf.bulk2.Task.get_failed_records(job_id))
    assert failed[EXT] == "t1"
    assert failed["sf__Error"].startswith("STRING_TOO_LONG:Description:")
    assert task_by_ext(sf, "t1") is None and task_by_ext(sf, "t2") is not None
