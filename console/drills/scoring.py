"""Scoring a drill: pure functions of what the run recorded (no store, no servers).

- Times from the injection (the drill's clock): TTD to the incident opened, TTC / TTR / TTV to
  the contain / eradicate / verify task done (None when that task is not done).
- Checklist completion (tasks done of all tasks; a skipped task is not done), credentials still
  valid that should not be (from ``stolen-refused``), consumers broken (``consumer-healthy``
  and failed probes), evidence completeness (tasks the responder acted on that are done with
  evidence).
- A rating per capability (detect, contain, eradicate, verify, recover, communicate) on the
  four-level scale, from real evidence only: a task the responder acted on (actions, or an
  automated run) and that is done with evidence is performed without challenges (3) within
  its target, with some challenges (2) within twice the target, with major challenges (1)
  later or when one of its capability's checks failed; unable to perform (0) when its task is
  not done, or is done with no evidence behind it (an action that resolved nothing). A task
  the --auto responder merely confirmed (``confirmed_steps``) proves nothing: its capability
  is "not exercised" (no level, left out of the mean), unless one of its checks failed (0).
  "Not exercised" too when the template has no task for it; a failed check whose capability
  has no task counts against verify. Verify is unable while any check failed.
- An overall score 0-100: half the checks passed, a fifth checklist completion, the rest the
  mean rating. A drill passes when every check passed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

LEVELS = ("unable to perform", "performed with major challenges",
          "performed with some challenges", "performed without challenges")
CAPABILITIES = ("detect", "contain", "eradicate", "verify", "recover", "communicate")
# the incident step whose task is each capability's, and the target (scenario.targets) it
# is timed against
CAPABILITY_STEP = {"detect": ("declare",), "contain": ("contain", "reassign"),
                   "eradicate": ("eradicate",), "verify": ("verify",), "recover": ("recover",),
                   "communicate": ("notify",)}
CAPABILITY_TIME = {"detect": "ttd", "contain": "ttc", "eradicate": "ttr", "verify": "ttv"}


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _since(start: datetime | None, end: str | datetime | None) -> float | None:
    end_at = _parse(end)
    if start is None or end_at is None:
        return None
    return round((end_at - start).total_seconds(), 3)


def _task(incident: dict[str, Any] | None, step: str | tuple[str, ...]) -> dict[str, Any] | None:
    if not incident:
        return None
    steps = (step,) if isinstance(step, str) else step
    return next((t for t in incident["tasks"] if t["step"] in steps), None)


def times(injected_at: datetime | None, incident: dict[str, Any] | None,
          confirmed_steps: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A task merely confirmed (nothing done) has no time: its done_at says nothing."""
    def done_at(step: str) -> float | None:
        task = _task(incident, CAPABILITY_STEP[step])
        return _since(injected_at, task["done_at"]) if task and task["status"] == "done" \
            and task["step"] not in confirmed_steps else None

    return {"ttd": _since(injected_at, incident["opened_at"]) if incident else None,
            "ttc": done_at("contain"), "ttr": done_at("eradicate"), "ttv": done_at("verify")}


def level(done: bool, seconds: float | None, target: float | None, failed: bool) -> int:
    if not done:
        return 0
    if failed:
        return 1
    if seconds is None or target is None:
        return 3
    if seconds <= target:
        return 3
    return 2 if seconds <= 2 * target else 1


def _rate(cap: str, task: dict[str, Any] | None, *, incident: dict[str, Any] | None,
          failed: list[str], all_failed: list[str], seconds: float | None,
          target: float | None, acted: set[str], confirmed: set[str]) -> dict[str, Any]:
    def out(lvl: int | None, why: str) -> dict[str, Any]:
        return {"level": lvl, "rating": "not exercised" if lvl is None else LEVELS[lvl],
                "why": why}

    checks_why = f"check failed: {', '.join(failed)}" if failed else ""
    if cap == "detect":
        is_done = incident is not None
    elif incident is not None and task is None:
        # this incident's template has no task for it: nothing to rate (its failed checks
        # were counted against verify)
        return out(None, "no task of the incident's template")
    else:
        is_done = bool(task and task["status"] == "done")
    if cap == "verify" and all_failed:
        # verifying means the outcome holds: it does not while a check fails
        return out(0, f"{len(all_failed)} check(s) failed: {', '.join(all_failed)}")
    if task is not None and task["step"] in confirmed:
        if failed:
            return out(0, f"{checks_why}; its task was only confirmed, nothing was done")
        return out(None, "its task was only confirmed by the drill's responder: nothing done "
                         "to rate")
    if not is_done:
        return out(0, "not done" + (f"; {checks_why}" if failed else ""))
    if task is not None and task["step"] in acted and cap != "verify" \
            and not task.get("evidence"):
        return out(0, "done with no action or run behind it (no evidence)")
    lvl = level(True, seconds, target, bool(failed))
    why = (checks_why if failed else
           f"{seconds:g} s against a target of {target:g} s" if target is not None
           and seconds is not None else "done")
    return out(lvl, why)


