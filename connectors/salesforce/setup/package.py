"""A Metadata API package that creates the custom fields syncd needs (``syncd salesforce
fields``), derived from the configured names (:mod:`connectors.salesforce.setup.fields`).

Metadata API format (``sf project deploy start --metadata-dir DIR``, or Workbench: zip the
directory): ``package.xml``, one ``objects/<Object>.object`` per object holding only the new
``<fields>``, and a permission set granting the integration user edit access to them, since a
deployed field is visible to no one and describe would not list it.

Custom fields of Task (and Event) are Activity fields in the Metadata API: the package puts
``Task.X__c`` on ``Activity``.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.setup.fields import FieldSpec, specs

__all__ = ["PERMISSION_SET", "package", "package_object"]

PERMISSION_SET = "Syncd_Integration"
_NS = "http://soap.sforce.com/2006/04/metadata"
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
_ACTIVITIES = ("Task", "Event")
_LABEL_MAX = 40  # Setup's limit on a field label


def package_object(sobject: str) -> str:
    """Where a field of ``sobject`` is defined in the Metadata API."""
    return "Activity" if sobject in _ACTIVITIES else sobject


def _label(name: str) -> str:
    words = name.removesuffix("__c").replace("_", " ")
    return words[:_LABEL_MAX].strip()


def _tag(name: str, value: str | bool | int, indent: int) -> str:
    text = str(value).lower() if isinstance(value, bool) else escape(str(value))
    return f"{' ' * indent}<{name}>{text}</{name}>"


def _field(spec: FieldSpec) -> str:
    lines = [
        "    <fields>",
        _tag("fullName", spec.name, 8),
        _tag("label", _label(spec.name), 8),
        _tag("description", f"syncd: {spec.purpose}", 8),
        _tag("externalId", spec.external_id, 8),
        _tag("required", False, 8),
    ]
    if spec.kind == "Text":
        lines += [_tag("type", "Text", 8), _tag("length", spec.length, 8)]
        lines.append(_tag("unique", spec.unique, 8))
        if spec.unique:
            # The Task's x:<id> keys compare case-insensitively, as they always have; the
            # social objects' keys hold case-meaningful ids (Bluesky rkeys, Mastodon URLs).
            lines.append(_tag("caseSensitive", spec.case_sensitive, 8))
    elif spec.kind == "Url":
        lines.append(_tag("type", "Url", 8))
    else:
        lines.append(_tag("type", "Picklist", 8))
        lines += [
            "        <valueSet>",
            _tag("restricted", True, 12),
            "            <valueSetDefinition>",
        ]
        lines.append(_tag("sorted", False, 16))
        for value in spec.values:
            lines += [
                "                <value>",
                _tag("fullName", value, 20),
                _tag("default", False, 20),
                _tag("label", value, 20),
                "                </value>",
            ]
        lines += ["            </valueSetDefinition>", "        </valueSet>"]
    lines.append("    </fields>")
    return "\n".join(lines)


def _custom(settings: SalesforceSettings) -> dict[str, list[FieldSpec]]:
    """Custom fields by Metadata API object, each once (Contact and Lead may share names)."""
    out: dict[str, list[FieldSpec]] = {}
    for spec in specs(settings):
        if spec.custom:
            fields = out.setdefault(package_object(spec.sobject), [])
            if all(f.name.lower() != spec.name.lower() for f in fields):
                fields.append(spec)
    return out


def package(settings: SalesforceSettings) -> dict[str, str]:
    """The package's files, by path relative to its directory."""
    by_object = _custom(settings)
    files: dict[str, str] = {}
    for obj, fields in by_object.items():
        body = "\n".join(_field(f) for f in fields)
        files[f"objects/{obj}.object"] = (
            f'{_HEAD}<CustomObject xmlns="{_NS}">\n{body}\n</CustomObject>\n'
        )
    members = [f"{obj}.{f.name}" for obj, fields in by_object.items() for f in fields]
    grants = "\n".join(
        f"    <fieldPermissions>\n{_tag('editable', True, 8)}\n{_tag('field', m, 8)}\n"
        f"{_tag('readable', True, 8)}\n    </fieldPermissions>"
        for m in members
    )
    files[f"permissionsets/{PERMISSION_SET}.permissionset"] = (
        f'{_HEAD}<PermissionSet xmlns="{_NS}">\n'
        f"{_tag('description', 'syncd: edit access to the fields it reads and writes', 4)}\n"
        f"{grants}\n{_tag('hasActivationRequired', False, 4)}\n"
        f"{_tag('label', 'syncd integration', 4)}\n</PermissionSet>\n"
    )
    listed = "\n".join(_tag("members", m, 8) for m in members)
    files["package.xml"] = (
        f'{_HEAD}<Package xmlns="{_NS}">\n'
        f"    <types>\n{listed}\n{_tag('name', 'CustomField', 8)}\n    </types>\n"
        f"    <types>\n{_tag('members', PERMISSION_SET, 8)}\n{_tag('name', 'PermissionSet', 8)}\n"
        f"    </types>\n{_tag('version', settings.api_version, 4)}\n</Package>\n"
    )
    return files
