"""The words keyshift shows for what is missing or out of date: one vocabulary for the CLI
and the TUI.

- owner: ``none`` when nobody owns it.
- expires: ``never`` when it has no expiry and no TTL.
- last use: a time when evidence shows one; ``unknown`` when no evidence covers it. (``never``
  would mean evidence covering the credential's whole life shows no use; keyshift does not
  track that coverage yet, so it never says so.)
- status: ``stale`` when its source failed to sync and the row shows what was last known.
"""

from __future__ import annotations

from console.model import Credential

NONE = "none"
NEVER = "never"
UNKNOWN = "unknown"
STALE = "stale"

LEGEND = (
    f"owner {NONE}: nobody owns it; expires {NEVER}: no expiry and no TTL; last use "
    f"{UNKNOWN}: no evidence of use either way; {STALE}: its source failed to sync, the row "
    "shows what keyshift last knew"
)


def owner_text(cred: Credential) -> str:
    return cred.owner or NONE


def is_stale(cred: Credential) -> bool:
    return cred.status == STALE or cred.stale_since is not None


def status_text(cred: Credential) -> str:
    if cred.status == "gone":
        return "gone"
    return STALE if is_stale(cred) else cred.status
