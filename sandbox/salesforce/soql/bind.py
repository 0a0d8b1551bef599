"""Binding a parsed SOQL query to an org: canonical names and Salesforce's type checks.

Real Salesforce answers in the API names' own spelling whatever case the query used, and
refuses a filter value of the wrong type (a quoted date, an unquoted text) before running
anything. Doing the same here makes a connector bug fail against the sandbox as it would
against a real org.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from sandbox.salesforce.schema import normalize_id
from sandbox.salesforce.soql.query import (
    BoolOp,
    Condition,
    FieldRef,
    Literal,
    Not,
    OrderItem,
    Query,
    SoqlError,
    located,
)

_TEXT = {"string", "combobox", "picklist", "email", "phone", "url", "textarea"}
_KINDS: dict[str, tuple[set[str], str, bool]] = {  # type → (literal kinds, name, quoted)
    **{t: ({"string"}, "string", True) for t in _TEXT},
    "id": ({"string"}, "id", True),
    "reference": ({"string"}, "id", True),
    "date": ({"date", "range"}, "date", False),
    "datetime": ({"datetime", "range"}, "dateTime", False),
    "boolean": ({"boolean"}, "boolean", False),
    "double": ({"number"}, "double", False),
    "currency": ({"number"}, "currency", False),
}


def _check_literal(text: str, field: str, type_: str | None, lit: Literal) -> None:
    if type_ is None or lit.kind == "null" or type_ not in _KINDS:
        return
    kinds, name, quoted = _KINDS[type_]
    if lit.kind not in kinds:
        how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        raise SoqlError(
            "INVALID_FIELD",
            located(
                text,
                lit.pos,
                f"value of filter criterion for field '{field}' must be of type {name} and {how}",
            ),
        )
    if name == "id" and normalize_id(lit.value) is None:
        raise SoqlError(
            "INVALID_QUERY_FILTER_OPERATOR",
            located(text, lit.pos, f"invalid ID field: {lit.value}"),
        )


class Schema(Protocol):
    def object_name(self, name: str) -> str | None: ...  # canonical name, case-insensitive

    def field_name(self, sobject: str, name: str) -> str | None: ...

    def field_type(self, sobject: str, field: str) -> str: ...


def _unknown_field(query: Query, ref: FieldRef, sobject: str) -> SoqlError:
    if "." in ref.name:
        text = (
            f"Didn't understand relationship '{ref.name.split('.')[0]}' in field path. "
            "If you are attempting to use a custom relationship, be sure to append the "
            "'__r' after the custom relationship name. Please reference your WSDL or the "
            "describe call for the appropriate names."
        )
    else:
        text = (
            f"No such column '{ref.name}' on entity '{sobject}'. If you are attempting "
            "to use a custom field, be sure to append the '__c' after the custom field "
            "name. Please reference your WSDL or the describe call for the appropriate names."
        )
    return SoqlError("INVALID_FIELD", located(query.text, ref.pos, text))


def bind(query: Query, schema: Schema) -> Query:
    """Resolve object and field names to their canonical spelling, as the real API does."""
    sobject = schema.object_name(query.sobject)
    if sobject is None:
        raise SoqlError(
            "INVALID_TYPE",
            located(
                query.text,
                query.sobject_pos,
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            ),
        )

    def resolve(ref: FieldRef) -> FieldRef:
        name = schema.field_name(sobject, ref.name)  # "Account.Name": a relationship path
        if name is None:
            raise _unknown_field(query, ref, sobject)
        return FieldRef(name, ref.pos)

    def bind_cond(cond: Condition) -> Condition:
        if isinstance(cond, Not):
            return Not(bind_cond(cond.operand))
        if isinstance(cond, BoolOp):
            return BoolOp(cond.op, tuple(bind_cond(c) for c in cond.operands))
        name = resolve(FieldRef(cond.field, cond.pos)).name
        # Custom fields' types are only guessed from stored values, so only standard
        # fields get Salesforce's type checks.
        type_ = None if name.endswith("__c") else schema.field_type(sobject, name)
        if type_ == "textarea":
            raise SoqlError(
                "INVALID_FIELD",
                located(
                    query.text, cond.pos, f"field '{name}' can not be filtered in a query call"
                ),
            )
        for lit in cond.values:
            _check_literal(query.text, name, type_, lit)
        return replace(cond, field=name, is_id=type_ in ("id", "reference"))

    def order_item(item: OrderItem) -> OrderItem:
        ref = resolve(item.field)
        type_ = None if ref.name.endswith("__c") else schema.field_type(sobject, ref.name)
        if type_ == "textarea":
            raise SoqlError(
                "INVALID_FIELD",
                located(
                    query.text, ref.pos, f"field '{ref.name}' can not be sorted in a query call"
                ),
            )
        return replace(item, field=ref, is_id=type_ in ("id", "reference"))

    return replace(
        query,
        sobject=sobject,
        fields=tuple(resolve(f) for f in query.fields),
        where=bind_cond(query.where) if query.where else None,
        order_by=tuple(order_item(o) for o in query.order_by),
    )
