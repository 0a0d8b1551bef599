"""The part of X's search query language a backfill uses: parsed and checked as X does.

Grammar (juxtaposition is AND and binds tighter than OR, as on X)::

    query   := or EOF
    or      := and ("OR" and)*
    and     := unary unary*
    unary   := "-"? primary
    primary := "(" or ")" | term
    term    := "@"handle | "from:"user | "to:"user | "is:reply" | "is:retweet" | "is:quote"

``user`` is a handle or a numeric user id; handles are case-insensitive. ``@x`` matches posts
whose entities mention x (x's own posts included), ``from:x`` posts by x, ``to:x`` replies to a
post by x, ``is:reply`` replies, ``is:retweet`` retweets. The sandbox has no quotes:
``is:quote`` matches nothing. Everything else X knows (keywords, phrases, hashtags, ``lang:``,
``has:``, ...) is refused with a 400, like an operator outside one's access level.

X's own rules make every accepted query answerable from indexes: a query needs a positive clause
and ``is:`` cannot stand alone, so each OR branch holds an ``@``/``from:``/``to:`` term. A
:class:`Plan` streams candidate ids newest first from those index lists (a bisect per list, a
heap merge for OR, the smallest branch for AND) and :meth:`Plan.matches` checks the whole query.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sandbox.x.store import StoredPost, XStore

MAX_QUERY_LENGTH = 4096  # the spec's maxLength (Enterprise); Pro allows 1024, Basic 512
_TOKEN = re.compile(r'\s*(?:(?P<paren>[()])|(?P<neg>-)|(?P<quote>"[^"]*"?)|(?P<word>[^\s()"]+))')
_HANDLE = re.compile(r"^[A-Za-z0-9_]{1,15}$")
_USER_ID = re.compile(r"^[0-9]{1,19}$")
_IS_VALUES = ("reply", "retweet", "quote")
_OPERATOR_LIST = (
    "https://developer.twitter.com/en/docs/twitter-api/tweets/search/integrate/build-a-query#list"
)


class QueryError(Exception):
    """A query X would refuse; ``message`` is X's wording for ``errors[].message``."""

    def __init__(self, problems: list[str]) -> None:
        self.message = "There were errors processing your request: " + ", ".join(problems)
        super().__init__(self.message)


@dataclass(frozen=True)
class Term:
    kind: str  # "mention", "from", "to" or "is"
    value: str  # a handle or user id; for "is", one of _IS_VALUES
    pos: int  # 1-based, as X counts


@dataclass(frozen=True)
class Not:
    child: Node
    pos: int  # of the minus


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Not | And | Or


def _invalid_operator(ref: str, pos: int) -> str:
    return (
        f"Reference to invalid operator '{ref}'. Operator is not available in current product "
        f"or product packaging. Please refer to complete available operator list at "
        f"{_OPERATOR_LIST}. (at position {pos})"
    )


def _term(word: str, pos: int, problems: list[str]) -> Term | None:
    """The term ``word`` stands for, or None with the reason appended to ``problems``."""
    if word.lower() == "and":
        problems.append(
            "Ambiguous use of and as a keyword. Use a space to logically join two clauses, "
            f'or "and" to find occurrences of and in text (at position {pos})'
        )
    elif word.startswith("@") and _HANDLE.match(word[1:]):
        return Term("mention", word[1:], pos)
    elif ":" in word[1:]:
        name, value = word.split(":", 1)
        if name in ("from", "to") and (_HANDLE.match(value) or _USER_ID.match(value)):
            return Term(name, value, pos)
        if name == "is" and value in _IS_VALUES:
            return Term("is", value, pos)
        problems.append(_invalid_operator(word if name in ("is", "has") else name, pos))
    elif word[0] in "#$@":
        kind = {"#": "hashtag", "$": "cashtag", "@": "mention"}[word[0]]
        problems.append(_invalid_operator(kind, pos))
    else:
        problems.append(
            f"The sandbox does not search text: keyword {word} is not supported, use @, from:, "
            f"to:, is:reply, is:retweet or is:quote (at position {pos})"
        )
    return None


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "-", "or", "term" (term is None when the word was refused)
    text: str
    pos: int
    term: Term | None = None


