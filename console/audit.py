"""The append-only, keyed, hash-chained audit log (DESIGN.md invariant 4).

Entry ``n`` stores ``hash = HMAC-SHA256(audit key, prev_hash + canonical JSON of {seq, at,
actor, action, target, detail})`` and the key's id (``key_id``; console/own_keys.py), where
``prev_hash`` is entry ``n-1``'s hash (64 zeros for the first). Entries written before the chain
was keyed have no key id and a plain ``sha256`` of the same input; they verify as before, but an
unkeyed entry after a keyed one is a forgery. Because the chain is keyed, whoever can write the
SQLite file but lacks the key cannot recompute a consistent chain after an edit.

Editing an entry breaks its own hash; deleting one leaves a seq gap; moving content between
entries breaks the links. Deleting the newest entries leaves a valid (shorter) chain: every
append records the head hash and count in the store's ``meta`` table, which catches a careless
cut, and an :class:`Anchor` (``SEQ:HASH``) kept outside the store catches a careful one (the cut
and ``meta`` rewritten to match).

Key rotation: point ``KEYSHIFT_AUDIT_KEY`` at the new key and ``KEYSHIFT_AUDIT_KEY_PREVIOUS`` at
the old one. New entries use the new key; verify checks entries under either, but never one
under the previous key after one under the current key (a leaked old key must not extend the
chain). An entry under any other key is reported as one verify cannot check.

Entries are written as given, never rewritten: callers pass references (ids, versions,
fingerprints, step names), never a value, and errors are redacted where the value was handled
(console/redaction.py) before they get here.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from console import own_keys
from console.model import AuditEntry

if TYPE_CHECKING:
    from console.store import Store

GENESIS_HASH = "0" * 64
META_HEAD = "audit.head_hash"
META_COUNT = "audit.count"
PREVIOUS_KEY_ENV = "KEYSHIFT_AUDIT_KEY_PREVIOUS"

REASONS = {
    "edited": "hash does not match its content",
    "forged": "written without the audit key",
    "missing": "an entry is missing",
    "reordered": "entries are out of order",
    "truncated": "entries are missing from the end",
    "anchor": "the chain does not hold the anchored entry",
    "unverifiable": "keyed with a key verify does not have",
}

_ANCHOR = re.compile(r"(?P<seq>\d{1,18}):(?P<hash>[0-9a-fA-F]{64})")


def current_actor() -> str:
    """Who is acting: ``$KEYSHIFT_ACTOR``, else the login name."""
    explicit = os.environ.get("KEYSHIFT_ACTOR")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return f"uid:{os.getuid()}"


actor = current_actor


def canonical(seq: int, at: str, actor: str, action: str, target: str, detail: Any) -> str:
    return json.dumps(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "target": target,
            "detail": detail,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def entry_hash(
    prev_hash: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    target: str,
    detail: Any,
    key: bytes | None = None,
) -> str:
    """The entry's hash: HMAC-SHA256 under ``key``; plain sha256 (an older entry) without."""
    payload = (prev_hash + canonical(seq, at, actor, action, target, detail)).encode("utf-8")
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """The chain's head at a moment, to keep outside the store: entry ``seq`` had ``hash``.

    ``key_id`` names the key the entry was written with; ``at`` is when the anchor was taken.
    """

    seq: int
    hash: str
    key_id: str | None = None
    at: datetime | None = None

    @property
    def text(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        match = _ANCHOR.fullmatch(text.strip())
        if not match:
            from console.errors import UsageError

            shown = text if len(text) <= 80 else text[:77] + "..."
            raise UsageError(
                f"not an audit anchor: {shown!r}",
                hint="expected SEQ:HASH, as printed by keyshift audit anchor",
            )
        return cls(int(match["seq"]), match["hash"].lower())

    @classmethod
    def of(cls, value: Anchor | tuple[int, str] | str) -> Anchor:
        if isinstance(value, Anchor):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        seq, hash_ = value
        return cls.parse(f"{seq}:{hash_}")

    def to_json(self) -> dict[str, Any]:
        return {
            "anchor": self.text,
            "seq": self.seq,
            "hash": self.hash,
            "key_id": self.key_id,
            "at": self.at.isoformat() if self.at else None,
        }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # entries found (intact ones, when broken)
    head: str | None  # hash of the last entry (None when empty)
    bad_seq: int | None = None
    reason: str | None = None  # a key of REASONS
    explanation: str | None = None
    unkeyed: int = 0  # entries from before the chain was keyed
    anchor: Anchor | None = None  # the anchor checked, if any
    head_key_id: str | None = None  # the key the last entry was written with

    @property
    def message(self) -> str:
        if self.ok:
            text = f"OK {self.count} entries, head {self.head or GENESIS_HASH}"
            if self.unkeyed:
                text += f" ({self.unkeyed} unkeyed, from before the chain was keyed)"
            if self.anchor is not None:
                text += f"; anchor {self.anchor.seq} matches"
            return text
        if self.reason == "unverifiable":
            return f"audit chain unverifiable at seq {self.bad_seq}: {self.explanation}"
        return f"audit chain broken at seq {self.bad_seq}: {self.reason} ({self.explanation})"

    @property
    def hint(self) -> str | None:
        if self.reason == "unverifiable":
            return f"if the audit key was rotated, name the old one in ${PREVIOUS_KEY_ENV}"
        return None


def _entry(row: dict) -> AuditEntry:
    return AuditEntry.model_validate({**row, "detail": json.loads(row["detail"] or "{}")})


def _key_unavailable(exc: Exception, env: str) -> Exception:
    from console.errors import KeyshiftError, SecretError

    said = exc.message if isinstance(exc, KeyshiftError) else type(exc).__name__
    hint = exc.hint if isinstance(exc, KeyshiftError) and exc.hint else None
    return SecretError(
        f"the audit key is unavailable, so the keyed audit chain cannot be checked or "
        f"extended: {said}",
        hint=hint or f"set ${env} to a reference that holds the audit key",
    )


def _current_key() -> own_keys.OwnKey:
    from console.errors import SecretError

    try:
        return own_keys.audit_key()
    except SecretError as exc:
        raise _key_unavailable(exc, own_keys.AUDIT_ENV) from None


def _previous_key() -> own_keys.OwnKey | None:
    """The key before the last rotation, when ``$KEYSHIFT_AUDIT_KEY_PREVIOUS`` names one.

    Never created: it is only ever read (own_keys creates only its default entry, and the
    empty default here is never a reference)."""
    from console.errors import SecretError

    if not os.environ.get(PREVIOUS_KEY_ENV):
        return None
    try:
        return own_keys._load(PREVIOUS_KEY_ENV, "")
    except SecretError as exc:
        raise _key_unavailable(exc, PREVIOUS_KEY_ENV) from None


class _Keys:
    """The keys one verify checks with, loaded at the first keyed entry (a store with only
    older, unkeyed entries verifies without the keyring)."""

    def __init__(self) -> None:
        self.current: own_keys.OwnKey | None = None
        self.previous: own_keys.OwnKey | None = None
        self._macs: dict[str, Any] = {}

    def load(self) -> own_keys.OwnKey:
        """The current key (loading it, and the previous one, the first time)."""
        if self.current is not None:
            return self.current
        self.current = _current_key()
        self._macs[self.current.key_id] = hmac.new(self.current.key, digestmod=hashlib.sha256)
        previous = _previous_key()
        if previous is not None and previous.key_id != self.current.key_id:
            self.previous = previous
            self._macs[previous.key_id] = hmac.new(previous.key, digestmod=hashlib.sha256)
        return self.current

    def knows(self, key_id: str) -> bool:
        return key_id in self._macs

    def mac(self, key_id: str, payload: bytes) -> str:
        # copying a keyed state skips HMAC's key setup per entry: verify stays near sha256's cost
        mac = self._macs[key_id].copy()
        mac.update(payload)
        return mac.hexdigest()


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self, actor: str, action: str, target: str, detail: dict | None = None
    ) -> AuditEntry:
        """Append one entry, keyed (atomically with the head anchor), and return it.

        Without the audit key nothing is appended: a SecretError, so the action that wanted
        the entry does not report success (an unkeyed entry would read as a forgery)."""
        from console.store import ts, utcnow

        key = _current_key()  # before the transaction: a first keyring read holds no lock
        target = target or ""
        # normalise through JSON once so what is hashed is exactly what verify() reloads
        detail_json = json.dumps(
            dict(detail or {}),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        clean = json.loads(detail_json)
        with self.store.transaction():
            head = self.store.audit_head()
            seq = (head["seq"] + 1) if head else 1
            prev = head["hash"] if head else GENESIS_HASH
            at = ts(utcnow()) or ""
            digest = entry_hash(prev, seq, at, actor, action, target, clean, key.key)
            row = {
                "seq": seq,
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "detail": detail_json,
                "prev_hash": prev,
                "hash": digest,
                "key_id": key.key_id,
            }
            self.store.append_audit(row, {META_HEAD: digest, META_COUNT: str(seq)})
        return _entry(row)

    def tail(self, n: int = 20) -> list[AuditEntry]:
        return [_entry(r) for r in self.store.audit_tail(n)]

    def search(self, text: str, limit: int = 200, offset: int = 0) -> list[AuditEntry]:
        """Entries matching the filter ``text`` (console/audit_query.py), newest first."""
        from console.audit_query import parse_audit_filter

        terms = parse_audit_filter(text)
        return [_entry(r) for r in self.store.audit_search(terms, limit=limit, offset=offset)]

    def entries(self, start_seq: int = 1) -> list[AuditEntry]:
        return [_entry(r) for r in self.store.audit_rows(start_seq)]

    def anchor(self) -> Anchor:
        """The head as an :class:`Anchor`, after a verify: an anchor vouches for the chain up
        to it, so a broken chain gets none (AuditError)."""
        from console.errors import AuditError
        from console.store import utcnow

        result = self.verify()
        if not result.ok:
            raise AuditError(result.message, hint=result.hint)
        # the head this verify walked (not a fresh read: an entry appended since is unchecked)
        return Anchor(result.count, result.head or GENESIS_HASH, result.head_key_id, utcnow())

    def verify(self, anchor: Anchor | tuple[int, str] | str | None = None) -> VerifyResult:
        """Walk the chain; report the first bad entry and why, or OK with count and head.

        With ``anchor`` (one taken earlier and kept elsewhere), entry ``anchor.seq`` must exist
        and have the anchored hash: that catches a tail cut with ``meta`` rewritten to match.
        Raises SecretError (one line) when keyed entries need a key that is unavailable."""
        wanted = Anchor.of(anchor) if anchor is not None else None
        # the rows and meta's head and count from one snapshot: an entry appended by another
        # thread mid-walk (the schedule verifies while a sync appends) is not "truncated"
        with self.store.read_snapshot():
            return self._walk(self.store.audit_rows(), wanted)

    def _walk(self, rows: Iterator[dict], anchor: Anchor | None) -> VerifyResult:
        expected_seq = 1
        prev = GENESIS_HASH
        count = unkeyed = 0
        head_key_id: str | None = None
        keys = _Keys()
        keyed_since: int | None = None  # the first keyed entry's seq
        current_since: int | None = None  # the first entry under the current key
        for row in rows:
            seq = row["seq"]
            if seq != expected_seq:
                return self._bad(
                    count,
                    prev,
                    expected_seq,
                    "missing",
                    f"entry {expected_seq} is absent; the next entry is {seq}",
                )
            try:
                detail = json.loads(row["detail"] or "{}")
            except ValueError:
                return self._bad(count, prev, seq, "edited", "its detail is not valid JSON")
            key_id = row.get("key_id")
            payload = (
                str(row["prev_hash"])  # SQLite keeps whatever type an editor wrote
                + canonical(seq, row["at"], row["actor"], row["action"], row["target"], detail)
            ).encode("utf-8")
            if key_id is None:
                if keyed_since is not None:
                    return self._bad(
                        count,
                        prev,
                        seq,
                        "forged",
                        f"an unkeyed entry after keyed ones (keyed since entry {keyed_since})",
                    )
                expected = hashlib.sha256(payload).hexdigest()
            else:
                current = keys.load()
                if not keys.knows(key_id):
                    return self._bad(
                        count,
                        prev,
                        seq,
                        "unverifiable",
                        f"keyed with another key (id {key_id}); verify cannot check it "
                        f"(the audit key is id {current.key_id})",
                    )
                if key_id == current.key_id:
                    current_since = current_since or seq
                elif current_since is not None:
                    return self._bad(
                        count,
                        prev,
                        seq,
                        "forged",
                        f"keyed with the previous key after entries under the current one "
                        f"(since entry {current_since})",
                    )
                keyed_since = keyed_since or seq
                expected = keys.mac(key_id, payload)
            # a plain comparison: the stored hash is no secret, and an edited one may not even
            # be ASCII (which compare_digest refuses)
            own_ok = row["hash"] == expected
            if row["prev_hash"] != prev:
                linked = self.store.audit_seq_of_hash(row["prev_hash"])
                if linked is not None and linked != seq - 1:
                    return self._bad(
                        count,
                        prev,
                        seq,
                        "reordered",
                        f"it follows entry {linked}, not entry {seq - 1}",
                    )
                if own_ok and seq > 1:
                    # this entry is intact but links to a hash no entry has: the previous
                    # entry was rewritten and re-hashed
                    return self._bad(
                        count,
                        prev,
                        seq - 1,
                        "edited",
                        f"its hash is not the one entry {seq} links to",
                    )
                return self._bad(
                    count, prev, seq, "missing", "it does not link to the entry before it"
                )
            if not own_ok:
                if key_id is not None and row["hash"] == hashlib.sha256(payload).hexdigest():
                    return self._bad(
                        count,
                        prev,
                        seq,
                        "forged",
                        "its hash is a plain sha256: recomputed without the audit key",
                    )
                return self._bad(count, prev, seq, "edited", REASONS["edited"])
            if anchor is not None and seq == anchor.seq and row["hash"] != anchor.hash:
                return self._bad(
                    count,
                    prev,
                    seq,
                    "anchor",
                    f"entry {seq}'s hash is {row['hash'][:16]}…, the anchor says "
                    f"{anchor.hash[:16]}…",
                )
            prev = row["hash"]
            head_key_id = key_id
            count += 1
            unkeyed += key_id is None
            expected_seq += 1
        head = prev if count else None
        anchored = int(self.store.get_meta(META_COUNT) or 0)
        anchor_head = self.store.get_meta(META_HEAD)
        if anchor is not None and anchor.seq > count:
            return self._bad(
                count,
                head,
                count + 1,
                "truncated",
                f"the anchor names entry {anchor.seq}, the chain ends at entry {count}",
            )
        if anchor is not None and anchor.seq == 0 and anchor.hash != GENESIS_HASH:
            return self._bad(count, head, 0, "anchor", "entry 0 is the genesis hash, all zeros")
        if anchored > count:
            return self._bad(
                count, head, count + 1, "truncated", f"meta says {anchored} entries, found {count}"
            )
        if anchored < count:
            return self._bad(
                count,
                head,
                anchored + 1,
                "edited",
                f"entries after {anchored} were not written by keyshift",
            )
        if count and anchor_head != head:
            return self._bad(
                count, head, count, "edited", "the last entry's hash differs from the recorded head"
            )
        return VerifyResult(
            ok=True,
            count=count,
            head=head,
            unkeyed=unkeyed,
            anchor=anchor,
            head_key_id=head_key_id,
        )

    @staticmethod
    def _bad(count: int, head: str | None, seq: int, reason: str, why: str) -> VerifyResult:
        return VerifyResult(
            ok=False, count=count, head=head, bad_seq=seq, reason=reason, explanation=why
        )
