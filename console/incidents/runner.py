"""``run_incident``: the automated tasks of an incident, in order.

A task is automated when its template names an action (templates.py): ``contain-agent``,
``contain-credential``, ``review``, ``remove``, ``eradicate``, ``verify``. Each open automated
task (todo or doing) is started, run, and recorded: status, times, a note saying what
happened, evidence references (``audit:SEQ`` for each action's audit entry, ``run:ID`` for
each rotation and the eradicate playbook run, ``usage:ID`` for use since ``since``) and an
``incident.task`` audit entry with ``auto: true``. What an action found and did (outcomes by
reference, the hunt's findings, what was removed) is kept in the incident's detail under
``auto.<step>``, which the later tasks read: remove deletes what review's hunt found; verify
checks what contain revoked, what eradicate rotated and what remove deleted.

Removing IAM users, keys and policies is not a rotation: keyshift cannot tell who made them
(no CloudTrail), and a wrong finding deleted is an outage. So ``remove`` deletes only when the
caller says a person checked the list (``remove_found=True``, ``incident run --remove-found``,
or ``incident hunt ID --remove``, which records the task too); otherwise it is left
``waiting``: open, its note saying how many findings wait and the command to remove them, and
the run's ``ok`` false. eradicate and verify still run.

eradicate waits too while a step needs a person (a provider key minted through its checklist,
a credential nobody declared an issuer for): its note names each, with ``keyshift rotate REF``
or how to mark the task done once rotated by hand. Run again, it does not rotate twice what was
rotated since the incident opened (by it or by a person). A step the playbook skipped is not
rotated: it counts only when a completed rotation since the incident opened covers it (the step
it shared a rotation with, another run meanwhile); behind a rotation still in its grace period
(the value it replaced, perhaps the stolen one, is valid until then) eradicate waits, naming the
run and ``keyshift runs finish RUN --now``; otherwise it fails and the next run retries it.
verify checks every credential
eradicate had to rotate (what it recorded, or what it would select when it has not run): a
completed rotation since the incident opened with its verify step passed; it waits while only
a person's rotations are missing, and fails otherwise. What remove deleted is gone only when
IAM says NoSuchEntity; any other answer is a failed check.

A task that fails (or waits) stays ``doing`` with a note that starts ``failed:`` (``waiting:``)
(the schema's statuses are todo, doing, done and skipped); running the incident again retries
it. ``skip`` leaves the named steps untouched (todo), which is how a drill rehearses a wrong
response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from console.errors import KeyshiftError, ReadOnlyError, UsageError
from console.incidents import actions as act
from console.incidents import hunt as hunting

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store

AUTO_ACTIONS = ("contain-agent", "contain-credential", "review", "remove", "eradicate",
                "verify")
FAILED = "failed: "
WAITING = "waiting: "


@dataclass
class TaskOutcome:
    status: str  # done | failed | skipped | waiting (for a person: left open, not a failure)
    note: str
    evidence: list[dict[str, str]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    rotation_run_id: str | None = None


def _audit_refs(seqs: list[int | None]) -> list[dict[str, str]]:
    return [{"kind": "audit", "ref": str(s)} for s in seqs if s is not None]


def _count(words: list[str]) -> str:
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return ", ".join(f"{n} {w}" for w, n in counts.items()) or "nothing"


def _needs_person(manual: list[dict[str, Any]], done_with: str) -> str:
    """Which credentials wait for a person and how each is rotated: a provider key through
    its checklist (``keyshift rotate``), an undeclared one where it is issued (keyshift
    cannot: nobody declared its issuer), after which the person marks the task done."""
    cids = [str(m["credential"]) for m in manual]
    by_hand = [str(m["credential"]) for m in manual if "keyshift rotate" not in
               str(m.get("detail") or "")]
    how = [f"keyshift rotate {c}" for c in cids if c not in by_hand][:10]
    text = f"{len(cids)} credential(s) need a person to rotate them"
    if how:
        text += ": " + "; ".join(how) + " (the provider's checklist), then run the incident " \
                "again"
    if by_hand:
        text += (f"; {', '.join(by_hand[:10])}: nobody declared who issues "
                 f"{'it' if len(by_hand) == 1 else 'them'}, so rotate by hand (or declare "
                 f"the rotation in the inventory), then {done_with}")
    if len(cids) > 10:
        text += f" (and {len(cids) - 10} more)"
    return text


def scope_agents(scope: dict[str, Any]) -> list[str]:
    if scope.get("kind") == "agent":
        return [scope["agent"]["name"]]
    if scope.get("kind") == "owner":
        return [a["name"] for a in scope["agents"]]
    return []


def aws_sources(loaded: LoadedInventory, scope: dict[str, Any]) -> list[str]:
    """The inventory's AWS sources the scope touches: its credentials' sources and its
    agents' AWS identities' sources."""
    from console.incidents import scope_credentials

    names = [c["credential"].split(":", 1)[0] for c in scope_credentials(scope)]
    for agent in scope_agents(scope):
        decl = next((a for a in loaded.inventory.agents if a.name == agent), None)
        names += [i.source for i in (decl.identities if decl else [])
                  if i.type in ("aws-iam-user", "aws-iam-role")]
    aws = {s.name for s in loaded.inventory.sources if s.type == "aws"}
    return [n for n in dict.fromkeys(names) if n in aws]


def incident_since(inc: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(inc["since"]).replace("Z", "+00:00"))


class _Run:
    def __init__(self, store: Store, audit: AuditLog, loaded: LoadedInventory,
                 inc: dict[str, Any], detail: dict[str, Any], *, actor: str, engine: Any,
                 on_event: Callable[[dict], None] | None, remove_found: bool = False) -> None:
        from console.rotation.context import Clients

        self.store, self.audit, self.loaded, self.inc = store, audit, loaded, inc
        self.detail, self.actor, self.on_event = detail, actor, on_event
        self.engine = engine
        self.remove_found = remove_found
        self.clients = engine.clients if engine is not None and hasattr(
            engine, "clients") else Clients(loaded)
        self.scope = inc["scope"]
        self.auto: dict[str, Any] = detail.setdefault("auto", {})

    def emit(self, event: str, **fields: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event({"event": event, "incident": self.inc["id"], **fields})
        except Exception:  # a watcher that went away must not stop the response
            self.on_event = None

    # --- what the incident is about --------------------------------------------------------

    def agents(self) -> list[str]:
        return scope_agents(self.scope)

    def credential_ids(self) -> list[str]:
        from console.incidents import scope_credentials

        return [c["credential"] for c in scope_credentials(self.scope)]

    def aws_sources(self) -> list[str]:
        return aws_sources(self.loaded, self.scope)

    def since(self) -> datetime:
        return incident_since(self.inc)

    # --- actions -----------------------------------------------------------------------------

    def contain_agent(self) -> TaskOutcome:
        refs: list[act.Ref] = []
        errors: list[str] = []
        limits: list[str] = []
        for agent in self.agents():
            found = act.agent_targets(self.store, self.loaded, self.clients, agent)
            refs += found.refs
            errors += found.errors
            limits += found.limits
        return self._contained(refs, errors, limits)

    def contain_credential(self) -> TaskOutcome:
        cid = self.scope["credential"]["credential"]
        ref = act.ref_from_credential(self.store, cid)
        if act.declared_token(self.store, cid):
            found = act.declared_token_targets(self.store, self.loaded, self.clients, cid)
            if not found.refs and not found.errors:
                return TaskOutcome("skipped", "; ".join(found.limits) or "no live token of its "
                                   "token role", detail={"outcomes": [],
                                                         "limits": found.limits})
            return self._contained(found.refs, found.errors, found.limits)
        if ref.kind not in act.REVOCABLE:
            return TaskOutcome("skipped", f"a {ref.kind} cannot be revoked at its issuer: "
                               "eradicate rotates it with grace 0",
                               detail={"outcomes": []})
        return self._contained([ref], [], [])

    def _contained(self, refs: list[act.Ref], errors: list[str],
                   limits: list[str]) -> TaskOutcome:
        outcomes = act.contain(self.clients, self.audit, refs, actor=self.actor,
                               incident=self.inc["id"])
        for o in outcomes:
            self.emit("progress", credential=o.credential, status=o.outcome, message=o.error)
        failed = [o for o in outcomes if not o.ok]
        note = _count([o.outcome for o in outcomes]) + f" ({len(outcomes)} credential(s))"
        if limits:
            note += "; limits: " + "; ".join(limits)
        problems = [o.error or o.credential for o in failed] + errors
        status = "failed" if problems else "done"
        if problems:
            note = "; ".join(problems) + "; " + note
        return TaskOutcome(status, note, _audit_refs([o.audit_seq for o in outcomes]),
                           detail={"outcomes": [o.as_dict() for o in outcomes],
                                   "errors": errors, "limits": limits})

    def review(self) -> TaskOutcome:
        since = self.since()
        ids = self.credential_ids()
        usage = self.store.usage_since(ids, since)
        sources = self.aws_sources()
        found = hunting.hunt(self.store, self.loaded, self.clients, sources, since) if sources \
            else hunting.HuntResult()
        for f in found.findings:
            self.emit("progress", finding=f.label, status="found", message=f.reason)
        tokens = self._token_use(since)
        for accessor, requests in tokens["accessors"].items():
            if requests:
                self.emit("progress", credential=f"token {accessor[:8]}", status="used",
                          message=f"{len(requests)} request(s) since {self.inc['since']}")
        used = sorted({u["credential_id"] for u in usage})
        note = (f"{len(usage)} usage event(s) since {self.inc['since']} on {len(used)} "
                f"credential(s); hunt in {', '.join(sources) or 'no AWS source in scope'}: "
                f"{len(found.findings)} finding(s)")
        if found.findings:
            note += " (" + "; ".join(f.label for f in found.findings[:10]) + ")"
        made = sum(len(r) for r in tokens["accessors"].values())
        if tokens["accessors"]:
            note += (f"; {len(tokens['accessors'])} token(s) made {made} request(s) since, "
                     f"reading {len(tokens['kv_reads'])} KV secret(s)")
        problems = found.errors + tokens["errors"]
        if problems:
            note = "; ".join(problems) + "; " + note
        evidence = [{"kind": "usage", "ref": str(u["id"])} for u in usage[:200]]
        return TaskOutcome("failed" if problems else "done", note, evidence,
                           detail={"usage": len(usage), "used": used, "hunt": found.as_dict(),
                                   "token_use": tokens})

    def _token_use(self, since: datetime) -> dict[str, Any]:
        """The requests of the scope's tokens (and those contain revoked) since ``since``."""
        by_source: dict[str, list[str]] = {}
        for o in self.auto.get("contain", {}).get("outcomes", []):
            if o["kind"] == act.TOKEN:
                source, _, accessor = o["credential"].split(":", 2)
                by_source.setdefault(source, []).append(accessor)
        for cid in self.credential_ids():
            source, kind, accessor = [*cid.split(":", 2), "", ""][:3]
            if act.declared_token(self.store, cid):
                # its live tokens (contain, when it ran, already listed those it revoked)
                found = act.declared_token_targets(self.store, self.loaded, self.clients, cid)
                for ref in found.refs:
                    by_source.setdefault(ref.source, []).append(ref.native_id)
            elif kind == act.TOKEN:
                by_source.setdefault(source, []).append(accessor)
        out: dict[str, Any] = {"accessors": {}, "kv_reads": [], "errors": []}
        for source, accessors in by_source.items():
            try:
                got = hunting.token_use(self.clients, self.loaded, source,
                                        list(dict.fromkeys(accessors)), since)
            except KeyshiftError as exc:
                out["errors"].append(exc.one_line())
                continue
            out["accessors"] |= got["accessors"]
            out["kv_reads"] += got["kv_reads"]
            out["errors"] += got["errors"]
        return out

    def _eradicate_steps(self) -> tuple[list[Any], list[str]]:
        """What eradicate rotates: the agents' reach (rotate-agent's own selection) and the
        scope's credentials, plus every other place that holds one of their values; not the
        tokens and secret-ids no rotation declares (contain revoked those)."""
        from console.playbooks import get_playbook, select
        from console.playbooks.model import Selected

        now = datetime.now(UTC)
        chosen: list[Selected] = []
        for agent in self.agents():
            chosen += select(get_playbook("rotate-agent"), {"agent": agent},
                             store=self.store, loaded=self.loaded, now=now)
        extra = [] if self.scope.get("kind") == "agent" else self.credential_ids()
        # what a scope token read since ``since`` (the Vault audit log) is rotated too
        extra += self.auto.get("review", {}).get("token_use", {}).get("kv_reads", [])
        for cid in [*(s.credential_id for s in chosen if s.credential_id), *extra]:
            extra += self.store.same_value_elsewhere(cid)
        seen = {s.credential_id for s in chosen}
        for cid in extra:
            if cid not in seen:
                seen.add(cid)
                chosen.append(Selected(0, "rotate", cid, None, reason="same value / in scope"))
        out, left = [], []
        for s in chosen:
            cred = self.store.get_credential(s.credential_id or "")
            if cred is None or cred.gone_at:
                continue
            if cred.kind in (act.TOKEN, act.SECRET_ID) and "rotation" not in (cred.tags or {}):
                left.append(cred.id)
                continue
            out.append(s)
        for n, s in enumerate(out, start=1):
            s.position = n
        return out, left

    def _mark_done(self, action: str) -> str:
        pos = next((t["position"] for t in self.inc["tasks"] if t.get("action") == action), "N")
        return f"mark this task done: keyshift incident task {self.inc['id']} {pos} done"

    def opened(self) -> datetime:
        return datetime.fromisoformat(str(self.inc["opened_at"]).replace("Z", "+00:00"))

    def _run_problem(self, run_id: str, cid: str) -> str | None:
        """Why a rotation run does not show ``cid`` rotated (None: completed, verify passed)."""
        row = self.store.get_rotation_run(run_id)
        if row is None or row["status"] != "completed":
            return (f"rotation {run_id[:12]} of {cid} is "
                    f"{row['status'] if row else 'gone'}, not completed")
        steps = {s["step"]: s["status"] for s in self.store.rotation_steps(run_id)}
        if steps.get("verify") != "done":
            return f"rotation {run_id[:12]} of {cid}: its verify step did not pass"
        return None

    def _rotated_since_open(self, cid: str) -> str | None:
        """A completed rotation (verify passed) of ``cid``, or of the declared rotation it
        belongs to, started after the incident opened: by this incident's eradicate, or by a
        person (``keyshift rotate`` through a provider's checklist). Its run id, else None."""
        from console.store import parse_ts

        subject = cid
        spec_for = getattr(self.engine, "spec_for", None)
        if spec_for is not None:
            try:
                subject = spec_for(cid).subject
            except KeyshiftError:
                subject = cid
        opened = self.opened()
        for row in self.store.rotation_runs(subject=subject, status="completed", limit=20):
            if parse_ts(row["created_at"]) < opened:
                break  # newest first: the rest are older still
            if self._run_problem(row["id"], cid) is None:
                return str(row["id"])
        return None

    def _skipped_problem(self, step: Any) -> str:
        """Why a skipped eradicate step leaves its credential unrotated: ``waiting: ...`` when
        the rotation holding it waits out its grace (the old value is valid until then), else
        a failure (the run was stopped, an earlier step halted it)."""
        cid = step.credential_id
        row = self.store.get_rotation_run(step.rotation_run_id) if step.rotation_run_id \
            else None
        if row is not None and row["status"] == "awaiting-revoke":
            return (f"{WAITING}{cid}: not rotated: rotation {str(row['id'])[:12]} still waits "
                    f"out its grace (revoke after {row.get('revoke_after') or 'its grace'}), "
                    "so the value it replaced stays valid; revoke it now with keyshift runs "
                    f"finish {row['id']} --now, then run the incident again")
        return f"{cid}: not rotated ({step.detail or 'skipped'}); run the incident again"

    def eradicate(self) -> TaskOutcome:
        from console.playbooks import get_playbook, run_playbook

        steps, left = self._eradicate_steps()
        evidence: list[dict[str, str]] = []
        detail: dict[str, Any] = {"rotations": [], "revoked_not_rotated": left, "manual": []}
        problems: list[str] = []
        waits: list[str] = []  # skipped behind a rotation still in its grace period
        first_run = None
        # run again (after a wait for a person, or a failure): what is already rotated since
        # the incident opened is not rotated twice
        todo = []
        for s in steps:
            done_run = self._rotated_since_open(s.credential_id or "")
            if done_run is None:
                todo.append(s)
                continue
            detail["rotations"].append({"credential": s.credential_id, "status": "done",
                                        "run": done_run, "error": None,
                                        "detail": "rotated since the incident opened"})
            evidence.append({"kind": "run", "ref": done_run})
            first_run = first_run or done_run
        carried = len(steps) - len(todo)
        for n, s in enumerate(todo, start=1):
            s.position = n
        steps = todo
        manual: list[dict[str, Any]] = []
        if steps:
            pb = get_playbook("rotate-agent").model_copy(update={
                "name": "incident-eradicate", "grace": timedelta(0),
                "description": f"eradicate for {self.inc['id']}"})

            def relay(event: Any) -> None:
                if getattr(event, "kind", "") in ("step", "progress"):
                    self.emit("progress", credential=getattr(event, "credential_id", None),
                              status=getattr(event, "status", None),
                              message=getattr(event, "message", None))

            result = run_playbook(pb, {"agent": self.agents()[0] if self.agents() else "-"},
                                  store=self.store, audit=self.audit, loaded=self.loaded,
                                  actor=self.actor, engine=self.engine, on_event=relay,
                                  selected=steps, selected_at=datetime.now(UTC))
            evidence.append({"kind": "run", "ref": result.run_id})
            for s in result.steps:
                status, run = s.status, s.rotation_run_id
                if status == "skipped":
                    # skipped is not rotated: the stolen value may still be valid. Only a
                    # completed rotation since the incident opened (the step that shared its
                    # rotation, another run meanwhile) covers it
                    covered = self._rotated_since_open(s.credential_id or "")
                    if covered is not None:
                        status, run = "done", covered
                    else:
                        why = self._skipped_problem(s)
                        (waits if why.startswith(WAITING) else problems).append(
                            why.removeprefix(WAITING))
                detail["rotations"].append({"credential": s.credential_id, "status": status,
                                            "run": run, "error": s.error,
                                            "detail": s.detail})
                if run and status == "done":
                    evidence.append({"kind": "run", "ref": run})
                    first_run = first_run or run
                if status in ("failed", "claimed-elsewhere"):
                    problems.append(f"{s.credential_id}: {s.error or s.detail or s.status}")
            counts = _count([s.status for s in result.steps])
            manual = [r for r in detail["rotations"] if r["status"] == "manual"]
            detail["manual"] = [r["credential"] for r in manual]
        else:
            counts = "nothing to rotate" if not carried else "nothing left to rotate"
        if carried:
            counts += f"; {carried} rotated already since the incident opened"
        note = (f"rotated with grace 0: {counts}"
                + (f"; {len(left)} token(s)/secret-id(s) revoked at contain, not rotated"
                   if left else ""))
        if problems:
            waiting = self.auto.get("remove", {}).get("status") == "waiting"
            note = "; ".join(problems) + "; " + note + (
                "; hunt findings still wait for removal (a second key on a user makes IAM "
                "refuse its rotation's new key)" if waiting else "")
            return TaskOutcome("failed", note, evidence, detail, rotation_run_id=first_run)
        if manual or waits:
            # a provider key or an undeclared credential: minted by a person, so eradicate
            # is not done until they have rotated it (the next run sees their rotation); a
            # rotation in its grace period: the old value stays valid until it is revoked
            text = "; ".join(([_needs_person(manual, self._mark_done("eradicate"))]
                              if manual else []) + waits)
            return TaskOutcome("waiting", text + "; " + note, evidence, detail,
                               rotation_run_id=first_run)
        return TaskOutcome("done", note, evidence, detail, rotation_run_id=first_run)

    def remove(self) -> TaskOutcome:
        """Delete exactly the findings review's hunt listed, only when a person checked the
        list (``remove_found``); else leave them, saying how to."""
        review = self.auto.get("review")
        if not review or "hunt" not in review:
            return TaskOutcome("waiting", "the review's hunt has not run: run review first, "
                               "then this task", detail={"removed": []})
        findings = [hunting.Finding.from_dict(f) for f in review["hunt"].get("findings") or []]
        if not findings:
            return TaskOutcome("done", "the hunt found nothing to remove",
                               detail={"removed": []})
        labels = "; ".join(f.label for f in findings[:10]) + (
            f"; and {len(findings) - 10} more" if len(findings) > 10 else "")
        iid = self.inc["id"]
        if not self.remove_found:
            return TaskOutcome(
                "waiting",
                f"{len(findings)} hunt finding(s) wait for a person ({labels}): keyshift cannot "
                f"tell who made them; check them with `keyshift incident hunt {iid}`, then "
                f"remove them with `keyshift incident hunt {iid} --remove` (or run again with "
                "--remove-found)",
                detail={"removed": [], "waiting": len(findings)})
        removed = hunting.remove(self.clients, self.audit, self.loaded, findings,
                                 actor=self.actor, incident=iid)
        for r in removed:
            self.emit("progress", finding=f"{r['what']} {r['name']}", status=r["outcome"],
                      message=r.get("error"))
        problems = [r["error"] for r in removed if r.get("outcome") == "failed"]
        note = f"removed the {len(findings)} hunt finding(s) a person checked ({labels}): " + \
            _count([r["outcome"] for r in removed])
        if problems:
            note = "; ".join(problems) + "; " + note
        return TaskOutcome("failed" if problems else "done", note,
                           _audit_refs([r.get("audit_seq") for r in removed]),
                           detail={"removed": removed})

    def verify(self) -> TaskOutcome:
        """By reference, never by value: what contain revoked (and the scope's revocable
        credentials, contained or not) is refused at its issuer; each eradicate rotation run
        completed with its verify step ok; what the hunt removed is gone."""
        problems: list[str] = []
        checked = 0
        refs: dict[str, act.Ref] = {}
        for o in self.auto.get("contain", {}).get("outcomes", []):
            ref = act.ref_from_credential_or_id(self.store, o["credential"])
            if ref.user is None and o.get("user"):
                ref = act.Ref(ref.source, ref.kind, ref.native_id, user=o["user"],
                              name=ref.name)
            refs.setdefault(o["credential"], ref)
        for cid in self.credential_ids():
            cred = self.store.get_credential(cid)
            if cred is not None and (cred.tags or {}).get("rotation") == cred.native_id:
                continue  # a declared rotation's row names an env file, not an accessor: its
                # rotation run (below) says whether the old value is refused
            if cred is not None and cred.kind in act.REVOCABLE and (
                    self.scope.get("kind") != "owner"):
                refs.setdefault(cid, act.ref_from_credential(self.store, cid))
        for ref in refs.values():
            checked += 1
            try:
                state = act.still_valid(self.clients, ref)
            except KeyshiftError as exc:
                problems.append(exc.one_line())
                continue
            if state:
                problems.append(f"{ref.label} is still valid at {ref.source} ({state})")
        # every credential eradicate had to rotate (what it recorded, or what it would
        # select when it has not run) needs a completed rotation with its verify passed:
        # eradicate's own run, else one since the incident opened (a person's)
        if "eradicate" in self.auto:
            rotations = self.auto["eradicate"].get("rotations", [])
        else:
            rotations = [{"credential": s.credential_id, "status": "not run", "run": None}
                         for s in self._eradicate_steps()[0]]
        manual: list[dict[str, Any]] = []
        for r in rotations:
            checked += 1
            cid = str(r["credential"])
            why = self._run_problem(r["run"], cid) if r.get("run") else None
            if (why is None and r.get("run")) or self._rotated_since_open(cid):
                continue
            if r.get("status") == "manual":
                manual.append(r)
            else:
                problems.append(why or f"{cid} was not rotated (eradicate: {r.get('status')})")
        removed = self.auto.get("remove", {}).get("removed", [])
        checked += sum(1 for r in removed if r.get("outcome") == "deleted")
        problems += hunting.still_there(self.clients, removed)
        note = f"{checked} check(s) by reference"
        waits = [str(m["credential"]) for m in manual]
        if manual:
            note += "; " + _needs_person(manual, self._mark_done("verify"))
        if problems:
            return TaskOutcome("failed", "; ".join(problems) + "; " + note,
                               detail={"problems": problems, "manual": waits})
        if manual:
            return TaskOutcome("waiting", note, detail={"problems": [], "manual": waits})
        return TaskOutcome("done", note + ": all refused, completed or gone",
                           detail={"problems": [], "manual": []})


