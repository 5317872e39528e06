"""Reads for the scorecard and `keyshift report` (console/scorecard.py owns what they mean)."""

from __future__ import annotations

import json

from console.store.base import StoreBase
from console.store.rows import parse_ts


class ScorecardRows(StoreBase):
    def credentials_with_recorded_use(self, *, except_evidence: tuple[str, ...] = ()) -> set[str]:
        """Ids of credentials with at least one usage event, leaving out events whose evidence
        is one of ``except_evidence`` (``declared``: a person's statement, not a record)."""
        marks = ",".join("?" * len(except_evidence))
        where = f"WHERE evidence NOT IN ({marks})" if except_evidence else ""
        return {
            r["credential_id"]
            for r in self._read(
                f"SELECT DISTINCT credential_id FROM usage_events {where}", except_evidence
            )
        }

    def audit_entries_of(self, action: str) -> list[dict]:
        """Every audit entry of one action, oldest first: seq, at (a datetime) and detail
        (parsed JSON; an unreadable detail is an empty dict)."""
        out: list[dict] = []
        for r in self._read(
            "SELECT seq, at, detail FROM audit_log WHERE action = ? ORDER BY seq", (action,)
        ):
            try:
                detail = json.loads(r["detail"]) if r["detail"] else {}
            except ValueError:
                detail = {}
            out.append({"seq": r["seq"], "at": parse_ts(r["at"]),
                        "detail": detail if isinstance(detail, dict) else {}})
        return out
