"""Scoring a drill: pure functions of what the run recorded (no store, no servers).

- Times from the injection (the drill's clock): TTD to the incident opened, TTC / TTR / TTV to
  the contain / eradicate / verify task done (None when that task is not done).
- Checklist completion (tasks done of all tasks; a skipped task is not done), credentials still
  valid that should not be (from ``stolen-refused``), consumers broken (``consumer-healthy``
  and failed probes), evidence completeness (tasks the responder acted on that are done with
  evidence).
- A rating per capability (detect, contain, eradicate, verify, recover, communicate) on the
  four-level scale: performed without challenges (3) when its task is done within the target,
  with some challenges (2) within twice the target, with major challenges (1) later or when
  one of its checks failed, unable to perform (0) when its task is not done; "not exercised"
  (no level, left out of the mean) when the incident's template has no task for it.
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


def times(injected_at: datetime | None, incident: dict[str, Any] | None) -> dict[str, Any]:
    def done_at(step: str) -> float | None:
        task = _task(incident, CAPABILITY_STEP[step])
        return _since(injected_at, task["done_at"]) if task and task["status"] == "done" \
            else None

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


def score(
    *,
    injected_at: datetime | None,
    incident: dict[str, Any] | None,
    checks: list[dict[str, Any]],
    targets: dict[str, float],
    acted_steps: list[str] = (),  # type: ignore[assignment]
    probe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``checks``: [{check, capability, ok, why, detail}]. ``acted_steps``: incident steps the
    responder acted on (expected to carry evidence)."""
    t = times(injected_at, incident)
    tasks = incident["tasks"] if incident else []
    done = [x for x in tasks if x["status"] == "done"]
    failed_by_cap: dict[str, list[str]] = {}
    for c in checks:
        if not c["ok"]:
            failed_by_cap.setdefault(c.get("capability") or "verify", []).append(c["check"])
    ratings: dict[str, dict[str, Any]] = {}
    for cap in CAPABILITIES:
        if cap == "detect":
            is_done = incident is not None
        else:
            task = _task(incident, CAPABILITY_STEP[cap])
            if incident is not None and task is None:
                # this incident's template has no task for it: nothing to rate
                ratings[cap] = {"level": None, "rating": "not exercised",
                                "why": "no task of the incident's template"}
                continue
            is_done = bool(task and task["status"] == "done")
        key = CAPABILITY_TIME.get(cap)
        seconds = t[key] if key else None
        lvl = level(is_done, seconds, targets.get(key) if key else None,
                    bool(failed_by_cap.get(cap)))
        why = ("not done" if not is_done else
               f"check failed: {', '.join(failed_by_cap[cap])}" if failed_by_cap.get(cap) else
               f"{seconds:g} s against a target of {targets[key]:g} s" if key and seconds
               is not None else "done")
        ratings[cap] = {"level": lvl, "rating": LEVELS[lvl], "why": why}
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
            plan.append(f"{cap}: {r['rating']}: its task ({'/'.join(CAPABILITY_STEP[cap])}) "
                        "was not done")
        elif key and seconds is not None and seconds > targets[key]:
            plan.append(f"{cap}: took {seconds:g} s against a target of {targets[key]:g} s: "
                        "automate or rehearse this step")
    return plan