def run_incident(
    store: Store,
    audit: AuditLog,
    loaded: LoadedInventory,
    incident_id: str,
    *,
    actor: str,
    engine: Any = None,
    only: list[int | str] | None = None,
    skip: list[str] | None = None,
    on_event: Callable[[dict], None] | None = None,
    now: datetime | None = None,
    remove_found: bool = False,
) -> dict[str, Any]:
    """Run every automated task still open, in order (``only``: these positions or step
    names; ``skip``: step names left undone; ``remove_found``: a person checked the hunt's
    list, so ``remove`` deletes it). Returns {"incident", "tasks": [{position, step, status,
    note, evidence}], "ok", "waiting"}: ok when no task failed or waits for a person
    (``waiting``: their positions)."""
    from console.incidents import load

    if store.read_only or getattr(engine, "read_only", False):
        raise ReadOnlyError(f"incident run {incident_id}")
    inc = load(store, incident_id)
    if inc["status"] != "open":
        raise UsageError(f"incident {incident_id} is closed", hint="its tasks no longer change")
    chosen = plan(inc, only=only, skip=skip)
    if engine is None:
        from console.rotation import RotationEngine

        engine = RotationEngine(store, audit, loaded)
    detail = dict(store.get_incident(incident_id)["detail"])  # type: ignore[index]
    runner = _Run(store, audit, loaded, inc, detail, actor=actor, engine=engine,
                  on_event=on_event, remove_found=remove_found)
    summary = []
    for task in chosen:
        step = task["step"]
        started = now or datetime.now(UTC)
        if task["status"] == "todo":
            store.update_incident_task(incident_id, task["position"], status="doing",
                                       actor=actor, started_at=started)
        runner.emit("task-start", position=task["position"], step=step, action=task["action"])
        method = {"contain-agent": runner.contain_agent,
                  "contain-credential": runner.contain_credential}.get(
            task["action"], getattr(runner, task["action"], None))
        try:
            result = method() if method else TaskOutcome(
                "failed", f"unknown action {task['action']!r}")
        except KeyshiftError as exc:
            result = TaskOutcome("failed", exc.one_line())
        key = "contain" if task["action"].startswith("contain") else task["action"]
        runner.auto[key] = {**result.detail, "status": result.status, "position":
                            task["position"]}
        store.update_incident_detail(incident_id, detail)
        finished = now or datetime.now(UTC)
        evidence = task["evidence"] + [e for e in result.evidence if e not in task["evidence"]]
        prefix = {"failed": FAILED, "waiting": WAITING}.get(result.status, "")
        fields: dict[str, Any] = {"actor": actor, "evidence": evidence,
                                  "note": prefix + result.note}
        if result.status in ("done", "skipped"):
            fields |= {"status": result.status, "done_at": finished}
        if result.rotation_run_id and not task["rotation_run_id"]:
            fields["rotation_run_id"] = result.rotation_run_id
        store.update_incident_task(incident_id, task["position"], **fields)
        audit.append(actor, "incident.task", incident_id, {
            "task": task["position"], "step": step, "action": "run", "auto": True,
            "status": "doing" if result.status in ("failed", "waiting") else result.status,
            "outcome": result.status, "evidence": [f"{e['kind']}:{e['ref']}"
                                                   for e in result.evidence[:50]],
        })
        runner.emit("task-done", position=task["position"], step=step, status=result.status,
                    message=fields["note"])
        summary.append({"position": task["position"], "step": step, "status": result.status,
                        "note": fields["note"], "evidence": result.evidence})
    waiting = [t["position"] for t in summary if t["status"] == "waiting"]
    return {"incident": load(store, incident_id), "tasks": summary, "waiting": waiting,
            "ok": not waiting and all(t["status"] != "failed" for t in summary)}


