"""The words keyshift shows for what is missing or out of date: one vocabulary for the CLI
and the TUI.

- owner: ``none`` when nobody owns it.
- expires: ``never`` when it has no expiry and no TTL.
- last use: a time when evidence shows one; ``never`` when evidence covers the credential's
  whole life and shows no use (a Vault audit log keyshift has read without a gap since before
  a KV secret or token was made; AWS's record of an access key's last use, kept for the key's
  life); ``unknown`` when no evidence covers it. The filters ``used:never`` and
  ``used:unknown`` split the rows the same way (``console/store/plan.py`` decides which rows
  the evidence covers, ``NO_USE_KINDS`` below says for which kinds it can).
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
IAM_LAST_USED = "aws:GetAccessKeyLastUsed"
VAULT_AUDIT = "vault:audit"
# the kinds whose every use the Vault audit log records: a KV secret's reads of its data path,
# a token's requests (by its accessor). keyshift's own token (tag ``keyshift``) is left out:
# its requests are keyshift's, never counted as use
AUDITED_KINDS = ("kv", "kv-v1", "vault-token")

LEGEND = (
    f"owner {NONE}: nobody owns it; expires {NEVER}: no expiry and no TTL; last use {NEVER}: "
    f"evidence covers its whole life and shows no use; last use {UNKNOWN}: no evidence covers "
    f"it; {STALE}: its source failed to sync, the row shows what keyshift last knew"
)


def owner_text(cred: Credential) -> str:
    return cred.owner or NONE


def is_stale(cred: Credential) -> bool:
    return cred.status == STALE or cred.stale_since is not None


def status_text(cred: Credential) -> str:
    if cred.status == "gone":
        return "gone"
    return STALE if is_stale(cred) else cred.status


def used_state(cred: Credential) -> str:
    """``used``, ``never`` or ``unknown`` (the module's docstring)."""
    if cred.last_used_at is not None:
        return "used"
    return NEVER if cred.no_use_evidence else UNKNOWN


def no_use_text(cred: Credential) -> str:
    """What the last use column says when there is no use: ``never`` or ``unknown``."""
    return NEVER if cred.no_use_evidence else UNKNOWN