def _tokens(text: str, problems: list[str]) -> list[_Token]:
    out: list[_Token] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind is None:  # trailing whitespace
            continue
        value, pos = m.group(kind), m.start(kind) + 1
        if kind in ("paren", "neg"):
            out.append(_Token(value, value, pos))
        elif kind == "word" and value == "OR":
            out.append(_Token("or", value, pos))
        elif kind == "quote":
            problems.append(
                f"The sandbox does not search text: phrase {value} is not supported "
                f"(at position {pos})"
            )
            out.append(_Token("term", value, pos))
        else:
            out.append(_Token("term", value, pos, _term(value, pos, problems)))
    return out


def parse(text: str) -> Node:
    """The query's syntax tree; :class:`QueryError` with X's wording if X would refuse it."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError([f"Query is longer than {MAX_QUERY_LENGTH} characters (at position 1)"])
    problems: list[str] = []
    root = _Parser(_tokens(text, problems), len(text)).parse()  # syntax errors raise first
    if problems:
        raise QueryError(problems)
    weak = _weak_spot(root)
    if weak is None:
        return root
    terms = list(_terms(weak))
    if not _positive(weak):  # e.g. "-from:x", or "@a OR -from:x"
        pos = 1 if weak is root else _first_pos(weak)
        problem = (
            f"Rules must contain at least one positive, non-stopword clause (at position {pos})"
        )
    else:  # e.g. "is:reply", or "@a OR is:reply -from:b"
        pos = min(t.pos for t in terms if t.kind == "is")
        problem = f"is/has/lang cannot be used as a standalone operator (at position {pos})"
    raise QueryError([problem])


class _Parser:
    def __init__(self, tokens: list[_Token], length: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.end = length + 1

    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _fail(self, token: _Token | None, what: str = "no viable alternative at input") -> None:
        text, pos = ("<EOF>", self.end) if token is None else (token.text, token.pos)
        raise QueryError([f"{what} '{text}' (at position {pos})"])

    def parse(self) -> Node:
        node = self._or()
        if (extra := self._peek()) is not None:
            self._fail(extra, "missing EOF at")
        return node

    def _or(self) -> Node:
        branches = [self._and()]
        while (tok := self._peek()) is not None and tok.kind == "or":
            self.i += 1
            branches.append(self._and())
        return branches[0] if len(branches) == 1 else Or(tuple(branches))

    def _and(self) -> Node:
        items: list[Node] = []
        while (tok := self._peek()) is not None and tok.kind not in ("or", ")"):
            items.append(self._unary())
        if not items:
            self._fail(self._peek())
        return items[0] if len(items) == 1 else And(tuple(items))

    def _unary(self) -> Node:
        tok = self._peek()
        assert tok is not None
        if tok.kind != "-":
            return self._primary()
        self.i += 1
        nxt = self._peek()
        if nxt is None or nxt.kind not in ("term", "(") or nxt.pos != tok.pos + 1:
            self._fail(tok)  # X wants the term glued to its minus
        return Not(self._primary(), tok.pos)

    def _primary(self) -> Node:
        tok = self._peek()
        assert tok is not None
        self.i += 1
        if tok.kind == "(":
            node = self._or()
            close = self._peek()
            if close is None or close.kind != ")":
                raise QueryError([f"Missing closing parenthesis (at position {tok.pos})"])
            self.i += 1
            return node
        if tok.kind != "term":
            self._fail(tok)
        # A refused word stays in the tree as a term that matches nothing; parse() raises its
        # problem once the whole query has been read.
        return tok.term or Term("is", "refused", tok.pos)


def _positive(node: Node) -> bool:
    """Whether some term counts without a minus (X's "positive clause")."""
    if isinstance(node, Term):
        return True
    if isinstance(node, Not):
        return False
    return any(_positive(c) for c in node.children)


def _anchored(node: Node) -> bool:
    """Whether every way to satisfy ``node`` needs a positive @/from:/to: term, i.e. its
    matches are a subset of some index lists."""
    if isinstance(node, Term):
        return node.kind != "is"
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_anchored(c) for c in node.children)
    return all(_anchored(c) for c in node.children)


def _weak_spot(node: Node) -> Node | None:
    """The first part of ``node`` that could match without an @/from:/to: term, if any."""
    if _anchored(node):
        return None
    if isinstance(node, Or):
        return next(_weak_spot(c) for c in node.children if not _anchored(c))
    return node


