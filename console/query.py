"""The filter language of `keyshift ls` and the TUI's `/` filter.

``parse(text)`` turns what a person typed into a neutral ``Query`` (a list of ``Term``s, AND-ed,
plus a sort column). The store translates it to SQL (console/store.py holds every SQL string);
``Query.matches()`` evaluates the same semantics in Python, so tests can cross-check the two.

Grammar (words separated by spaces, AND-ed)::

    word              free text: case-insensitive substring of name, location, owner, agents,
                      tags, kind, source, environment or scope
    field:value       exact match, ignoring ASCII case; ``*`` is a wildcard (name:prod-*)
    field=value       the same
    field~value       substring, ignoring ASCII case
    !term             inverts any term (k9s style)
    "two words"       quotes keep spaces (and ``:=~``) inside one word or value

Special values: ``owner:none`` (also any nullable field, ``agent:none``, ``tag:none``),
``tag:key`` / ``tag:key=value``, ``status:stale`` (stale status or stale mark),
``expires:never`` / ``expires:<30d`` (within 30 days, past included) / ``expires:>30d``,
``age:>90d`` (created or last rotated more than 90 days ago) / ``age:<7d``,
``used:never`` (no use, and evidence covers the credential's whole life) / ``used:unknown``
(no use, and no evidence covers it) / ``used:>90d`` (last used longer ago) / ``used:<7d``.
Durations: ``N`` or ``Nd`` days, ``Nw`` weeks, ``Nh`` hours.

Case folding is ASCII-only on purpose: it is what SQLite's NOCASE and lower() do, so the SQL
and ``matches()`` agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from console.errors import UsageError
from console.model import Credential

# field name as typed -> canonical field
FIELDS: dict[str, str] = {
    "id": "id",
    "name": "name",
    "kind": "kind",
    "source": "source",
    "owner": "owner",
    "env": "environment",
    "environment": "environment",
    "scope": "scope",
    "sensitivity": "sensitivity",
    "status": "status",
    "agent": "agent",
    "tag": "tag",
    "rotator": "rotator",
    "location": "location",
    "fingerprint": "fingerprint",
    "expires": "expires",
    "age": "age",
    "used": "used",
}

# plain text columns of Credential that field terms compare directly
TEXT_FIELDS = (
    "id",
    "name",
    "kind",
    "source",
    "owner",
    "environment",
    "scope",
    "sensitivity",
    "status",
    "rotator",
    "location",
    "fingerprint",
)
# fields that may be empty, so ``field:none`` means "has none"
NULLABLE_FIELDS = ("owner", "environment", "scope", "sensitivity", "rotator", "fingerprint")
TIME_FIELDS = ("expires", "age", "used")

# What free text searches (and what the store's FTS table indexes), in this order.
TEXT_SEARCH_COLUMNS = (
    "name",
    "location",
    "owner",
    "agents",
    "tags_text",
    "kind",
    "source",
    "environment",
    "scope",
)

# sort column as typed -> canonical column of the store
SORT_COLUMNS: dict[str, str] = {
    "name": "name",
    "id": "id",
    "kind": "kind",
    "source": "source",
    "owner": "owner",
    "env": "environment",
    "environment": "environment",
    "scope": "scope",
    "sensitivity": "sensitivity",
    "status": "status",
    "location": "location",
    "rotator": "rotator",
    "agents": "agents",
    "created": "created_at",
    "created_at": "created_at",
    "rotated": "rotated_at",
    "rotated_at": "rotated_at",
    "expires": "expires_at",
    "expires_at": "expires_at",
    "used": "last_used_at",
    "last_used": "last_used_at",
    "last_used_at": "last_used_at",
    "age": "age",
    "first_seen": "first_seen_at",
    "first_seen_at": "first_seen_at",
    "last_seen": "last_seen_at",
    "last_seen_at": "last_seen_at",
}
# canonical sort columns compared as text ignoring ASCII case (the rest are timestamps or id)
NOCASE_SORT = {
    "name",
    "kind",
    "source",
    "owner",
    "environment",
    "scope",
    "sensitivity",
    "status",
    "location",
    "rotator",
    "agents",
}

_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_DURATION = re.compile(r"^(?P<cmp>[<>])(?P<n>\d+)(?P<unit>[dwh]?)$")
_UNIT_SECONDS = {"": 86400, "d": 86400, "w": 7 * 86400, "h": 3600}


def nocase(text: str) -> str:
    """Lowercase ASCII letters only, as SQLite's NOCASE collation and lower() do."""
    return text.translate(_UPPER)