def record_removal(store: Store, audit: AuditLog, incident_id: str,
                   removed: list[dict[str, Any]], *, actor: str) -> int | None:
    """``incident hunt ID --remove`` deleted a list a person saw: the incident's open remove
    task records it (done, or failed with the errors) so verify checks it is gone. Returns the
    task's position, or None when the incident has no open remove task."""
    from console.incidents import load

    inc = load(store, incident_id)
    task = next((t for t in inc["tasks"] if t.get("action") == "remove"
                 and t["status"] in ("todo", "doing")), None)
    if task is None or inc["status"] != "open":
        return None
    detail = dict(store.get_incident(incident_id)["detail"])  # type: ignore[index]
    auto = detail.setdefault("auto", {})
    earlier = auto.get("remove", {}).get("removed", [])
    auto["remove"] = {"removed": [*earlier, *removed], "status": "done",
                      "position": task["position"]}
    problems = [r["error"] for r in removed if r.get("outcome") == "failed"]
    now = datetime.now(UTC)
    evidence = task["evidence"] + [e for e in _audit_refs([r.get("audit_seq") for r in removed])
                                   if e not in task["evidence"]]
    note = (f"a person checked the hunt's list and removed it (incident hunt --remove): "
            f"{_count([r['outcome'] for r in removed])}")
    fields: dict[str, Any] = {"actor": actor, "evidence": evidence,
                              "note": (FAILED + "; ".join(problems) + "; " if problems else "")
                              + note}
    if task["status"] == "todo":
        fields["started_at"] = now
    if not problems:
        fields |= {"status": "done", "done_at": now}
    if problems:
        auto["remove"]["status"] = "failed"
    store.update_incident_detail(incident_id, detail)
    store.update_incident_task(incident_id, task["position"], **fields)
    audit.append(actor, "incident.task", incident_id, {
        "task": task["position"], "step": task["step"], "action": "run", "auto": False,
        "status": "doing" if problems else "done", "outcome": "failed" if problems else "done",
        "evidence": [f"{e['kind']}:{e['ref']}" for e in evidence[:50]]})
    return int(task["position"])