def score(
    *,
    injected_at: datetime | None,
    incident: dict[str, Any] | None,
    checks: list[dict[str, Any]],
    targets: dict[str, float],
    acted_steps: list[str] | tuple[str, ...] = (),
    confirmed_steps: list[str] | tuple[str, ...] = (),
    probe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``checks``: [{check, capability, ok, why, detail}]. ``acted_steps``: incident steps the
    responder acted on (actions or an automated run: expected to carry evidence).
    ``confirmed_steps``: steps the --auto responder only confirmed (nothing done)."""
    t = times(injected_at, incident, confirmed_steps)
    tasks = incident["tasks"] if incident else []
    done = [x for x in tasks if x["status"] == "done"]
    task_of = {cap: None if cap == "detect" else _task(incident, CAPABILITY_STEP[cap])
               for cap in CAPABILITIES}
    failed_by_cap: dict[str, list[str]] = {}
    for c in checks:
        if not c["ok"]:
            cap = c.get("capability") or "verify"
            if incident is not None and cap != "detect" and task_of.get(cap) is None:
                cap = "verify"  # no task of the template to blame: the outcome still failed
            failed_by_cap.setdefault(cap, []).append(c["check"])
    all_failed = [c["check"] for c in checks if not c["ok"]]
    ratings = {}
    for cap in CAPABILITIES:
        key = CAPABILITY_TIME.get(cap)
        ratings[cap] = _rate(cap, task_of[cap], incident=incident,
                             failed=failed_by_cap.get(cap, []), all_failed=all_failed,
                             seconds=t[key] if key else None,
                             target=targets.get(key) if key else None,
                             acted=set(acted_steps), confirmed=set(confirmed_steps))
    still_valid = sorted({n for c in checks if c["check"] == "stolen-refused"
                          for n in (c.get("detail") or {}).get("still_valid", [])})
    broken = sorted({n for c in checks if c["check"] == "consumer-healthy"
                     for n in (c.get("detail") or {}).get("broken", [])})
    acted = [x for x in tasks if x["step"] in set(acted_steps)]
    with_evidence = [x for x in acted if x["status"] == "done" and x.get("evidence")]
    passed = sum(1 for c in checks if c["ok"])
    completion = len(done) / len(tasks) if tasks else 0.0
    rated = [r["level"] for r in ratings.values() if r["level"] is not None]
    mean_level = sum(rated) / len(rated) if rated else 0.0
    overall = 100 * (0.5 * (passed / len(checks) if checks else 0.0) + 0.2 * completion
                     + 0.3 * mean_level / 3)
    return {
        "times": t,
        "checklist": {"done": len(done), "skipped": sum(x["status"] == "skipped" for x in tasks),
                      "confirmed": sum(x["step"] in set(confirmed_steps) for x in done),
                      "total": len(tasks), "completion": round(completion, 3)},
        "still_valid": still_valid,
        "consumers_broken": broken,
        "probe_failures": (probe or {}).get("failed"),
        "evidence": {"expected": len(acted), "with_evidence": len(with_evidence),
                     "completeness": round(len(with_evidence) / len(acted), 3) if acted
                     else 1.0},
        "checks": {"passed": passed, "total": len(checks)},
        "ratings": ratings,
        "score": round(overall, 1),
        "passed": bool(checks) and passed == len(checks),
    }


def improvement_plan(checks: list[dict[str, Any]], scores: dict[str, Any],
                     advice: dict[str, str], targets: dict[str, float]) -> list[str]:
    """What to do better, from the failed checks (each check's advice, with why it failed) and
    the capabilities rated below 'performed without challenges'."""
    plan = [f"{c['check']}: {advice.get(c['check'], 'see why it failed')} ({c['why']})"
            for c in checks if not c["ok"]]
    for cap, r in scores["ratings"].items():
        if r["level"] in (3, None):
            continue
        key = CAPABILITY_TIME.get(cap)
        seconds = scores["times"].get(key) if key else None
        if r["level"] == 0:
            plan.append(f"{cap}: {r['rating']}: its task ({'/'.join(CAPABILITY_STEP[cap])}): "
                        f"{r['why']}")
        elif key and seconds is not None and seconds > targets[key]:
            plan.append(f"{cap}: took {seconds:g} s against a target of {targets[key]:g} s: "
                        "automate or rehearse this step")
    return plan
