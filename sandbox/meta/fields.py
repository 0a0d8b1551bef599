"""The Graph API's ``fields`` parameter: field expansion with modifiers and nested fields.

``id,message,from{id,name},comments.filter(stream).summary(true).limit(0){from,message}`` and
``reactions.type(LIKE).limit(0).summary(total_count).as(like)`` (both recorded in the ``next``
link of python-facebook's ``feeds_default_fields_p1.json``) parse into a list of
:class:`FieldSpec`. A modifier is ``.name(argument)``; ``as(alias)`` renames the answer's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class FieldSyntaxError(ValueError):
    """The ``fields`` text does not parse (Graph answers such a request with code 100)."""


@dataclass
class FieldSpec:
    name: str
    modifiers: dict[str, str] = field(default_factory=dict)
    sub: list[FieldSpec] | None = None  # the ``{...}`` part, when given
    sub_text: str = ""  # the ``{...}`` part as written, for the paging links of an edge

    @property
    def key(self) -> str:
        """The answer's key: the ``as(...)`` alias or the name."""
        return self.modifiers.get("as", self.name)


def parse_fields(text: str) -> list[FieldSpec]:
    specs, end = _parse_list(text, 0, top=True)
    if end != len(text):
        raise FieldSyntaxError(f"unexpected {text[end]!r} at {end} in fields")
    return specs


def _parse_list(text: str, i: int, *, top: bool) -> tuple[list[FieldSpec], int]:
    specs: list[FieldSpec] = []
    while i < len(text):
        if text[i] in " ,":
            i += 1
            continue
        if text[i] == "}":
            if top:
                raise FieldSyntaxError(f"unbalanced '}}' at {i} in fields")
            return specs, i
        spec, i = _parse_field(text, i)
        specs.append(spec)
    if not top:
        raise FieldSyntaxError("unclosed '{' in fields")
    return specs, i


def _name(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and (text[i].isalnum() or text[i] in "_"):
        i += 1
    if i == start:
        raise FieldSyntaxError(f"a field name expected at {start} in fields")
    return text[start:i], i


def _parse_field(text: str, i: int) -> tuple[FieldSpec, int]:
    name, i = _name(text, i)
    spec = FieldSpec(name)
    while i < len(text) and text[i] == ".":
        modifier, i = _name(text, i + 1)
        if i >= len(text) or text[i] != "(":
            raise FieldSyntaxError(f"'(' expected after .{modifier} in fields")
        close = text.find(")", i)
        if close < 0:
            raise FieldSyntaxError(f"unclosed .{modifier}( in fields")
        spec.modifiers[modifier] = text[i + 1 : close]
        i = close + 1
    if i < len(text) and text[i] == "{":
        start = i + 1
        spec.sub, i = _parse_list(text, start, top=False)
        spec.sub_text = text[start:i]
        i += 1  # the '}'
    return spec, i
