"""A real subset of SOQL for the Salesforce stand-in: tokenizer and parser.

Supported: ``SELECT f, … | COUNT() FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS
FIRST|LAST], …] [LIMIT n] [OFFSET n]`` with ``= != <> < > <= >= IN, NOT IN, LIKE, AND, OR,
NOT`` and parentheses; string, number, boolean, null, date, datetime and relative date
literals (TODAY, LAST_N_DAYS:n …). Errors carry the real error codes and the real
``ERROR at Row:r:Column:c`` layout, because syncd's error classification reads them.

The parser is strict where Salesforce is strict: mixing AND and OR without parentheses is
rejected, string escapes other than SOQL's are rejected. That is what makes it useful for
catching SOQL injection: a value escaped the way real SOQL requires stays one literal here.
Binding to an org's schema is :mod:`sandbox.salesforce.soql.bind`, evaluation
:mod:`sandbox.salesforce.soql.evaluate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any


class SoqlError(Exception):
    """A query the real API would refuse; ``error_code`` is its errorCode."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def located(query: str, pos: int, text: str) -> str:
    """Salesforce's error layout: the offending line, a caret, the row and column."""
    start = query.rfind("\n", 0, pos) + 1
    end = query.find("\n", pos)
    line = query[start : end if end >= 0 else len(query)]
    row, col = query.count("\n", 0, pos) + 1, pos - start + 1
    return f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{text}"


@dataclass(frozen=True)
class Literal:
    kind: str  # string | number | boolean | null | date | datetime | range
    value: Any
    pos: int
    like: re.Pattern[str] | None = None  # set on the operand of LIKE


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str  # = != < > <= >= IN NOT IN LIKE
    values: tuple[Literal, ...]  # one value, or the IN list
    pos: int
    is_id: bool = False  # set by bind(): compare as record ids, not as text


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    operands: tuple[Condition, ...]


Condition = Comparison | Not | BoolOp


@dataclass(frozen=True)
class FieldRef:
    name: str
    pos: int


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_last: bool = False
    is_id: bool = False  # set by bind(): sort as record ids, the way they compare


@dataclass(frozen=True)
class Query:
    text: str
    fields: tuple[FieldRef, ...]  # empty for COUNT()
    sobject: str
    sobject_pos: int
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None

    @property
    def count_only(self) -> bool:
        return not self.fields


# -- tokens -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # word string number date datetime op punct eof
    text: str
    pos: int
    value: Any = None
    like: str = ""  # a string literal as a regex, for when it turns out to be a LIKE operand


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(Z|[+-]\d{2}:\d{2})"
)
_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?![\dT])")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?")
_OP_RE = re.compile(r"!=|<>|<=|>=|=|<|>")


def _string(query: str, start: int) -> tuple[_Token, int]:
    i = start + 1
    chars: list[str] = []
    pattern: list[str] = []
    while i < len(query):
        c = query[i]
        if c == "'":
            text = query[start : i + 1]
            return _Token("string", text, start, "".join(chars), "".join(pattern)), i + 1
        if c == "\\" and i + 1 < len(query):
            e = query[i + 1]
            if e in "_%":  # only meaningful to LIKE: a literal wildcard character
                chars.append(e)
                pattern.append(re.escape(e))
            elif e.lower() in _ESCAPES or e in _ESCAPES:
                ch = _ESCAPES.get(e) or _ESCAPES[e.lower()]
                chars.append(ch)
                pattern.append(re.escape(ch))
            else:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    located(
                        query,
                        i,
                        f"Invalid string literal '{query[start : i + 2]}'. "
                        f"Illegal escape sequence '\\{e}'",
                    ),
                )
            i += 2
            continue
        chars.append(c)
        pattern.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    line, col = query.count("\n") + 1, len(query) - (query.rfind("\n") + 1)
    raise SoqlError(
        "MALFORMED_QUERY", f"line {line}:{col} mismatched character '<EOF>' expecting '''"
    )