def tags_text(tags: dict[str, str]) -> str:
    """The searchable text of a tag map: ``k=v k2=v2`` sorted by key."""
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def agents_text(agents: list[str]) -> str:
    return " ".join(sorted(set(agents)))


@dataclass(frozen=True)
class Term:
    """One condition.

    ``op`` is one of: ``text`` (free text), ``eq``, ``glob`` (value has ``*``), ``contains``,
    ``none`` (field empty), ``has`` (tag key present), ``never`` (time field empty; for
    ``used``: no use, and evidence covers the credential's whole life), ``unknown`` (``used``
    only: no use, and no evidence covers it), ``within`` / ``beyond`` (time fields; ``value``
    is a number of seconds).
    ``key`` is the tag key for tag terms. ``value`` of text ops is already ASCII-lowercased
    (``eq`` keeps the original, compared without case; ``id`` compares exactly).
    """

    field: str
    op: str
    value: str | int | None = None
    key: str | None = None
    negate: bool = False


@dataclass
class Query:
    terms: list[Term] = field(default_factory=list)
    sort: str = "name"
    descending: bool = False
    text: str = ""

    @property
    def sort_column(self) -> str:
        return sort_column(self.sort)

    def matches(self, cred: Credential, now: datetime | None = None) -> bool:
        moment = _aware(now) if now else datetime.now(UTC)
        return all(_term_matches(t, cred, moment) != t.negate for t in self.terms)

    def sort_key(self, cred: Credential) -> tuple:
        """The order the store returns rows in (ascending; reverse it for ``descending``):
        empty values first, then the value (ASCII case ignored for text), then id."""
        value = sort_value(cred, self.sort_column)
        return (value is not None, value if value is not None else "", cred.id)


def sort_column(name: str) -> str:
    try:
        return SORT_COLUMNS[name.strip().lower()]
    except KeyError:
        raise UsageError(
            f"cannot sort by {name!r}",
            hint=f"sort by one of: {', '.join(sorted(set(SORT_COLUMNS)))}",
        ) from None


def sort_value(cred: Credential, column: str) -> object:
    if column == "age":
        value: object = cred.rotated_at or cred.created_at
    elif column == "agents":
        value = agents_text(cred.agents) or None
    else:
        value = getattr(cred, column)
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str) and column in NOCASE_SORT:
        return nocase(value)
    return value


# --- parsing ------------------------------------------------------------------------------


MAX_FILTER_CHARS = 4096
MAX_FILTER_TERMS = 64


def parse(text: str, *, sort: str = "name", descending: bool = False) -> Query:
    """Parse a filter expression; raises UsageError naming what is wrong."""
    if len(text) > MAX_FILTER_CHARS:
        raise UsageError(
            f"the filter is {len(text):,} characters long; the limit is {MAX_FILTER_CHARS:,}",
            hint="filter on fewer, shorter terms",
        )
    terms = [_parse_word(raw, unquoted) for raw, unquoted in _tokenize(text)]
    if len(terms) > MAX_FILTER_TERMS:
        raise UsageError(
            f"the filter has {len(terms)} terms; the limit is {MAX_FILTER_TERMS}",
            hint="filter on fewer terms",
        )
    sort_column(sort)  # validate early: a typo should fail before any query runs
    return Query(terms=terms, sort=sort, descending=descending, text=text)


