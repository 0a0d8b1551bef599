"""Config problems in the config author's words: one line per problem, key path first.

pydantic's messages are rewritten into TOML terms (tables, lists, quotes), unknown keys get a
did-you-mean from the model's own field names, TOML syntax errors name the key on the broken
line, and nothing given to a secret field (or the userinfo of a URL) is ever echoed.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from syncd.contracts import (
    toml_kind,
)
from syncd.contracts.secrets import Secret
from syncd.contracts.text import did_you_mean

PLACEHOLDER = "CHANGE_ME"
PLACEHOLDER_MESSAGE = f"is still {PLACEHOLDER} from config.example.toml: set a real value"

Problems = list[tuple[str, str]]


def validate(model: type[BaseModel], data: dict[str, Any], where: str, problems: Problems) -> Any:
    # Strict, through JSON: TOML values are already typed, so "100" for an integer or true for
    # a count is a mistake to report, not to coerce; JSON mode still takes enum values as
    # strings. Dates have no JSON form; they are reported by _dates and pass here as text.
    try:
        return model.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        found: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = _locate(where, model, err["loc"])
            if err["type"] in _TAG_ERRORS:
                path, message = _tag_problem(err, loc)
                found.setdefault(path, []).append(message)
                continue
            message = _scrub(_message(err, loc), err.get("input"), secret=loc.secret)
            found.setdefault(loc.path, []).append(message)
        for path, messages in found.items():
            problems.extend((path, m) for m in _merge(messages))
        return None


@dataclass(frozen=True)
class _Loc:
    """Where a validation error sits: its key path, and what the model says about that key."""

    path: str
    siblings: tuple[str, ...]  # keys the enclosing table accepts (for did-you-mean)
    annotation: Any  # the key's declared type, or None where it cannot be followed
    secret: bool  # the key holds a secret reference: its input is never echoed


def _locate(prefix: str, model: type[BaseModel], loc: tuple[int | str, ...]) -> _Loc:
    """Follow an error's ``loc`` through the model's types, keeping only real keys and indexes
    (pydantic adds union-branch tags such as ``'int'`` or ``'function-plain[…]'``)."""
    path, tp, siblings = prefix, _unwrap(model), tuple[str, ...]()
    for part in loc:
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            siblings = tuple(tp.model_fields)
            field = tp.model_fields.get(part)
            tp = _unwrap(field.annotation) if field else None
            path = join(path, part)
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
            args = get_args(tp)
            tp = _unwrap(args[0]) if args else None
            path += f"[{part}]"
        elif origin is dict and isinstance(part, str):
            args = get_args(tp)
            tp = _unwrap(args[1]) if len(args) == 2 else None
            path = join(path, part)
        elif isinstance(part, int):
            tp, path = None, path + f"[{part}]"
        elif (branch := _branch(tp, part)) is not None:
            tp = branch  # the tagged union's member its tag (`type = "…"`) chose: not a key
        elif origin in (Union, types.UnionType) or part.startswith("function-") or "[" in part:
            tp = None  # a union branch or validator tag: not something the author wrote
        else:
            tp, path = None, join(path, part)
    secret = tp is Secret or bool(re.search(r"password|secret|token|session", path.lower()))
    return _Loc(path, siblings, tp, secret)


def _tags(model: Any, key: str | None = None) -> list[Any]:
    """The values a model's ``Literal`` fields (or its field ``key``) accept."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    fields = [f for name, f in model.model_fields.items() if key in (None, name)]
    return [
        v for f in fields if get_origin(f.annotation) is Literal for v in get_args(f.annotation)
    ]


def _branch(tp: Any, tag: object) -> Any:
    """The member of a tagged union (``Field(discriminator=…)``) that ``tag`` selects."""
    if get_origin(tp) not in (Union, types.UnionType) or not isinstance(tag, str):
        return None
    return next((member for member in get_args(tp) if tag in _tags(member)), None)


# A tagged union that could not pick a member: the problem is the tag's own key (`type`),
# which pydantic leaves out of the error's location.
_TAG_ERRORS = ("union_tag_not_found", "union_tag_invalid")