def _datetime(m: re.Match[str]) -> datetime:
    y, mo, d, h, mi, s, frac, tz = m.groups()
    stamp = f"{y}-{mo}-{d}T{h}:{mi}:{s}.{(frac or '0').ljust(3, '0')}"
    parsed = datetime.fromisoformat(stamp + ("+00:00" if tz == "Z" else tz))
    return parsed.astimezone(UTC)


def tokenize(query: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(query):
        c = query[i]
        if c.isspace():
            i += 1
        elif c == "'":
            tok, i = _string(query, i)
            out.append(tok)
        elif m := _DATETIME_RE.match(query, i):
            try:
                out.append(_Token("datetime", m.group(), i, _datetime(m)))
            except ValueError:
                raise SoqlError(
                    "MALFORMED_QUERY", located(query, i, f"invalid datetime: {m.group()}")
                ) from None
            i = m.end()
        elif m := _DATE_RE.match(query, i):
            try:
                out.append(_Token("date", m.group(), i, date.fromisoformat(m.group())))
            except ValueError:
                raise SoqlError(
                    "MALFORMED_QUERY", located(query, i, f"invalid date: {m.group()}")
                ) from None
            i = m.end()
        elif (m := _NUMBER_RE.match(query, i)) and (c.isdigit() or len(m.group()) > 1):
            out.append(_Token("number", m.group(), i, Decimal(m.group())))
            i = m.end()
        elif m := _WORD_RE.match(query, i):
            out.append(_Token("word", m.group(), i))
            i = m.end()
        elif m := _OP_RE.match(query, i):
            out.append(_Token("op", "!=" if m.group() == "<>" else m.group(), i))
            i = m.end()
        elif c in "(),":
            out.append(_Token("punct", c, i))
            i += 1
        else:
            line = query.count("\n", 0, i) + 1
            col = i - (query.rfind("\n", 0, i) + 1)
            raise SoqlError(
                "MALFORMED_QUERY", f"line {line}:{col} no viable alternative at character '{c}'"
            )
    out.append(_Token("eof", "", len(query)))
    return out


# -- parser -------------------------------------------------------------------------------
_RESERVED = re.compile(
    "SELECT|FROM|WHERE|AND|OR|NOT|IN|LIKE|ORDER|BY|LIMIT|OFFSET|NULL|TRUE|FALSE|GROUP|HAVING|"
    "WITH|FOR|USING|INCLUDES|EXCLUDES|NULLS",
    re.IGNORECASE,
)
_RELATIVE = re.compile(r"(TODAY|YESTERDAY|TOMORROW|(LAST|NEXT)_N_DAYS:\d+|N_DAYS_AGO:\d+)", re.I)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = tokenize(query)
        self.i = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def is_kw(self, *words: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "word" and tok.text.upper() in words

    def fail(self, tok: _Token | None = None) -> SoqlError:
        tok = tok or self.peek()
        shown = "<EOF>" if tok.kind == "eof" else f"'{tok.text}'"
        return SoqlError(
            "MALFORMED_QUERY", located(self.query, tok.pos, f"unexpected token: {shown}")
        )

    def keyword(self, word: str) -> _Token:
        if not self.is_kw(word):
            raise self.fail()
        return self.take()

    def punct(self, ch: str) -> None:
        tok = self.take()
        if tok.kind != "punct" or tok.text != ch:
            raise self.fail(tok)

    def field(self) -> FieldRef:
        tok = self.take()
        if tok.kind != "word" or _RESERVED.fullmatch(tok.text) or ":" in tok.text:
            raise self.fail(tok)
        return FieldRef(tok.text, tok.pos)

    def integer(self) -> int:
        tok = self.take()
        if tok.kind != "number" or not re.fullmatch(r"\d+", tok.text):
            raise self.fail(tok)
        return int(tok.text)

    def parse(self) -> Query:
        self.keyword("SELECT")
        fields: list[FieldRef] = []
        if self.is_kw("COUNT") and self.peek(1).text == "(" and self.peek(2).text == ")":
            self.i += 3
        else:
            fields.append(self.field())
            while self.peek().text == ",":
                self.take()
                fields.append(self.field())
        self.keyword("FROM")
        obj = self.take()
        if obj.kind != "word" or "." in obj.text or _RESERVED.fullmatch(obj.text):
            raise self.fail(obj)
        query = Query(self.query, tuple(fields), obj.text, obj.pos)
        if self.is_kw("WHERE"):
            self.take()
            query = replace(query, where=self.condition())
        if self.is_kw("ORDER"):
            self.take()
            self.keyword("BY")
            query = replace(query, order_by=self.order_items())
        if self.is_kw("LIMIT"):
            self.take()
            query = replace(query, limit=self.integer())
        if self.is_kw("OFFSET"):
            tok = self.take()
            offset = self.integer()
            if offset > 2000:
                raise SoqlError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    located(self.query, tok.pos, "Maximum SOQL offset allowed is 2000"),
                )
            query = replace(query, offset=offset)
        if self.peek().kind != "eof":
            raise self.fail()
        return query

    def order_items(self) -> tuple[OrderItem, ...]:
        items = []
        while True:
            ref = self.field()
            desc = False
            if self.is_kw("ASC", "DESC"):
                desc = self.take().text.upper() == "DESC"
            nulls_last = False  # documented default, for DESC too: nulls come first
            if self.is_kw("NULLS"):
                self.take()
                if not self.is_kw("FIRST", "LAST"):
                    raise self.fail()
                nulls_last = self.take().text.upper() == "LAST"
            items.append(OrderItem(ref, desc, nulls_last))
            if self.peek().text != ",":
                return tuple(items)
            self.take()

    def condition(self) -> Condition:
        first = self.unary()
        if not self.is_kw("AND", "OR"):
            return first
        op = self.peek().text.upper()
        operands = [first]
        while self.is_kw("AND", "OR"):
            if self.peek().text.upper() != op:  # SOQL demands parentheses to mix them
                raise self.fail()
            self.take()
            operands.append(self.unary())
        return BoolOp(op, tuple(operands))

    def unary(self) -> Condition:
        if self.is_kw("NOT"):
            self.take()
            return Not(self.unary())
        if self.peek().text == "(":
            self.take()
            inner = self.condition()
            self.punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        ref = self.field()
        tok = self.peek()
        if tok.kind == "op":
            self.take()
            value = self.literal()
            if value.kind == "null" and tok.text not in ("=", "!="):
                raise self.fail(tok)
            return Comparison(ref.name, tok.text, (value,), ref.pos)
        if self.is_kw("LIKE"):
            self.take()
            tok = self.take()
            if tok.kind != "string":
                raise self.fail(tok)
            like = re.compile(tok.like, re.IGNORECASE | re.DOTALL)
            return Comparison(
                ref.name, "LIKE", (Literal("string", tok.value, tok.pos, like),), ref.pos
            )
        op = "IN"
        if self.is_kw("NOT") and self.is_kw("IN", ahead=1):
            self.take()
            op = "NOT IN"
        if not self.is_kw("IN"):
            raise self.fail()
        self.take()
        self.punct("(")
        values = [self.literal()]
        while self.peek().text == ",":
            self.take()
            values.append(self.literal())
        self.punct(")")
        return Comparison(ref.name, op, tuple(values), ref.pos)

    def literal(self) -> Literal:
        tok = self.take()
        if tok.kind in ("string", "number", "date", "datetime"):
            return Literal(tok.kind, tok.value, tok.pos)
        if tok.kind == "word":
            word = tok.text.upper()
            if word in ("TRUE", "FALSE"):
                return Literal("boolean", word == "TRUE", tok.pos)
            if word == "NULL":
                return Literal("null", None, tok.pos)
            if _RELATIVE.fullmatch(tok.text):
                return Literal("range", word, tok.pos)
        raise self.fail(tok)


def parse(query: str) -> Query:
    """Parse ``query``; raise :class:`SoqlError` (MALFORMED_QUERY …) like the real API."""
    return _Parser(query).parse()
