"""Responder actions: what the drill's --auto responder does for an incident step, one function
per word. Each returns evidence references (``run:ID``, ``audit:SEQ``) for its task and a note.

Where keyshift's issuer needs a person (a provider key), ``DrillPerson`` plays them at the
provider stand-in's console: it mints the new key when asked for one and revokes the old key
when asked to, unless the run skips ``revoke`` (a rehearsal of a person who never revoked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from console.drills.context import ACTOR, Drill
from console.drills.model import Action
from console.drills.vocab import Vocabulary
from console.drills.world import Item, read_inventory, standin, standin_keys, write_inventory
from console.errors import KeyshiftError

RESPONDERS = Vocabulary("responder action")
# sub-steps a --skip may name besides incident steps and action names
SUB_STEPS = ("revoke",)


@dataclass
class DrillPerson:
    """rotators.base.Interaction for a provider key, played at the stand-in's console."""

    provider: str
    revoke: bool = True
    # a hasty person revokes the leaked key the moment the new one is minted, before keyshift
    # has delivered it: the rehearsal of a response that breaks its consumers
    revoke_first: bool = False
    shown: list[str] = field(default_factory=list)
    _old_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # the keys live before this rotation: the one to revoke is among them (by id only)
        self._old_ids = {k["id"] for k in standin_keys(self.provider) if not k["revoked"]}

    def show(self, text: str) -> None:
        self.shown.append(text.split("\n")[0][:200])

    def ask_secret(self, prompt: str) -> str | None:
        key = str(standin(self.provider, "keys", name="rotated")["key"])
        if self.revoke_first and self.revoke:
            self._revoke_old()
        return key

    def confirm(self, prompt: str) -> bool:
        if "Revoke the old key" not in prompt or not self.revoke:
            return False
        if not self.revoke_first:
            self._revoke_old()
        return True

    def _revoke_old(self) -> None:
        for key_id in self._old_ids:
            standin(self.provider, "revoke", id=key_id)


def _rotate(drill: Drill, item: Item, order: str = "") -> dict[str, Any]:
    person = None
    if item.part == "provider-key":
        person = DrillPerson(item.record["provider"], revoke="revoke" not in drill.skip,
                             revoke_first=order == "revoke-first")
    engine = drill.engine()
    try:
        result = engine.rotate(item.credential_id, actor=ACTOR, grace=timedelta(0),
                               interaction=person, progress=drill.progress)
    except KeyshiftError as exc:
        run = getattr(getattr(exc, "result", None), "run_id", None)
        return {"evidence": [f"run:{run}"] if run else [], "ok": False,
                "note": f"{item.name}: {exc.one_line()}"}
    ok = result.status == "completed"
    return {"evidence": [f"run:{result.run_id}"], "ok": ok,
            "note": f"{item.name}: rotation {result.status}"
                    + (f" ({result.waiting or result.error})" if not ok and
                       (result.waiting or result.error) else "")}


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    # all([]) is True: an action that did nothing must not read as one that succeeded
    return {"evidence": [e for p in parts for e in p["evidence"]],
            "ok": bool(parts) and all(p["ok"] for p in parts),
            "note": "; ".join(p["note"] for p in parts)}


def _named(action: Action) -> str:
    for key in ("credential", "agent", "owner"):
        if getattr(action, key, None):
            return f"{key}: {getattr(action, key)}"
    return "all"


def _nothing(action: Action) -> dict[str, Any]:
    return {"evidence": [], "ok": False,
            "note": f"{action.action} {_named(action)} matched no credential of the drill: "
                    "nothing was done"}


@RESPONDERS.word("rotate", options=("order",),
                 help="rotate the named credentials (an agent's, an owner's, or one) through "
                      "the engine, revoking the old value at once; order: revoke-first has the "
                      "person revoke a provider key before the new one is delivered (a wrong "
                      "response to rehearse)")
