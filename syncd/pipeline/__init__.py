"""The flow of one interaction: poll a page into state, resolve its author, deliver it to the CRM.

``poll`` holds the Pipeline (one transaction per page with its cursor), ``history`` turns a stored
interaction into the CRM's history record, ``coordination`` runs the same pipeline under the job
locks several instances share.
"""