def _tokenize(text: str) -> list[tuple[str, str]]:
    """Split on unquoted whitespace. Each word comes with its text before the first quote,
    the only part where ``!`` and a field operator count."""
    words: list[tuple[str, str]] = []
    current: list[str] = []
    unquoted_prefix: str | None = None
    quote: str | None = None
    started = False
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                current.append(ch)
        elif ch in "\"'":
            quote = ch
            started = True
            if unquoted_prefix is None:
                unquoted_prefix = "".join(current)
        elif ch.isspace():
            if started:
                word = "".join(current)
                words.append((word, word if unquoted_prefix is None else unquoted_prefix))
            current, unquoted_prefix, started = [], None, False
        else:
            current.append(ch)
            started = True
    if quote:
        raise UsageError(f"unclosed quote in filter: {text!r}", hint="close it with " + quote)
    if started:
        word = "".join(current)
        words.append((word, word if unquoted_prefix is None else unquoted_prefix))
    return words


def _parse_word(word: str, unquoted: str) -> Term:
    negate = False
    if unquoted.startswith("!"):
        negate = True
        word, unquoted = word[1:], unquoted[1:]
    # \x1f separates columns in the store's substring fallback; it never belongs in a term
    word = word.replace("\x1f", "")
    match = re.search(r"[:=~]", unquoted)
    if not match or match.start() == 0:
        if not word:
            raise UsageError("empty filter term", hint="write a word after '!'")
        return Term("text", "text", nocase(word), negate=negate)
    name = word[: match.start()].lower()
    operator = match.group(0)
    value = word[match.start() + 1 :]
    canonical = FIELDS.get(name)
    if canonical is None:
        raise UsageError(
            f"unknown filter field {name!r}",
            hint=f"fields: {', '.join(sorted(FIELDS))}",
        )
    if not value:
        raise UsageError(f"{name}{operator} needs a value", hint=f"e.g. {_example(canonical)}")
    if canonical in TIME_FIELDS:
        return _time_term(canonical, name, operator, value, negate)
    contains = operator == "~"
    if canonical == "tag":
        return _tag_term(value, contains, negate)
    if canonical == "agent":
        if not contains and value.lower() == "none":
            return Term("agent", "none", negate=negate)
        return _text_term("agent", value, contains, negate)
    if not contains and value.lower() == "none" and canonical in NULLABLE_FIELDS:
        return Term(canonical, "none", negate=negate)
    return _text_term(canonical, value, contains, negate)


def _text_term(name: str, value: str, contains: bool, negate: bool) -> Term:
    if contains:
        return Term(name, "contains", nocase(value), negate=negate)
    if "*" in value:
        return Term(name, "glob", nocase(value), negate=negate)
    return Term(name, "eq", value, negate=negate)


def _tag_term(value: str, contains: bool, negate: bool) -> Term:
    if contains:
        return Term("tag", "contains", nocase(value), negate=negate)
    key, sep, tag_value = value.partition("=")
    if not sep:
        if key.lower() == "none":
            return Term("tag", "none", negate=negate)
        return Term("tag", "has", key=key, negate=negate)
    if "*" in tag_value:
        return Term("tag", "glob", nocase(tag_value), key=key, negate=negate)
    return Term("tag", "eq", tag_value, key=key, negate=negate)


_MAX_DURATION_SECONDS = 100 * 366 * 86400  # keeps now ± N inside datetime's range


def _time_term(name: str, typed: str, operator: str, value: str, negate: bool) -> Term:
    if operator == "~":
        raise UsageError(
            f"{typed}~ is not supported", hint=f"use {typed}:<30d, {typed}:>90d or {_example(name)}"
        )
    lowered = value.lower()
    if name == "used" and lowered == "unknown":
        return Term(name, "unknown", negate=negate)
    if name == "used" and lowered == "none":
        # "none" is "empty" for other fields; an empty last use is never or unknown
        raise UsageError(f"{typed}:{value} is ambiguous",
                         hint=f"use {typed}:never (evidence shows no use) or {typed}:unknown")
    if (name == "expires" and lowered in ("never", "none")) or (
        name == "used" and lowered == "never"
    ):
        return Term(name, "never", negate=negate)
    match = _DURATION.match(lowered)
    if not match:
        raise UsageError(f"cannot read {typed}:{value}", hint=f"e.g. {_example(name)}")
    seconds = int(match["n"]) * _UNIT_SECONDS[match["unit"]]
    if seconds > _MAX_DURATION_SECONDS:
        raise UsageError(f"{typed}:{value} is beyond 100 years", hint=f"e.g. {_example(name)}")
    return Term(name, "within" if match["cmp"] == "<" else "beyond", seconds, negate=negate)


