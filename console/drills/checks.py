"""Checks: how a drill's outcome is verified against the real servers, one function per word.

Each returns ``{"ok": bool, "why": str, "detail": {...}}`` (references and counts only) and is
registered with the capability it proves (scoring.py rates capabilities from them) and the
advice the after-action report gives when it fails. ``stolen-refused`` is the attacker trying
its in-memory copies against the issuer (the provider stand-in's 401, a refused AppRole login,
a shared secret no longer current).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from console.drills.context import Drill
from console.drills.model import Check
from console.drills.vocab import Vocabulary

CHECKS = Vocabulary("check")


@CHECKS.word("stolen-refused", capability="eradicate",
             advice="revoke the old value at its issuer (not only rotate it): a rotation whose "
                    "old value stays valid leaves the attacker in",
             help="the attacker's stolen copies are refused by their issuers")
def stolen_refused(drill: Drill, check: Check) -> dict[str, Any]:
    if drill.notes.get("by_reference"):
        return _refused_by_reference(drill, check)
    names = [i.name for i in drill.items_for(check) if i.name in drill.attacker.stolen]
    if not names:
        return {"ok": False, "why": "the attacker holds no copy to try (was it injected?)",
                "detail": {}}
    valid = [n for n in names if drill.world.items[n].works(drill.attacker.stolen[n])]
    return {"ok": not valid,
            "why": (f"still valid at the issuer: {', '.join(valid)}" if valid
                    else f"refused by the issuer: {', '.join(names)}"),
            "detail": {"tried": names, "still_valid": valid}}


def _refused_by_reference(drill: Drill, check: Check) -> dict[str, Any]:
    """A later process (``drill verify``) has no stolen copy: it asks the issuer about the
    values in use at injection by reference (a key id's status, an accessor, a KV version,
    the stand-in's key ids). One with no reference is said so and not counted as refused."""
    from console.drills.world import refused_by_ref

    valid, unknown, tried = [], [], []
    for item in drill.items_for(check):
        ref = drill.notes.get("refs", {}).get(item.name) or {}
        tried.append(item.name)
        got = refused_by_ref(drill.world, item, ref)
        if got is None:
            unknown.append(item.name)
        elif not got:
            valid.append(item.name)
    ok = bool(tried) and not valid and not unknown
    why = "; ".join(([f"still valid at the issuer: {', '.join(valid)}"] if valid else [])
                    + ([f"cannot be checked by reference (none recorded at injection): "
                        f"{', '.join(unknown)}"] if unknown else [])) \
        or f"refused by the issuer (by reference): {', '.join(tried)}"
    return {"ok": ok, "why": why, "detail": {"tried": tried, "still_valid": valid,
                                            "unchecked": unknown}}


@CHECKS.word("consumer-healthy", capability="recover",
             advice="deliver the new value everywhere its agents read it before revoking the old",
             help="each agent reads its credential where it always does and its issuer "
                  "accepts it")
def consumer_healthy(drill: Drill, check: Check) -> dict[str, Any]:
    items = drill.items_for(check)
    broken = [i.name for i in items if not i.consumer()]
    return {"ok": not broken,
            "why": f"broken consumers: {', '.join(broken)}" if broken
            else f"{len(items)} consumer(s) healthy",
            "detail": {"checked": [i.name for i in items], "broken": broken}}


@CHECKS.word("probe-failures", options=("max",), capability="recover",
             advice="rotate with overlap (mint, deliver, verify, then revoke) so consumers "
                    "never see a refused value",
             help="the consumer probe that ran through the response (on a timer and after "
                  "each rotation step) failed at most max times (default 0), and it ran "
                  "after the old value was revoked")
def probe_failures(drill: Drill, check: Check) -> dict[str, Any]:
    stats = drill.notes.get("probe")
    if not stats and drill.notes.get("by_reference"):
        return _switch_by_reference(drill)
    if not stats:
        return {"ok": False, "why": "no consumer probe ran", "detail": {}}
    limit = int(check.options.get("max", 0))
    after = stats.get("after_steps") or []
    # a round after the revoke is what shows consumers had the new value by then: rounds on
    # a timer alone can all fall before the rotation or after it is over
    revoked = any(s == "revoke" or s.startswith("revoke:") for s in after)
    why = (f"{stats['failed']} failed probe(s) in {stats['rounds']} round(s), "
           f"{len(after)} after a rotation step (allowed {limit})")
    if stats["failed"] > limit and stats.get("failed_after"):
        why += "; failed after: " + ", ".join(stats["failed_after"])
    if not revoked:
        why += "; no probe ran after a revoke step: the switch to the new value was not probed"
    return {"ok": stats["failed"] <= limit and revoked, "why": why, "detail": stats}


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    got = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return got if got.tzinfo else got.replace(tzinfo=UTC)


def _switch_by_reference(drill: Drill) -> dict[str, Any]:
    """No probe ran while a person worked the drill (its process was gone): what the probe
    would have seen is decided from the record instead. A consumer reads its env file on each
    call, so it was refused exactly when the old key was revoked before the new one reached
    the env file: each probed provider key's old keys (the stand-in's key ids at injection,
    their revoke times) against the delivery steps of its rotation runs since the injection.
    A key rotated without keyshift, or never revoked, cannot be judged: not verified."""
    from console.drills.world import standin_keys
    from console.store import ts

    since = ts(drill.injected_at) if drill.injected_at else ""
    names = drill.scenario.respond.probes
    problems, ok_notes, judged = [], [], []
    for name in names:
        item = drill.world.items[name]
        ref = (drill.notes.get("refs") or {}).get(name) or {}
        if item.part != "provider-key" or "key_ids" not in ref:
            problems.append(f"{name}: cannot be decided by reference (no probe ran, and only a "
                            "provider key's revoke times are recorded)")
            continue
        revoked = [_when(k["revoked"]) for k in standin_keys(item.record["provider"])
                   if k["id"] in ref["key_ids"]]
        delivered = [_when(s["finished_at"]) for r in drill.store.rotation_runs(
            item.credential_id, limit=50) if (r.get("created_at") or "") >= since
            for s in drill.store.rotation_steps(r["id"])
            if s["step"].startswith("deliver") and s["status"] == "done"]
        delivered = [d for d in delivered if d is not None]
        if not revoked or any(r is None for r in revoked):
            problems.append(f"{name}: its old key was never revoked: the switch cannot be "
                            "judged")
        elif not delivered:
            problems.append(f"{name}: no keyshift rotation delivered a new key: when consumers "
                            "got it cannot be told by reference")
        else:
            first = min(delivered)
            early = [r for r in revoked if r is not None and r < first]
            judged.append(name)
            if early:
                problems.append(f"{name}: the old key was revoked at {min(early).isoformat()}, "
                                f"before the new one was delivered at {first.isoformat()}: "
                                "its consumers were refused in between")
            else:
                ok_notes.append(f"{name}: old key revoked after the new one was delivered")
    why = "; ".join(problems) if problems else \
        "no probe ran in this process; by reference: " + "; ".join(ok_notes)
    return {"ok": bool(names) and not problems, "why": why,
            "detail": {"by_reference": True, "judged": judged, "problems": problems}}


@CHECKS.word("no-unfinished-runs", capability="eradicate",
             advice="after a failed rotation, resume it (keyshift rotate --resume) or roll it "
                    "back (keyshift runs rollback RUN): a half-done run holds its credential",
             help="no rotation of the credentials is left unfinished (claimed, half way)")
def no_unfinished_runs(drill: Drill, check: Check) -> dict[str, Any]:
    ids = {i.credential_id for i in drill.items_for(check)}
    left = [r["id"] for r in drill.store.unfinished_rotation_runs() if r["credential_id"] in ids]
    return {"ok": not left,
            "why": f"{len(left)} rotation run(s) left unfinished" if left
            else "no rotation left unfinished",
            "detail": {"unfinished": left}}


@CHECKS.word("rotated", capability="eradicate",
             advice="rotate every credential in scope, not only the one that was seen leaking",
             help="each credential has a completed rotation since the injection")
def rotated(drill: Drill, check: Check) -> dict[str, Any]:
    from console.store import ts

    since = ts(drill.injected_at) if drill.injected_at else ""
    missing = []
    for item in drill.items_for(check):
        runs = drill.store.rotation_runs(item.credential_id, limit=50)
        if not any(r["status"] == "completed" and (r.get("created_at") or "") >= since
                   for r in runs):
            missing.append(item.name)
    return {"ok": not missing,
            "why": f"not rotated: {', '.join(missing)}" if missing else "all rotated",
            "detail": {"not_rotated": missing}}


@CHECKS.word("owner-gone", capability="eradicate",
             advice="reassign every agent and credential of a departed owner in the inventory",
             help="after a sync, no agent or credential in the store is owned by the owner")
def owner_gone(drill: Drill, check: Check) -> dict[str, Any]:
    owner = check.owner
    agents = [a["name"] for a in drill.store.agents() if a.get("owner") == owner]
    creds = [i.name for i in drill.world.items.values()
             if (row := drill.store.get_credential(i.credential_id)) is not None
             and row.owner == owner]
    left = agents + creds
    return {"ok": not left,
            "why": f"still owned by {owner}: {', '.join(left)}" if left
            else f"nothing owned by {owner}",
            "detail": {"agents": agents, "credentials": creds}}


@CHECKS.word("tasks-done", options=("steps",), capability="communicate",
             advice="work every step of the checklist, including telling the owners",
             help="the incident's tasks of these steps are done")
def tasks_done(drill: Drill, check: Check) -> dict[str, Any]:
    from console import incidents

    steps = check.options.get("steps") or []
    steps = [steps] if isinstance(steps, str) else list(steps)
    inc = incidents.load(drill.store, drill.incident_id or "")
    undone = [t["step"] for t in inc["tasks"]
              if (not steps or t["step"] in steps) and t["status"] != "done"]
    return {"ok": not undone,
            "why": f"not done: {', '.join(undone)}" if undone else "all done",
            "detail": {"undone": undone}}
