"""Running a drill: build its world, inject, respond, verify, score, record, clean up.

``run_drill`` does it all with ``auto=True`` (the unattended responder: CI, the schedule);
with ``auto=False`` it stops after opening the incident (status ``awaiting-response``) and a
person works it in the drill's own store (``keyshift --db <drill store> incident ...`` or the
TUI), then ``verify_drill`` verifies, scores and cleans up.

The user's main store keeps the history: a ``drill_runs`` row (status, times, score, and in
its detail the drill store, its audit anchor, the incident id, scores, ratings, checks and the
timeline) and an audit entry ``drill.run``. A run whose process died (its owner pid gone while
it is ``running``) is marked ``interrupted`` by the next ``drill ls`` or ``drill run``, and
``cleanup_drill`` removes its world.
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import paths, process
from console.drills.checks import CHECKS
from console.drills.context import ACTOR, ATTACKER, Drill, Probe
from console.drills.injections import INJECTIONS
from console.drills.loader import skippable
from console.drills.responders import RESPONDERS
from console.drills.scoring import improvement_plan, score
from console.drills.world import build_world, cleanup, load_world, ref_of
from console.errors import KeyshiftError, NotFoundError, SandboxError, StoreError, UsageError

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.drills.model import Scenario
    from console.store import Store

Event = Callable[[dict[str, Any]], None]
MAX_LISTED = 10
# what injections and detection note that names things by reference only (credential names
# and ids, paths, user names, key ids, accessors): kept in the run's detail for drill verify,
# which runs in a later process. What holds values or their digests (the attacker's copies,
# ``untouched``) stays in memory.
REF_NOTES = ("detect", "token_reads", "persistence", "compromised", "attacker_tokens",
             "pushed", "crashed_runs", "departed")


def drills_dir() -> Path:
    return paths.private_dir(paths.data_dir() / "drills")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _sandbox() -> Any:
    """The sandbox's state, once its servers answer: a state file left by servers that died
    would otherwise fail half way into a world, with a library's connection error."""
    from console.sandbox import status

    got = status()
    if not got.recorded or got.state is None:
        raise SandboxError("drills run only against the keyshift sandbox, and it is not running",
                           hint="start it with: keyshift sandbox up")
    down = [f"{s.name} ({s.detail or 'no answer'})" for s in got.services
            if not s.healthy and (s.name != "provider" or got.state.provider is not None)]
    if down:
        raise SandboxError(f"the sandbox is not answering: {', '.join(down)}",
                           hint="restart it with: keyshift sandbox up")
    return got.state


def _typed(exc: Exception, run_id: str) -> KeyshiftError:
    """An unexpected error mid-run, as a typed error naming its type only: a library's text can
    quote URLs, headers or tokens."""
    from console.sandbox import status

    name = type(exc).__name__
    hint = f"see keyshift drill report {run_id}; keyshift drill cleanup {run_id} removes " \
           "what is left of its world"
    try:
        healthy = status().healthy
    except Exception:  # the check itself failing says as much as an unhealthy answer
        healthy = False
    if not healthy:
        return SandboxError(f"drill run {run_id} stopped: the sandbox stopped answering ({name})",
                            hint="restart it with: keyshift sandbox up; then " + hint)
    return KeyshiftError(f"drill run {run_id} stopped on an unexpected {name}", hint=hint)


# ids and history ------------------------------------------------------------------------------


def resolve_run(store: Store, ref: str) -> str:
    """A full run id, or a unique prefix, with or without ``DRL-``, any case."""
    from console.refs import resolve_prefixed

    return resolve_prefixed(ref, "DRL-", store.find_drill_runs, "drill run", "keyshift drill ls")


def mark_interrupted(store: Store, audit: AuditLog) -> list[str]:
    """Runs still ``running`` whose process is gone (SIGKILL, a crash): ``interrupted``,
    audited, with the cleanup to run. Returns their ids."""
    found = []
    for row in store.drill_runs(status="running", limit=1000):
        owner = row["detail"].get("owner") or {}
        if process.alive(owner.get("host"), owner.get("pid"), owner.get("started")) is not False:
            continue
        detail = dict(row["detail"])
        detail["error"] = (f"interrupted: its process ({owner.get('pid')}) died; "
                           f"clean up with: keyshift drill cleanup {row['id']}")
        store.update_drill_run(row["id"], status="interrupted", finished_at=_now(),
                               detail=detail)
        audit.append("keyshift", "drill.interrupted", row["id"],
                     {"scenario": row["scenario"], "pid": owner.get("pid")})
        found.append(row["id"])
    return found