def _first_pos(node: Node) -> int:
    if isinstance(node, Term | Not):
        return node.pos
    return _first_pos(node.children[0])


def _terms(node: Node) -> Iterator[Term]:
    if isinstance(node, Term):
        yield node
    else:
        for child in (node.child,) if isinstance(node, Not) else node.children:
            yield from _terms(child)


# -- evaluation --------------------------------------------------------------------------------
class Plan:
    """A parsed query bound to the store: handles resolved to user ids (unknown ones match
    nothing), posts matched, candidates streamed. Use under the sandbox lock."""

    def __init__(self, root: Node, store: XStore) -> None:
        self.root = root
        self.store = store
        self._uids: dict[Term, str | None] = {}

    def _uid(self, term: Term) -> str | None:
        if term not in self._uids:
            user = self.store.user_by_username(term.value) if term.kind != "is" else None
            if user is None and term.kind in ("from", "to") and term.value in self.store.users:
                user = self.store.users[term.value]  # from:/to: take a user id too
            self._uids[term] = user.id if user is not None else None
        return self._uids[term]

    # -- matching ----------------------------------------------------------------------------
    def matches(self, post: StoredPost) -> bool:
        return self._match(self.root, post)

    def _match(self, node: Node, post: StoredPost) -> bool:
        if isinstance(node, Term):
            if node.kind == "is":
                if node.value == "retweet":
                    return post.retweeted is not None
                return node.value == "reply" and post.replied_to is not None
            uid = self._uid(node)
            if uid is None:
                return False
            if node.kind == "mention":
                return any(m["id"] == uid for m in post.mentions)
            if node.kind == "from":
                return post.author_id == uid
            return post.in_reply_to_user_id == uid
        if isinstance(node, Not):
            return not self._match(node.child, post)
        if isinstance(node, And):
            return all(self._match(c, post) for c in node.children)
        return any(self._match(c, post) for c in node.children)

    # -- candidates --------------------------------------------------------------------------
    def candidates(
        self,
        *,
        below: int | None = None,
        above: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[int]:
        """Ids that may match, newest first, each once: ``above < id < below``; when the store
        is time-ordered also ``start <= created_at < end`` (otherwise the caller filters)."""
        last = None
        for pid in self._stream(self.root, (below, above, start, end)):
            if pid != last:
                yield pid
                last = pid

    def _lists(self, term: Term) -> list[list[int]]:
        uid = self._uid(term)
        if uid is None:
            return []
        if term.kind == "mention":
            return [self.store.mentions_index(uid), self.store.self_mentions_index(uid)]
        if term.kind == "from":
            return [self.store.authored_index(uid)]
        return [self.store.replies_index(uid)]

    def _size(self, node: Node) -> int:
        if isinstance(node, Term):
            return sum(len(index) for index in self._lists(node))
        if isinstance(node, Or):
            return sum(self._size(c) for c in node.children)
        assert isinstance(node, And)
        return min(self._size(c) for c in node.children if _anchored(c))

    def _stream(self, node: Node, bounds: _Bounds) -> Iterator[int]:
        if isinstance(node, Term):
            return _merge([self._walk(index, bounds) for index in self._lists(node)])
        if isinstance(node, Or):
            return _merge([self._stream(c, bounds) for c in node.children])
        assert isinstance(node, And)  # parse() guarantees an anchored root
        smallest = min((c for c in node.children if _anchored(c)), key=self._size)
        return self._stream(smallest, bounds)

    def _walk(self, index: list[int], bounds: _Bounds) -> Iterator[int]:
        below, above, start, end = bounds
        hi = len(index) if below is None else bisect_left(index, below)
        lo = 0 if above is None else bisect_right(index, above)
        if self.store.time_ordered and lo < hi:
            posts = self.store.posts

            def created(pid: int) -> datetime:
                return posts[pid].created_at

            if end is not None:
                hi = bisect_left(index, end, lo, hi, key=created)
            if start is not None:
                lo = bisect_left(index, start, lo, hi, key=created)
        return (index[i] for i in range(hi - 1, lo - 1, -1))


_Bounds = tuple[int | None, int | None, datetime | None, datetime | None]


def _merge(streams: list[Iterator[int]]) -> Iterator[int]:
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, reverse=True)  # duplicates end up adjacent
