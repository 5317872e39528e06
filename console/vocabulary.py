"""The words keyshift shows for what is missing or out of date: one vocabulary for the CLI
and the TUI.

- owner: ``none`` when nobody owns it.
- expires: ``never`` when it has no expiry and no TTL.
- last use: a time when evidence shows one; ``unknown`` when none does. The columns and the
  filter do not say ``never``: only the finding ``use.never-used`` does, where evidence covers
  the credential's whole life (a Vault audit log that began before it was created, AWS's
  record of an access key), and it names that evidence.
- status: ``stale`` when its source failed to sync and the row shows what was last known.
"""

from __future__ import annotations

from console.model import Credential

NONE = "none"
NEVER = "never"
UNKNOWN = "unknown"
STALE = "stale"
# an IAM key's ``last_used`` tag when AWS answered with no use: AWS records a key's last use
# for its whole life, so this is evidence of no use (console/findings/use.py), not its lack
NO_USE_RECORDED = "none recorded (GetAccessKeyLastUsed)"

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
