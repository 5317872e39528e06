"""The append-only, hash-chained audit log (DESIGN.md invariant 4).

Entry ``n`` stores ``hash = sha256(prev_hash + canonical JSON of {seq, at, actor, action,
target, detail})`` where ``prev_hash`` is entry ``n-1``'s hash (64 zeros for the first).
Editing an entry breaks its own hash; deleting one leaves a seq gap; moving content between
entries breaks the links. Deleting the newest entries leaves a valid (shorter) chain, so every
append also records the head hash and count in the store's ``meta`` table, and ``verify()``
compares against that anchor.

Entries are written as given, never rewritten: callers pass references (ids, versions,
fingerprints, step names), never a value, and errors are redacted where the value was handled
(console/redaction.py) before they get here.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.model import AuditEntry

if TYPE_CHECKING:
    from console.store import Store

GENESIS_HASH = "0" * 64
META_HEAD = "audit.head_hash"
META_COUNT = "audit.count"

REASONS = {
    "edited": "hash does not match its content",
    "missing": "an entry is missing",
    "reordered": "entries are out of order",
    "truncated": "entries are missing from the end",
}


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
    prev_hash: str, seq: int, at: str, actor: str, action: str, target: str, detail: Any
) -> str:
    payload = prev_hash + canonical(seq, at, actor, action, target, detail)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # entries found
    head: str | None  # hash of the last entry (None when empty)
    bad_seq: int | None = None
    reason: str | None = None  # edited | missing | reordered | truncated
    explanation: str | None = None

    @property
    def message(self) -> str:
        if self.ok:
            return f"OK {self.count} entries, head {self.head or GENESIS_HASH}"
        return f"audit chain broken at seq {self.bad_seq}: {self.reason} ({self.explanation})"


def _entry(row: dict) -> AuditEntry:
    return AuditEntry.model_validate({**row, "detail": json.loads(row["detail"] or "{}")})


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self, actor: str, action: str, target: str, detail: dict | None = None
    ) -> AuditEntry:
        """Append one entry (atomically with the head anchor) and return it."""
        from console.store import ts, utcnow

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
            digest = entry_hash(prev, seq, at, actor, action, target, clean)
            row = {
                "seq": seq,
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "detail": detail_json,
                "prev_hash": prev,
                "hash": digest,
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

    def verify(self) -> VerifyResult:
        """Walk the chain; report the first bad entry and why, or OK with count and head."""
        expected_seq = 1
        prev = GENESIS_HASH
        count = 0
        for row in self.store.audit_rows():
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
            own_ok = row["hash"] == entry_hash(
                row["prev_hash"], seq, row["at"], row["actor"], row["action"], row["target"], detail
            )
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
                return self._bad(count, prev, seq, "edited", REASONS["edited"])
            prev = row["hash"]
            count += 1
            expected_seq += 1
        head = prev if count else None
        anchored = int(self.store.get_meta(META_COUNT) or 0)
        anchor_head = self.store.get_meta(META_HEAD)
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
        return VerifyResult(ok=True, count=count, head=head)

    @staticmethod
    def _bad(count: int, head: str | None, seq: int, reason: str, why: str) -> VerifyResult:
        return VerifyResult(
            ok=False, count=count, head=head, bad_seq=seq, reason=reason, explanation=why
        )
