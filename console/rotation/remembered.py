"""What keyshift last saw of a declared vault-token rotation's token, for the issuer.

A token Vault has revoked cannot be looked up any more, so when an incident's contain revoked
it the issuer cannot ask what policies, TTL and uses it had. It asks the store instead:

- ``runs``: each earlier run of the rotation that identified a token, newest first: the
  handle it identified (policies, TTL, period, orphan, renewable, uses; the new token got the
  same) and the fingerprints of the old and the new token. The issuer uses the run whose
  fingerprints hold the current token's, so a token someone swapped in since is not taken for
  keyshift's.
- ``synced``: the one live token of the issuer's token role that the last sync listed for the
  rotation's agents (policies from its scope, TTL, orphan, uses), with its accessor. Two or
  more (the role is shared) cannot be told apart: none is given.

References and properties only, never a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.rotation.specs import Spec
    from console.store import Store

RUNS_LOOKED_AT = 20


def remembered_token(store: Store, loaded: LoadedInventory, spec: Spec) -> dict[str, Any]:
    return {"runs": _runs(store, spec.subject), "synced": _synced(store, loaded, spec)}


def _runs(store: Store, subject: str) -> list[dict[str, Any]]:
    out = []
    for run in store.rotation_runs(subject=subject, limit=RUNS_LOOKED_AT):
        steps = {s["step"]: s for s in store.rotation_steps(run["id"]) if s["status"] == "done"}
        old = ((steps.get("identify") or {}).get("detail") or {}).get("old") or {}
        if not old.get("policies"):
            continue
        fps = [str(fp) for by_part in ((steps["identify"]["detail"] or {}).get(
            "old_fingerprints") or {}).values() for fp in (by_part or {}).values()]
        issued = (steps.get("issue") or {}).get("detail") or {}
        fps += [str(fp) for fp in (issued.get("fingerprints") or {}).values()]
        out.append({**{k: v for k, v in old.items() if k not in ("accessor", "old_invalid")},
                    "fingerprints": fps, "from": f"run {run['id']}"})
    return out


def _synced(store: Store, loaded: LoadedInventory, spec: Spec) -> dict[str, Any] | None:
    role, source = spec.issuer.get("role"), spec.issuer.get("source")
    rot = next((r for r in loaded.inventory.rotations if r.name == spec.name), None)
    if not role or rot is None or not rot.agents:
        return None
    found: dict[str, Any] = {}
    for agent in rot.agents:
        for grant in store.grants_for_agent(agent):
            cred = store.get_credential(grant.credential_id)
            tags = (cred.tags or {}) if cred else {}
            if (cred is None or cred.gone_at or cred.kind != "vault-token"
                    or cred.source != source or tags.get("role") != role
                    or tags.get("path") != f"auth/token/create/{role}" or "keyshift" in tags):
                continue
            found[cred.id] = cred
    if len(found) != 1:
        return None
    [cred] = found.values()
    tags = cred.tags or {}
    scope = str(cred.scope or "").removeprefix("policies: ")
    policies = [] if scope in ("", "(none)") else [p.strip() for p in scope.split(",")]
    return {
        "accessor": cred.native_id,
        "policies": policies,
        "ttl": int(cred.ttl_seconds or 0),
        "orphan": tags.get("orphan") == "True",
        "num_uses": int(tags.get("uses_left") or 0),
        "display_name": "",
        "meta": {},
        "from": f"sync of {cred.id}",
    }