def rotate(drill: Drill, action: Action) -> dict[str, Any]:
    items = drill.items_for(action)
    if not items:
        return _nothing(action)
    order = str(action.options.get("order", ""))
    if order not in ("", "overlap", "revoke-first"):
        return {"evidence": [], "ok": False,
                "note": f"rotate: unknown order {order!r} (overlap or revoke-first)"}
    return _merge([_rotate(drill, item, order) for item in items])


@RESPONDERS.word("resume-or-rollback",
                 help="carry an interrupted rotation of the credential on from where it "
                      "stopped; roll it back when it cannot be carried on")
def resume_or_rollback(drill: Drill, action: Action) -> dict[str, Any]:
    engine = drill.engine()
    ids = {i.credential_id for i in drill.items_for(action)}
    if not ids:
        return _nothing(action)
    parts = []
    for row in drill.store.unfinished_rotation_runs():
        if row["credential_id"] not in ids:
            continue
        try:
            result = engine.resume(row["id"], actor=ACTOR, progress=drill.progress)
            parts.append({"evidence": [f"run:{row['id']}"], "ok": True,
                          "note": f"run {row['id'][:12]} resumed: {result.status}"})
        except KeyshiftError as exc:
            try:
                engine.roll_back(row["id"], actor=ACTOR, progress=drill.progress)
                parts.append({"evidence": [f"run:{row['id']}"], "ok": True,
                              "note": f"run {row['id'][:12]} rolled back ({exc.one_line()})"})
            except KeyshiftError as again:
                parts.append({"evidence": [f"run:{row['id']}"], "ok": False,
                              "note": f"run {row['id'][:12]}: {again.one_line()}"})
    return _merge(parts) if parts else {"evidence": [], "ok": True,
                                        "note": "no unfinished rotation found"}


@RESPONDERS.word("reassign-owner", options=("to",),
                 help="give everything the owner had (agents, credentials) to a new owner in "
                      "the inventory and at the source, then sync")
def reassign_owner(drill: Drill, action: Action) -> dict[str, Any]:
    old, new = action.owner, str(action.options.get("to", ""))
    if not old or not new:
        return {"evidence": [], "ok": False, "note": "reassign-owner needs owner: and to:"}
    world = drill.world
    inv = read_inventory(world)
    moved = 0
    for agent in inv.get("agents", []):
        if agent.get("owner") == old:
            agent["owner"] = new
            moved += 1
    for entry in (*inv.get("credentials", []), *inv.get("rotations", [])):
        if entry.get("owner") == old:
            entry["owner"] = new
            moved += 1
    if not moved and not any(i.owner == old for i in world.items.values()):
        return {"evidence": [], "ok": False,
                "note": f"reassign-owner: nothing is owned by {old}: nothing was done"}
    world.inventory = inv
    write_inventory(world)
    for rec in world.agents.values():
        if rec["owner"] == old:
            rec["owner"] = new
    vault = world.vault()
    for item in world.items.values():
        if item.part == "kv-generated" and item.owner == old:
            meta = vault.secrets.kv.v2.read_secret_metadata(
                item.record["path"], mount_point=world.mount)["data"].get("custom_metadata") or {}
            vault.secrets.kv.v2.update_metadata(item.record["path"], mount_point=world.mount,
                                                custom_metadata={**meta, "owner": new})
        if item.owner == old:
            item.owner = new
            world.records[item.name]["owner"] = new
    world.save()
    drill.reload()
    seq = _sync(drill)
    return {"evidence": [f"audit:{seq}"] if seq else [], "ok": True,
            "note": f"ownership of {moved} inventory entries moved from {old} to {new}; synced"}


def _sync(drill: Drill) -> int | None:
    from console.sync import run_sync

    run_sync(drill.loaded, drill.store, drill.audit, actor=ACTOR)
    tail = drill.audit.tail(1)
    return tail[0].seq if tail else None


@RESPONDERS.word("sync", help="sync the drill's inventory into its store")
def sync(drill: Drill, action: Action) -> dict[str, Any]:
    seq = _sync(drill)
    return {"evidence": [f"audit:{seq}"] if seq else [], "ok": True, "note": "synced"}