def _tag_problem(err: Any, loc: _Loc) -> tuple[str, str]:
    ctx: dict[str, Any] = err.get("ctx") or {}
    key = str(ctx.get("discriminator", "type")).strip("'\"")
    tags = [t for member in get_args(loc.annotation) for t in _tags(member, key)]
    listed = ", ".join(repr(t) for t in tags)
    if err["type"] == "union_tag_not_found":
        return join(loc.path, key), f"is required: one of {listed}"
    tag = ctx.get("tag")
    return join(loc.path, key), f"must be one of {listed}, not {_shown(tag)}" + did_you_mean(
        tag, tags
    )


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, …]`` → X, ``X | None`` → X; other unions are left as they are."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


# pydantic's type errors → what the author should have written, in TOML's terms.
_TYPE_ERRORS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dataclass_type": "a table",
}


def _message(err: Any, loc: _Loc) -> str:
    """pydantic's error → a message in the config author's terms."""
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    shown = "" if loc.secret else _shown(value)
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return unknown_key(err["loc"][-1], loc.siblings)
    if kind in _TYPE_ERRORS:
        wanted = _TYPE_ERRORS[kind]
        hint = ""
        if wanted in ("an integer", "a number") and isinstance(value, str):
            hint = " (numbers are written without quotes)"
        elif wanted == "a string" and isinstance(value, int | float) and not loc.secret:
            hint = " (put text in quotes)"
        elif wanted == "a list" and isinstance(value, str):
            hint = ' (write ["…"] even for one item)'
        return f"must be {wanted}, not {toml_kind(value)}{hint}"
    if kind in ("literal_error", "enum"):
        choices = _choices(loc.annotation)
        listed = ", ".join(repr(c) for c in choices) if choices else str(ctx.get("expected"))
        got = f", not {shown}" if shown else ""
        guess = did_you_mean(value, choices) if isinstance(value, str) and not loc.secret else ""
        return f"must be one of {listed}{got}{guess}"
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        if isinstance(value, list):
            return "must be a non-empty list" if least == 1 else f"needs at least {least} items"
        return "must not be empty" if least == 1 else f"needs at least {least} characters"
    if kind in ("too_long", "string_too_long"):
        most = ctx.get("max_length")
        if isinstance(value, list):
            return f"has too many items (at most {most})"
        return f"is too long (at most {most} characters)"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}" + (f", not {shown}" if shown else "")
    if kind == "string_pattern_mismatch":
        return f"does not have the expected form (pattern {ctx.get('pattern')})"
    if kind == "path_not_file":
        return "must name an existing file"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg.replace("Input should be", "must be")


def _merge(messages: list[str]) -> list[str]:
    """Union branches fail one by one ("must be an integer", "must be a string"): one line."""
    if len(messages) > 1 and all(m.startswith("must be ") for m in messages):
        parts = [m.removeprefix("must be ").split(", not ")[0] for m in messages]
        return ["must be " + " or ".join(dict.fromkeys(parts))]
    return list(dict.fromkeys(messages))


