"""``syncd check`` for Salesforce: log in, run one query, and hold each object's describe
against the fields syncd needs (:mod:`connectors.salesforce.setup.fields`).

The verification (:func:`verify_object`) is pure, over describe answers, so it is tested
without an org. :class:`SalesforceCheck` asks through the CRM's
:class:`~connectors.salesforce.session.SalesforceSession` (error mapping, secrets scrubbed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.setup.fields import SOCIAL_OBJECTS, FieldSpec, ObjectSpec, objects
from syncd.contracts import CheckRow
from syncd.errors import AuthError, ExternalError, NotFound, RateLimited, TransientError

__all__ = ["SalesforceCheck", "verify_field", "verify_object"]

# Field-level security hides a field from describe altogether, so "missing" may mean "hidden".
_FLS = "give the integration user Edit access to it, e.g. in a permission set"


def _ticked(field: Mapping[str, Any], key: str) -> bool:
    return field.get(key) is True


def verify_field(spec: FieldSpec, field: Mapping[str, Any] | None) -> CheckRow:
    """One row: is the described ``field`` (None: describe does not list it) usable as
    ``spec``? Every problem is named, with the fix for each."""
    if field is None and not spec.needed:
        return CheckRow(spec.path, True, f"absent; optional: {spec.purpose.lower()}")
    if field is None:
        if spec.custom:
            fix = f"create {spec.path}: {spec.setup()} (if it exists: {_FLS})"
        elif spec.kind == "Org":
            fix = (
                f"check {spec.key}: name a field the org has (if it exists: give the "
                "integration user Read access to it, e.g. in a permission set)"
            )
        elif spec.key == "[crm] history_object":
            fix = f"point {spec.key} at an object with the standard field {spec.name} (Task)"
        else:  # a standard field of a standard object: hidden by field-level security
            fix = f"give the integration user access to {spec.path} (field-level security)"
        return CheckRow(spec.path, False, f"no field {spec.name} on {spec.sobject}", fix)
    problems: list[str] = []
    fixes: list[str] = []
    type_ = str(field.get("type") or "")
    raw_length = field.get("length")
    length = raw_length if isinstance(raw_length, int) else 0
    if type_ not in spec.accepts:
        problems.append(f"is {type_ or 'of no type'}, not {' or '.join(sorted(spec.accepts))}")
        fixes.append(
            f"replace it with {spec.setup()}, or point {spec.key} at such a field"
            if spec.custom
            else f"point {spec.key} at a standard object with a usable {spec.name}"
        )
    elif type_ in ("string", "textarea") and 0 < length < spec.min_length:
        problems.append(f"holds {length} characters, syncd needs {spec.min_length} or more")
        fixes.append(f"raise its length to {spec.length}")
    wanted = [("externalId", "External ID", spec.external_id), ("unique", "Unique", spec.unique)]
    missing = [label for key, label, want in wanted if want and not _ticked(field, key)]
    if missing:
        problems.append(f"is not {' and '.join(missing)}")
        fixes.append("tick " + " and ".join(missing).replace("Unique", f"Unique ({spec.case})"))
    elif spec.case_sensitive and field.get("caseSensitive") is False:
        # Two keys differing by case alone would be taken for one record.
        problems.append("is Unique case-insensitively, syncd's keys differ by case")
        fixes.append('make it Unique case-sensitively (treat "ABC" and "abc" as different values)')
    if spec.filterable and field.get("filterable") is False:
        problems.append("cannot be filtered in SOQL (a long text area?)")
        fixes.append(f"replace it with {spec.setup()}")
    if spec.written and not (_ticked(field, "createable") and _ticked(field, "updateable")):
        problems.append("is read-only for the integration user")
        fixes.append(_FLS)
    problems += _picklist_problems(spec, field, fixes)
    if problems:
        verb = "edit" if spec.custom else "fix"
        return CheckRow(
            spec.path, False, "; ".join(problems), f"{verb} {spec.path}: " + "; ".join(fixes)
        )
    shown = f"{type_}({length})" if type_ in ("string", "textarea") and length else type_
    flags = [label for key, label, _ in wanted if _ticked(field, key)]
    return CheckRow(spec.path, True, ", ".join([shown, *flags]))


def _picklist_problems(spec: FieldSpec, field: Mapping[str, Any], fixes: list[str]) -> list[str]:
    """Values syncd writes that a picklist lacks (a describe without values: not checked)."""
    if field.get("type") != "picklist" or not spec.values:
        return []
    listed = [v for v in field.get("picklistValues") or [] if isinstance(v, Mapping)]
    if not listed:
        return []
    active = {str(v.get("value")) for v in listed if v.get("active", True)}
    absent = [v for v in spec.values if v not in active]
    if not absent:
        return []
    fixes.append(f"add the value(s) {', '.join(absent)}")
    return [f"has no active value {', '.join(absent)}"]


def verify_object(spec: ObjectSpec, describe: Mapping[str, Any] | ExternalError) -> list[CheckRow]:
    """Rows for one object: the object itself, then each field syncd needs on it."""
    if isinstance(describe, NotFound) and spec.optional:
        detail = (
            f"no object {spec.name}: the org does not use Salesforce messaging (or the "
            "integration user cannot read it); Facebook and Instagram authors are matched "
            "by the identity fields only"
        )
        return [CheckRow(spec.name, True, detail)]
    if isinstance(describe, NotFound) and spec.name in SOCIAL_OBJECTS:
        return [_no_social_object(spec)]
    if isinstance(describe, ExternalError):
        if isinstance(describe, NotFound):
            detail = (
                f"no object {spec.name} ({spec.purpose}), or the integration user cannot read it"
            )
        else:
            detail = f"describe {spec.name} failed: {describe}"
        fix = f"check {spec.key}, and give the integration user access to {spec.name}"
        return [CheckRow(spec.name, False, detail, fix)]
    needs = ["queryable", *(["createable", "updateable"] if spec.writes else [])]
    lacking = [n for n in needs if describe.get(n) is False]
    if lacking:
        rows = [
            CheckRow(
                spec.name,
                False,
                f"the integration user's access to {spec.name} is not {', '.join(lacking)}",
                f"grant Read{', Create, Edit' if spec.writes else ''} on {spec.name} "
                "to the integration user (a permission set)",
            )
        ]
    else:
        rows = [CheckRow(spec.name, True, spec.purpose)]
    by_name = {
        str(f.get("name", "")).lower(): f
        for f in describe.get("fields") or []
        if isinstance(f, Mapping)
    }
    rows += [verify_field(f, by_name.get(f.name.lower())) for f in spec.fields]
    return rows


def _no_social_object(spec: ObjectSpec) -> CheckRow:
    """An org without Social Customer Service knows no SocialPost or SocialPersona (SOQL:
    INVALID_TYPE, describe: NOT_FOUND); what to enable, or what to configure instead."""
    detail = (
        f"no object {spec.name} ({spec.purpose}): the org does not have Social Customer Service, "
        "or the integration user cannot read it"
    )
    instead = (
        'set [crm] history = ["task"]' if spec.key == "[crm] history" else
        "set [crm] social_personas = false"
    )  # fmt: skip
    fix = (
        "turn on Social Customer Service (Setup > Social Customer Service; an org that does "
        'not offer it needs the "Social Objects" org permission from Salesforce Support), '
        f"grant Read{', Create, Edit' if spec.writes else ''} on Social Posts and Social "
        f"Personas to the integration user (a permission set), or {instead}"
    )
    return CheckRow(spec.name, False, detail, fix)


def _login_fix(exc: ExternalError, settings: SalesforceSettings) -> str:
    if isinstance(exc, AuthError):
        keys = {
            "password": "[crm] username, password and security_token",
            "session": "[crm] instance_url and session_id",
            "jwt": "[crm] username, consumer_key and private_key_file",
        }[settings.auth_method]
        return f"check {keys}, and that the user may use the API"
    if isinstance(exc, TransientError):
        return f"check [crm] login_url ({settings.login_url}) and that this host can reach it"
    if isinstance(exc, RateLimited):
        return "wait for the org's API allocation to free up (a rolling 24 h window)"
    return "see the message; check the [crm] settings"


class SalesforceCheck:
    """``check`` of the Crm contract."""

    def __init__(self, session: SalesforceSession, settings: SalesforceSettings) -> None:
        self.session = session
        self.settings = settings

    def check(self) -> list[CheckRow]:
        """Login, one ``LIMIT 1`` query, then one describe per object syncd uses. A login
        that fails ends the check there: nothing else can be asked."""
        s, budget = self.settings, Budget()
        who = s.username or s.instance_url or "the session"
        try:
            self.session.run("login", lambda sf: None, budget)
        except ExternalError as exc:
            return [CheckRow("login", False, str(exc), _login_fix(exc, s))]
        rows = [CheckRow("login", True, f"{who} at {s.login_url}")]
        soql = f"SELECT Id FROM {s.person_objects[0]} LIMIT 1"
        try:
            self.session.run("query", lambda sf: sf.query(soql), budget)
            used = self.session.api_usage
            usage = f"; API usage {used[0]:,}/{used[1]:,}" if used else ""
            rows.append(CheckRow("query", True, f"{soql} answered{usage}"))
        except ExternalError as exc:
            rows.append(CheckRow("query", False, str(exc), _login_fix(exc, s)))
        for spec in objects(s):
            answer: Mapping[str, Any] | ExternalError
            try:
                path = f"sobjects/{spec.name}/describe"
                answer = self.session.restful(f"describe {spec.name}", path, budget)
            except ExternalError as exc:
                answer = exc
            rows += verify_object(spec, answer)
        return rows