# the run ----------------------------------------------------------------------------------------


def run_drill(
    store: Store,
    audit: AuditLog,
    scenario: Scenario,
    *,
    actor: str,
    auto: bool = True,
    skip: tuple[str, ...] | list[str] = (),
    on_event: Event | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` against the sandbox; returns the run's row (``status`` passed, failed,
    awaiting-response or error) as recorded in ``store``."""
    emit = on_event or (lambda event: None)
    allowed = skippable(scenario)
    bad = [s for s in skip if s not in allowed]
    if bad:
        raise UsageError(f"--skip {bad[0]!r} is not a step of drill {scenario.name}",
                         hint="skippable: " + ", ".join(allowed))
    if skip and not auto:
        raise UsageError("--skip applies to the --auto responder only",
                         hint="add --auto, or work the incident yourself")
    state = _sandbox()
    mark_interrupted(store, audit)
    started = _now()
    for _ in range(5):
        run_id = "DRL-" + secrets.token_hex(3).upper()
        try:
            store.create_drill_run(run_id, scenario=scenario.name, actor=actor,
                                   started_at=started, detail={
                                       "owner": process.me().as_dict(), "auto": auto,
                                       "skip": list(skip), "title": scenario.title,
                                       "dir": str(drills_dir() / run_id)})
            break
        except StoreError as exc:
            if "is taken" not in exc.message:
                raise
    else:  # pragma: no cover - five collisions in 16M ids
        raise StoreError("could not draw a free drill run id")
    run_dir = drills_dir() / run_id
    emit({"event": "start", "run": run_id, "scenario": scenario.name})
    drill: Drill | None = None
    try:
        drill = _set_up(scenario, run_id, run_dir, state, set(skip), emit)
        _inject(drill, emit)
        _detect(drill, emit)
        _open_incident(drill, emit)
        _record(store, run_id, incident=drill.incident_id, drill_db=str(drill.world.db_path),
                injected_at=_iso(drill.injected_at) if drill.injected_at else None,
                refs=drill.notes.get("refs", {}),
                notes={k: drill.notes[k] for k in REF_NOTES if k in drill.notes})
        if not auto:
            store.update_drill_run(run_id, status="awaiting-response",
                                   detail=_detail(store, run_id))
            audit.append(actor, "drill.start", run_id, {"scenario": scenario.name,
                                                        "incident": drill.incident_id})
            emit({"event": "awaiting-response", "run": run_id, "incident": drill.incident_id,
                  "db": str(drill.world.db_path)})
            return store.get_drill_run(run_id) or {}
        _respond(drill, emit)
        return _finish(store, audit, run_id, drill, actor, emit)
    except KeyboardInterrupt:
        # Ctrl-C: the person stopped the drill; its world goes with it
        _stop(drill)
        with contextlib.suppress(Exception):
            done = cleanup(run_dir, state)
            detail = _detail(store, run_id) | {"cleanup": done, "error": "interrupted (Ctrl-C)"
                                               + (f"; clean up the rest with: keyshift drill "
                                                  f"cleanup {run_id}" if done["errors"] else "")}
            store.update_drill_run(run_id, status="interrupted", finished_at=_now(),
                                   detail=detail)
            audit.append(actor, "drill.interrupted", run_id,
                         {"scenario": scenario.name, "by": "keyboard",
                          "cleanup_errors": len(done["errors"])})
        raise
    except Exception as exc:
        typed = exc if isinstance(exc, KeyshiftError) else _typed(exc, run_id)
        _stop(drill)
        with contextlib.suppress(Exception):
            detail = _detail(store, run_id) | {"error": typed.one_line()[:300]}
            detail["cleanup"] = cleanup(run_dir, state)
            store.update_drill_run(run_id, status="error", finished_at=_now(), detail=detail)
            audit.append(actor, "drill.run", run_id, {"scenario": scenario.name,
                                                      "status": "error"})
        if typed is exc:
            raise
        raise typed from None
    finally:
        if drill is not None:
            drill.store.close()


def _stop(drill: Drill | None) -> None:
    """Stop the probe and close the drill store before the world is removed."""
    if drill is None:
        return
    if drill.probe is not None:
        drill.probe.stop()
        drill.probe = None
    drill.store.close()


def _detail(store: Store, run_id: str) -> dict[str, Any]:
    row = store.get_drill_run(run_id)
    return dict(row["detail"]) if row else {}


def _record(store: Store, run_id: str, **fields: Any) -> None:
    store.update_drill_run(run_id, detail=_detail(store, run_id) | fields)


def _set_up(scenario: Scenario, run_id: str, run_dir: Path, state: Any, skip: set[str],
            emit: Event) -> Drill:
    from console.audit import AuditLog
    from console.config import load_inventory
    from console.store import Store
    from console.sync import run_sync

    world = build_world(scenario, run_id, run_dir, state)
    dstore = Store(world.db_path)
    daudit = AuditLog(dstore)
    loaded = load_inventory(world.inventory_path)
    summary = run_sync(loaded, dstore, daudit, actor=ACTOR)
    # a source that failed fails the drill; item errors alone do not (a world that lists
    # tokens lists the whole shared sandbox's, and another run's token can expire or be
    # revoked between the list and its lookup): the world's own credentials must be there
    failed = [o for o in summary.outcomes if o.status == "failed"]
    if failed:
        raise SandboxError(f"the drill's world did not sync ({summary.status})")
    for item in world.items.values():
        if dstore.get_credential(item.credential_id) is None:
            raise SandboxError(f"the drill's sync did not list {item.name}")
    emit({"event": "world", "tag": world.tag, "credentials": len(world.items)})
    return Drill(scenario, world, dstore, daudit, loaded, skip=skip)


def _inject(drill: Drill, emit: Event) -> None:
    drill.injected_at = _now()
    # before the attacker acts: what names each value in use at injection (never the value)
    drill.notes["refs"] = {name: ref_of(drill.world, item)
                           for name, item in drill.world.items.items()}
    for inj in drill.scenario.inject:
        result = INJECTIONS.get(inj.step).fn(drill, inj)
        drill.audit.append(ATTACKER, "drill.inject", drill.world.run_id,
                           {"step": inj.step, **{k: v for k, v in result.items()
                                                 if k in ("stolen", "crashed_at", "departed")}})
        emit({"event": "inject", "step": inj.step})


def _detect(drill: Drill, emit: Event) -> None:
    """The scenario's detection actions (``respond.detect``), before the incident opens; what
    they found is in ``drill.notes["detect"]`` for the declare task and the checks."""
    acts = drill.scenario.respond.detect
    if not acts:
        return
    results = [RESPONDERS.get(a.action).fn(drill, a) for a in acts]
    drill.notes["detect"] = {
        "ok": all(r["ok"] for r in results), "note": "; ".join(r["note"] for r in results),
        "evidence": list(dict.fromkeys(e for r in results for e in r["evidence"])),
        "found": list(dict.fromkeys(c for r in results for c in r.get("found", []))),
        "at": _iso(_now())}
    emit({"event": "detect", "ok": drill.notes["detect"]["ok"]})


def _open_incident(drill: Drill, emit: Event) -> None:
    from console import incidents

    spec = drill.scenario.respond.incident
    params = inspect.signature(incidents.open_incident).parameters
    kwargs: dict[str, Any] = {}
    if spec.credential:
        kwargs["credential"] = drill.world.items[spec.credential].credential_id
    elif spec.agent:
        kwargs["agent"] = spec.agent
    elif spec.owner:
        # an owner's incident, where the incidents know one (helper A's departed-owner kind);
        # until then, the first of the owner's agents
        if "owner" in params:
            kwargs["owner"] = spec.owner
        else:
            kwargs["agent"] = next(a.name for a in drill.scenario.world.agents
                                   if a.owner == spec.owner)
    if spec.kind and "kind" in params:
        kwargs["kind"] = spec.kind
    if drill.injected_at is not None:
        # the compromise began at injection: the review and the hunt look no further back
        # (a default week would take every sandbox user made since for the attacker's)
        kwargs["since"] = drill.injected_at.isoformat()
    inc = incidents.open_incident(drill.store, drill.audit, drill.loaded, actor=ACTOR,
                                  title=f"[drill {drill.world.run_id}] {drill.scenario.title}",
                                  **kwargs)
    drill.incident_id = inc["id"]
    emit({"event": "incident", "incident": inc["id"]})


def _respond(drill: Drill, emit: Event) -> None:
    """The --auto responder: each task in order; a step with actions runs them and records
    their evidence; ``verify`` runs the checks; any other task is confirmed as a manual task
    the drill's responder did, with a note saying so."""
    from console import incidents

    sc = drill.scenario
    probes = [drill.world.items[n] for n in sc.respond.probes]
    if probes:
        drill.probe = Probe(probes).start()
    inc = incidents.load(drill.store, drill.incident_id or "")
    for task in inc["tasks"]:
        pos, step = task["position"], task["step"]
        if task["status"] in ("done", "skipped"):
            continue

        def update(action: str, note: str, evidence: list[str] = (),  # type: ignore[assignment]
                   pos: int = pos) -> None:
            incidents.update_task(drill.store, drill.audit, drill.incident_id or "", pos, action,
                                  actor=ACTOR, note=note, evidence=list(evidence))

        if step in drill.skip:
            update("skip", "skipped by the drill (--skip): rehearsing a response that leaves "
                           "this step undone")
            emit({"event": "task", "step": step, "status": "skipped"})
            continue
        if step == "declare" and "detect" in drill.notes:
            found = drill.notes["detect"]
            update("done" if found["ok"] else "skip",
                   found["note"] if found["ok"] else f"not detected: {found['note']}",
                   found["evidence"])
            emit({"event": "task", "step": step, "status": "done" if found["ok"] else
                  "skipped"})
            continue
        if step == "verify":
            checks = run_checks(drill)
            seq = drill.audit.tail(1)[0].seq
            passed = sum(c["ok"] for c in checks)
            update("done", f"verified against the servers: {passed}/{len(checks)} checks "
                           "passed", [f"audit:{seq}"])
            emit({"event": "task", "step": step, "status": "done"})
            continue
        if step in sc.respond.steps:
            drill.notes.setdefault("acted", []).append(step)
            update("start", "drill responder")
            results = []
            for act in sc.respond.steps[step]:
                if act.action in drill.skip:
                    results.append({"evidence": [], "ok": False,
                                    "note": f"{act.action} skipped by the drill (--skip)"})
                    continue
                results.append(RESPONDERS.get(act.action).fn(drill, act))
            ok = all(r["ok"] for r in results)
            note = "; ".join(r["note"] for r in results)[:1000]
            evidence = list(dict.fromkeys(e for r in results for e in r["evidence"]))
            update("done" if ok else "skip", note if ok else f"not done: {note}", evidence)
            emit({"event": "task", "step": step, "status": "done" if ok else "skipped"})
            continue
        if step in sc.respond.automated:
            drill.notes.setdefault("acted", []).append(step)
            status = _automated(drill, step)
            emit({"event": "task", "step": step, "status": status})
            continue
        # the --auto responder cannot do this task (nobody to notify, no lessons to write):
        # it closes the checklist, and scoring rates the task's capability "not exercised"
        drill.notes.setdefault("confirmed", []).append(step)
        update("done", "confirmed by the drill's --auto responder without doing anything "
                       "(not exercised: scored as such)")
    if drill.probe is not None:  # a scenario without a verify task still stops its probe
        drill.notes["probe"] = drill.probe.stop()
        drill.probe = None


def _automated(drill: Drill, step: str) -> str:
    """A task helper A's incident runner automates (console.incidents.runner.run_incident).
    Returns the run's status for the task (done, failed, waiting, skipped, or not-run)."""
    from console import incidents

    try:
        from console.incidents.runner import run_incident  # type: ignore[import-not-found]
    except ImportError as exc:
        raise UsageError(f"drill {drill.scenario.name} needs automated incident tasks "
                         f"({step}), which this keyshift does not have") from exc
    inc = incidents.load(drill.store, drill.incident_id or "")
    steps = {t["step"] for t in inc["tasks"]}
    # run_incident refuses a skip that is no step of its incident: --skip may name actions
    # and sub-steps (revoke), and another incident's steps; pass only this incident's
    skip = sorted(s for s in drill.skip if s in steps and s != step)
    # the drill's responder plays the person who checked the hunt's list (remove_found)
    result = run_incident(drill.store, drill.audit, drill.loaded, drill.incident_id or "",
                          actor=ACTOR, engine=drill.engine(), only=[step], skip=skip,
                          remove_found=True, on_event=_probe_steps(drill))
    ran = [t for t in result.get("tasks", []) if t["step"] == step]
    if not ran:  # the template does not automate this step: nothing did it, it stays undone
        return "not-run"
    # a failed or waiting task stays as the runner recorded it (doing, its note saying why):
    # not done, so scoring rates its capability unable
    return str(ran[-1]["status"])


def _probe_steps(drill: Drill) -> Callable[[dict[str, Any]], None]:
    """run_incident's progress events, each a rotation step's end ("<step> <status> ..."):
    the probe runs a round after each, as it does for the drill's own rotations."""
    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "progress" and event.get("message"):
            drill.progress(str(event["message"]).split(" ")[0], str(event.get("status")))

    return on_event


def run_checks(drill: Drill) -> list[dict[str, Any]]:
    """Every check of the scenario against the real servers; the probe stops first (it ran
    through the whole response). Audited in the drill store as ``drill.verify``."""
    if drill.probe is not None:
        drill.notes["probe"] = drill.probe.stop()
        drill.probe = None
    out = []
    for chk in drill.scenario.checks:
        word = CHECKS.get(chk.check)
        try:
            got = word.fn(drill, chk)
        except Exception as exc:  # a check that cannot run has not shown the outcome
            got = {"ok": False, "why": f"could not check: {type(exc).__name__}", "detail": {}}
        out.append({"check": chk.check, "capability": word.extra.get("capability"),
                    "target": chk.credential or chk.agent or chk.owner or "all",
                    "ok": bool(got["ok"]), "why": got["why"], "detail": got.get("detail", {}),
                    "at": _iso(_now())})
    drill.notes["checks"] = out
    drill.audit.append(ACTOR, "drill.verify", drill.world.run_id,
                       {"passed": sum(c["ok"] for c in out), "checks": len(out),
                        "failed": [c["check"] for c in out if not c["ok"]]})
    return out


def _finish(store: Store, audit: AuditLog, run_id: str, drill: Drill, actor: str,
            emit: Event) -> dict[str, Any]:
    from console import incidents
    from console.audit import AuditLog as Chain

    checks = drill.notes.get("checks")
    if checks is None:  # the verify task was skipped: the drill still verifies the outcome
        checks = run_checks(drill)
    inc = incidents.load(drill.store, drill.incident_id or "")
    if inc["status"] == "open":
        inc = incidents.close_incident(drill.store, drill.audit, inc["id"], actor=ACTOR,
                                       note="drill finished", force=True)
    sc = drill.scenario
    targets = sc.targets.model_dump()
    acted = drill.notes.get("acted")
    if acted is None:  # a person worked it (drill verify): the steps they were to act on
        acted = [*sc.respond.steps, *sc.respond.automated]
    scores = score(injected_at=drill.injected_at, incident=inc, checks=checks, targets=targets,
                   acted_steps=[*acted, "verify"],
                   confirmed_steps=drill.notes.get("confirmed", []),
                   probe=drill.notes.get("probe"))
    advice = {w: CHECKS.get(w).extra.get("advice", "") for w in CHECKS.names()}
    plan = improvement_plan(checks, scores, advice, targets)
    anchor = Chain(drill.store).anchor()
    timeline = [{"at": _iso(drill.injected_at), "event": "injected", "by": ATTACKER}] \
        if drill.injected_at else []
    timeline += incidents.timeline(inc)
    timeline += [{"at": c["at"], "event": f"check {c['check']} "
                  f"{'passed' if c['ok'] else 'failed'}"} for c in checks]
    timeline.sort(key=lambda e: e["at"])
    status = "passed" if scores["passed"] else "failed"
    finished = _now()
    detail = _detail(store, run_id) | {
        "checks": checks, "scores": scores, "plan": plan, "timeline": timeline,
        "anchor": {"seq": anchor.seq, "hash": anchor.hash} if anchor else None,
        "targets": targets, "probe": drill.notes.get("probe"),
    }
    drill.store.close()
    detail["cleanup"] = cleanup(drill.world.dir, drill.world.state)
    store.update_drill_run(run_id, status=status, finished_at=finished, score=scores["score"],
                           detail=detail)
    audit.append(actor, "drill.run", run_id, {
        "scenario": sc.name, "status": status, "score": scores["score"],
        "checks_passed": scores["checks"]["passed"], "checks": scores["checks"]["total"],
        "incident": drill.incident_id, "skip": sorted(drill.skip),
        "drill_anchor": f"{anchor.seq}:{anchor.hash}" if anchor else None,
    })
    emit({"event": "finish", "run": run_id, "status": status, "score": scores["score"]})
    return store.get_drill_run(run_id) or {}


# later: verify a run a person worked, clean up ---------------------------------------------------


def verify_drill(store: Store, audit: AuditLog, scenario: Scenario, run_id: str, *,
                 actor: str, on_event: Event | None = None) -> dict[str, Any]:
    """Verify, score and clean up a run set up without --auto, once a person worked its
    incident. The attacker's copies died with the process that injected: a stolen value is
    checked by reference (the provider keys live at injection revoked, the KV version moved
    on); one with no reference check fails, saying so."""
    from console.audit import AuditLog as Chain
    from console.config import load_inventory
    from console.store import Store as DrillStore

    row = store.get_drill_run(run_id)
    if row is None:
        raise NotFoundError(f"no drill run {run_id!r}")
    if row["status"] != "awaiting-response":
        raise UsageError(f"drill run {run_id} is {row['status']}",
                         hint="only a run set up without --auto waits for verify")
    state = _sandbox()
    try:
        world = load_world(Path(row["detail"]["dir"]), state)
        dstore = DrillStore(world.db_path)
        drill = Drill(scenario, world, dstore, Chain(dstore),
                      load_inventory(world.inventory_path))
    except KeyshiftError:
        raise
    except Exception as exc:  # a world.json removed by hand, a store that will not open
        raise _typed(exc, run_id) from None
    drill.incident_id = row["detail"].get("incident")
    injected = row["detail"].get("injected_at")
    drill.injected_at = datetime.fromisoformat(injected.replace("Z", "+00:00")) if injected \
        else None
    drill.notes |= {k: v for k, v in (row["detail"].get("notes") or {}).items()
                    if k in REF_NOTES}
    drill.notes["refs"] = row["detail"].get("refs", {})
    drill.notes["by_reference"] = True
    try:
        run_checks(drill)
        return _finish(store, audit, run_id, drill, actor, on_event or (lambda e: None))
    except KeyshiftError:
        raise
    except Exception as exc:  # named by its type only, as a run's: exit 1, or 9 sandbox down
        raise _typed(exc, run_id) from None
    finally:
        drill.store.close()


def cleanup_drill(store: Store, audit: AuditLog, run_id: str, *, actor: str) -> dict[str, Any]:
    """Remove an interrupted (or any finished) run's world from the sandbox. Refused while
    its process still runs it."""
    row = store.get_drill_run(run_id)
    if row is None:
        raise NotFoundError(f"no drill run {run_id!r}")
    mark_interrupted(store, audit)
    row = store.get_drill_run(run_id) or row
    if row["status"] == "running":
        raise UsageError(f"drill run {run_id} is running (pid "
                         f"{(row['detail'].get('owner') or {}).get('pid')})",
                         hint="wait for it, or stop that process first")
    state = _sandbox()
    result = cleanup(Path(row["detail"].get("dir") or drills_dir() / run_id), state)
    detail = dict(row["detail"]) | {"cleanup": result}
    fields: dict[str, Any] = {"detail": detail}
    if row["status"] == "awaiting-response":
        fields |= {"status": "interrupted", "finished_at": _now()}
    store.update_drill_run(run_id, **fields)
    audit.append(actor, "drill.cleanup", run_id, {"removed": len(result["removed"]),
                                                  "errors": len(result["errors"])})
    return result