def _choices(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [m.value for m in annotation]
    return []


def unknown_key(
    key: Any, known: tuple[str, ...], *, sections: Mapping[str, type[BaseModel]] | None = None
) -> str:
    if sections is not None:
        # A key written above the table it belongs to lands at the top level.
        homes = [name for name, model in sections.items() if key in model.model_fields]
        if homes:
            return f"unknown key at the top level; did you mean it in [{homes[0]}]?"
    guess = did_you_mean(key, known)
    if guess:
        return "unknown key" + guess
    if 0 < len(known) <= 8:
        return "unknown key (known: " + ", ".join(known) + ")"
    return "unknown key"


_QUOTE_LIMIT = 60
# The whole userinfo goes: a token is often the user part alone (https://TOKEN@host).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/'\"]*@")


def _scrub(message: str, value: Any, *, secret: bool) -> str:
    """Never echo a secret (what a secret key was given, a password inside a URL), and shorten
    a huge input a validator echoed, so the rest of its line stays readable."""
    if isinstance(value, str) and value.strip():
        if secret:
            # Quoted, as validators echo with !r; bare only when long enough not to blank out
            # ordinary words of the message ("a" in "must be a …").
            message = message.replace(repr(value), "'***'").replace(f'"{value}"', '"***"')
            if len(value) >= 8:
                message = message.replace(value, "***")
        elif len(value) > _QUOTE_LIMIT:
            short = value[: _QUOTE_LIMIT - 1] + "…"
            message = message.replace(repr(value), repr(short)).replace(value, short)
    return _URL_USERINFO.sub(r"\1***@", message)


def _shown(value: Any) -> str:
    """A short rendering of what the author wrote, for non-secret keys only."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        text = " ".join(value.split())
        return repr(text if len(text) <= 40 else text[:39] + "…")
    return ""


def join(path: str, key: str) -> str:
    # Keys TOML needs quotes for are shown quoted, so the path can be pasted back.
    part = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def placeholders(value: Any, where: str) -> Problems:
    """Values copied from config.example.toml and never filled in refuse to start."""
    if isinstance(value, str):
        return [(where, PLACEHOLDER_MESSAGE)] if PLACEHOLDER in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in placeholders(v, join(where, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in placeholders(v, f"{where}[{i}]")]
    return []


_DATE_MESSAGE = "is a TOML date/time, which no setting takes (put text in quotes)"


def dates(value: Any, where: str) -> Problems:
    """No setting is a date: an unquoted ``2024-01-01`` is text that lost its quotes."""
    if isinstance(value, datetime | date | time):
        return [(where, _DATE_MESSAGE)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in dates(v, join(where, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in dates(v, f"{where}[{i}]")]
    return []


def tidy(problems: Problems, placeholders: Problems, raw: dict[str, Any]) -> Problems:
    """Keep the one line that explains each key; order problems as the keys appear in the file.

    An unknown key hides whatever else is wrong with its value (the key is the mistake); a
    placeholder hides its value's other failures; a date is only reported if nothing else is.
    """

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith((top + ".", top + "["))

    unknown = {p for p, m in problems if m.startswith("unknown key")}
    marked = {p for p, _ in placeholders}
    paths = [p for p, _ in problems]

    def explains(p: str, m: str) -> bool:
        if m.startswith("unknown key"):
            return True
        if any(under(p, u) for u in unknown):
            return False
        if (p, m) not in placeholders and any(under(p, t) for t in marked):
            return False
        return m != _DATE_MESSAGE or paths.count(p) == 1

    kept = [(p, m) for p, m in dict.fromkeys(problems) if explains(p, m)]
    order: dict[str, int] = {}

    def walk(value: Any, where: str) -> None:
        order.setdefault(where, len(order))
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, join(where, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(raw, "")

    def position(path: str) -> int:
        # A missing key sorts with its table; a missing table at the end.
        while path and path not in order:
            path = path[: max(path.rfind("."), path.rfind("["), 0)]
        return order.get(path, len(order)) if path else len(order)

    return sorted(kept, key=lambda pm: position(pm[0]))


def toml_syntax(text: str, exc: tomllib.TOMLDecodeError) -> tuple[str, str]:
    """tomllib's message → (the key on the failing line if one is found, a one-line message
    with the line made explicit). The line itself is never shown: it may be a secret pasted
    without quotes."""
    message = str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    lines = text.splitlines()
    if m:
        line = int(m.group(1))
        where = f"line {line}, column {m.group(2)}"
    else:  # "(at end of document)": an unterminated value, reported at the last line
        line = len(lines) or 1
        where = f"line {line} (end of file)"
    reason = re.sub(r"\s*\(at [^()]*\)$", "", message)
    return _key_on_line(lines, line), f"not valid TOML at {where}: {reason}"


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-]+|\"[^\"]*\"|'[^']*')\s*=")


def _key_on_line(lines: list[str], line: int) -> str:
    """The key path a line of TOML sets, found by reading the headers above it (a best guess:
    enough to point at the key, not a TOML parser)."""
    table, counts = "", dict[str, int]()
    for text in lines[: line - 1]:
        if h := _HEADER.match(text):
            table = _table_path(h.group(1), h.group(2), counts)
    if not 0 < line <= len(lines):
        return ""
    current = lines[line - 1]
    if h := _HEADER.match(current):
        return _table_path(h.group(1), h.group(2), counts)
    if k := _KEY.match(current):
        return f"{table}.{k.group(1).strip()}" if table else k.group(1).strip()
    return ""


def _table_path(bracket: str, name: str, counts: dict[str, int]) -> str:
    if bracket == "[[":  # an array of tables: the n-th header is element n
        counts[name] = counts.get(name, -1) + 1
        return f"{name}[{counts[name]}]"
    return name