def plan(inc: dict[str, Any], *, only: list[int | str] | None = None,
         skip: list[str] | None = None) -> list[dict[str, Any]]:
    """The automated tasks ``run_incident`` would run now, in order."""
    steps = {t["step"] for t in inc["tasks"]}
    for name in [*(skip or []), *(o for o in only or [] if isinstance(o, str)
                                  and not o.isdigit())]:
        if name not in steps:
            raise UsageError(f"incident {inc['id']} has no step {name!r}",
                             hint="steps: " + ", ".join(t["step"] for t in inc["tasks"]))
    wanted = None
    if only:
        wanted = {int(o) if isinstance(o, int) or str(o).isdigit() else o for o in only}
        positions = {t["position"] for t in inc["tasks"]}
        for o in wanted:
            if isinstance(o, int) and o not in positions:
                raise UsageError(f"incident {inc['id']} has no task {o}",
                                 hint=f"tasks are 1..{len(inc['tasks'])}")
    out = []
    for t in inc["tasks"]:
        if t["mode"] != "auto" or t.get("action") not in AUTO_ACTIONS:
            continue
        if t["status"] not in ("todo", "doing") or t["step"] in (skip or []):
            continue
        if wanted is not None and t["position"] not in wanted and t["step"] not in wanted:
            continue
        out.append(t)
    return out
