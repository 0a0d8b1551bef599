"""What an author's public profile offers the resolver: names, contact points, domains.

Pure text handling, no CRM: e-mail addresses and phone numbers written in a bio, the domain of
the profile website, the name split into comparable tokens (nicknames folded to their usual
full form, accents and case dropped) and the name prefixes a CRM search finds it by.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from syncd.contracts.text import fold

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# A phone as people write it: optional +, then digits with spaces, dots, dashes, brackets.
_PHONE = re.compile(r"(?<![\w+])(\+?\d[\d\s().-]{6,}\d)(?!\w)")
# Mail and hosting domains many unrelated people share: never evidence on their own.
SHARED_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com",
        "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net",
        "web.de", "mail.com", "yandex.ru", "qq.com", "x.com", "twitter.com", "linktr.ee",
        "instagram.com", "facebook.com", "linkedin.com", "github.com", "medium.com",
        "substack.com", "youtube.com", "tiktok.com", "bit.ly", "t.co",
    }
)  # fmt: skip
# Nicknames → the name a CRM usually holds. Small on purpose: a wrong fold costs precision.
NICKNAMES = {
    "bob": "robert", "rob": "robert", "bobby": "robert", "bill": "william", "will": "william",
    "liz": "elizabeth", "beth": "elizabeth", "kate": "katherine", "katie": "katherine",
    "jim": "james", "jimmy": "james", "mike": "michael", "mick": "michael", "dave": "david",
    "tom": "thomas", "tommy": "thomas", "dan": "daniel", "danny": "daniel", "sam": "samuel",
    "alex": "alexander", "andy": "andrew", "drew": "andrew", "chris": "christopher",
    "matt": "matthew", "nick": "nicholas", "joe": "joseph", "jen": "jennifer",
    "jenny": "jennifer", "peggy": "margaret", "meg": "margaret", "sue": "susan",
    "tony": "anthony", "steve": "steven", "ben": "benjamin", "ted": "edward", "ed": "edward",
    "greg": "gregory", "pat": "patricia", "abby": "abigail", "vicky": "victoria",
    "rick": "richard", "kathy": "katherine", "chuck": "charles", "becky": "rebecca",
    "larry": "lawrence",
}  # fmt: skip
_TOKEN = re.compile(r"[^\W\d_]+", re.UNICODE)
_NUMBER = re.compile(r"\d+")


def name_tokens(name: str | None) -> list[str]:
    """Comparable name words, nicknames folded; emoji, digits and punctuation dropped."""
    if not name:
        return []
    return [NICKNAMES.get(t, t) for t in _TOKEN.findall(fold(name)) if len(t) > 1]


def name_numbers(name: str | None) -> frozenset[str]:
    """The numbers in a name ("Customer 33", "Unit 007"), compared as numbers."""
    return frozenset(str(int(n)) for n in _NUMBER.findall(fold(name or "")))


def name_initials(name: str | None) -> frozenset[str]:
    """The one-letter words of a name ("John A. Smith" → a), which name_tokens drops."""
    return frozenset(t for t in _TOKEN.findall(fold(name or "")) if len(t) == 1)


def typed_tokens(name: str | None) -> list[str]:
    """Name words as a CRM may hold them: lower-case, but accents and nicknames kept."""
    if not name:
        return []
    words = _TOKEN.findall(unicodedata.normalize("NFC", name).casefold())
    return [t for t in words if len(t) > 1]


LAST_WORDS = 3  # words after the first tried as the last name: "Ana María García López"


def _forms(word: str, *, nickname: bool) -> set[str]:
    """A word as typed (a CRM search may compare accents), accent-folded and, for a first
    name, nickname-folded: "Zoë" → zoë, zoe; "Bob" → bob, robert."""
    folded = fold(word)
    return {word, folded, NICKNAMES.get(folded, folded) if nickname else folded}


def name_search(
    name: str | None, last_words: int | None = LAST_WORDS
) -> tuple[set[str], set[tuple[str, str]]]:
    """What a CRM search finds a name by: (prefixes, pairs).

    A name of two or more words gives (first-name, last-name) prefix pairs, one initial and
    three letters each way, ``("j", "smi")`` and ``("joh", "s")``, so one typo leaves the
    other pair; its first word counts as the first name, each of the next ``last_words`` as
    the last (a double surname, a "(she/her)" after the name). One word gives its 3-letter
    prefixes, matched against first or last name.
    """
    words = typed_tokens(name)
    if len(words) < 2:
        return {f[:3] for w in words for f in _forms(w, nickname=True) if len(f) >= 3}, set()
    pairs: set[tuple[str, str]] = set()
    firsts = _forms(words[0], nickname=True)
    for last in {f for w in words[1:][:last_words] for f in _forms(w, nickname=False)}:
        for first in firsts:
            pairs |= {(first[:1], last[:3]), (first[:3], last[:1])}
    return set(), pairs


def emails(text: str | None) -> set[str]:
    return {m.lower().rstrip(".") for m in _EMAIL.findall(text or "")}


def phone_digits(text: str | None) -> set[str]:
    """Phone numbers as digits; a leading + keeps its country code, which is all we know."""
    found: set[str] = set()
    for m in _PHONE.findall(text or ""):
        digits = re.sub(r"\D", "", m)
        if 8 <= len(digits) <= 15:
            found.add(digits)
    return found


def same_phone(a: str, b: str) -> bool:
    """Digit strings that are one number: equal, or one is the other without a country code."""
    if len(a) < 8 or len(b) < 8:
        return False
    return a == b or (a.endswith(b[-9:]) and b.endswith(a[-9:]))


def domain(value: str | None) -> str | None:
    """The host of a URL or the domain of an e-mail address, without ``www.``."""
    if not value:
        return None
    value = value.strip().lower()
    if "@" in value and "://" not in value:
        host = value.rsplit("@", 1)[1]
    else:
        try:
            host = urlsplit(value if "://" in value else f"http://{value}").hostname or ""
        except ValueError:
            return None
    host = host.removeprefix("www.").rstrip(".")
    return host if "." in host else None


def own_domain(value: str | None) -> str | None:
    """A domain that says something about a person: not a mail provider or a social site."""
    d = domain(value)
    return d if d and d not in SHARED_DOMAINS else None