def _example(name: str) -> str:
    return {
        "expires": "expires:never, expires:<30d",
        "age": "age:>90d",
        "used": "used:never, used:unknown, used:>90d",
        "tag": "tag:team=support, tag:team",
        "owner": "owner:none, owner:platform",
    }.get(name, f"{name}:value")


# --- evaluation in Python (the reference semantics) ----------------------------------------


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _glob(pattern: str, text: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, nocase(text), flags=re.DOTALL) is not None


def _text_matches(op: str, value: object, actual: str | None, exact: bool = False) -> bool:
    if op == "none":
        return not actual
    if actual is None:
        return False
    if op == "eq":
        return actual == value if exact else nocase(actual) == nocase(str(value))
    if op == "glob":
        return _glob(str(value), actual)
    if op == "contains":
        return str(value) in nocase(actual)
    raise AssertionError(op)


def search_haystacks(cred: Credential) -> list[str]:
    """The texts free text searches, one per column of TEXT_SEARCH_COLUMNS."""
    values = {
        "agents": agents_text(cred.agents),
        "tags_text": tags_text(cred.tags),
    }
    return [
        nocase(values[c] if c in values else (getattr(cred, c) or "")) for c in TEXT_SEARCH_COLUMNS
    ]


def _term_matches(term: Term, cred: Credential, now: datetime) -> bool:
    if term.op == "text":
        return any(str(term.value) in hay for hay in search_haystacks(cred))
    if term.field == "agent":
        if term.op == "none":
            return not cred.agents
        return any(_text_matches(term.op, term.value, a) for a in set(cred.agents))
    if term.field == "tag":
        if term.op == "none":
            return not cred.tags
        if term.op == "contains":
            return str(term.value) in nocase(tags_text(cred.tags))
        keys = [k for k in cred.tags if nocase(k) == nocase(term.key or "")]
        if term.op == "has":
            return bool(keys)
        return any(_text_matches(term.op, term.value, cred.tags[k]) for k in keys)
    if term.field == "status" and term.op == "eq" and nocase(str(term.value)) == "stale":
        return cred.status == "stale" or cred.stale_since is not None
    if term.field in TIME_FIELDS:
        return _time_matches(term, cred, now)
    return _text_matches(term.op, term.value, getattr(cred, term.field), exact=term.field == "id")


def _time_matches(term: Term, cred: Credential, now: datetime) -> bool:
    if term.field == "expires":
        when = cred.expires_at
    elif term.field == "used":
        when = cred.last_used_at
    else:
        when = cred.rotated_at or cred.created_at
    if term.op == "never":
        return when is None and (term.field != "used" or cred.no_use_evidence is not None)
    if term.op == "unknown":
        return when is None and cred.no_use_evidence is None
    if when is None:
        return False
    when = _aware(when)
    delta = timedelta(seconds=int(term.value or 0))
    if term.field == "expires":
        # within: expires before now+N (already expired included); beyond: later than that
        limit = now + delta
        return when < limit if term.op == "within" else when >= limit
    # age / used: "within" = more recent than now-N; "beyond" = older than now-N
    limit = now - delta
    return when >= limit if term.op == "within" else when < limit


def time_limit(term: Term, now: datetime) -> datetime:
    """The boundary instant a time term compares against (shared with the store's SQL)."""
    delta = timedelta(seconds=int(term.value or 0))
    return now + delta if term.field == "expires" else now - delta
