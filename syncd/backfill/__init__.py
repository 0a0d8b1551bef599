"""Admin backfills: read a past window of a brand account's streams into the CRM.

:mod:`.plan` says which source, account and endpoints a window is read from, and
:mod:`.estimate` what that will cost, before anything is read; :mod:`.runner` works
a job one request at a time, storing each page with the job's position in one transaction,
so an interrupted job resumes from its last stored page. The jobs live in
:mod:`syncd.state.backfills`; the endpoints are the source's (:class:`~syncd.contracts.Backfiller`).
"""
