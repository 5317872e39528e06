"""The after-action report of a drill run: Markdown or JSON, from its row in the user's store.

Timeline (UTC), scores and ratings, what went wrong (the failed checks and why), the
improvement plan, the drill store's audit anchor (checked with ``keyshift --db <drill store>
audit verify --anchor SEQ:HASH``) and the trend across runs of the same scenario. References
and counts only: a report never holds a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.store import Store

TREND_RUNS = 20


def _z(value: str | None) -> str | None:
    """The store spells UTC +00:00, the timeline Z: a report says Z throughout."""
    return value[:-6] + "Z" if value and value.endswith("+00:00") else value


def build(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    d = row["detail"]
    runs = [r for r in store.drill_runs(row["scenario"], limit=TREND_RUNS)
            if r["status"] in ("passed", "failed") and r["started_at"] <= row["started_at"]]
    anchor = d.get("anchor")
    return {
        "run": row["id"], "scenario": row["scenario"], "title": d.get("title"),
        "status": row["status"], "score": row["score"], "actor": row["actor"],
        "started_at": _z(row["started_at"]), "finished_at": _z(row["finished_at"]),
        "auto": d.get("auto"), "skip": d.get("skip", []), "incident": d.get("incident"),
        "drill_db": d.get("drill_db"), "timeline": d.get("timeline", []),
        "scores": d.get("scores"), "checks": d.get("checks", []),
        "went_wrong": [{"check": c["check"], "target": c.get("target"), "why": c["why"]}
                       for c in d.get("checks", []) if not c["ok"]],
        "plan": d.get("plan", []), "probe": d.get("probe"), "error": d.get("error"),
        "anchor": anchor,
        "verify_with": (f"keyshift --db {d.get('drill_db')} audit verify --anchor "
                        f"{anchor['seq']}:{anchor['hash']}") if anchor else None,
        "trend": [{"run": r["id"], "at": _z(r["started_at"]), "status": r["status"],
                   "score": r["score"]} for r in reversed(runs)],
    }


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def markdown(data: dict[str, Any]) -> str:
    out = [f"# Drill {data['run']}: {data['title'] or data['scenario']}", "",
           f"- scenario: {data['scenario']}", f"- status: {data['status']}",
           f"- score: {data['score'] if data['score'] is not None else '-'} / 100",
           f"- run by: {data['actor']} ({'--auto' if data['auto'] else 'a person'})"
           + (f", skipping {', '.join(data['skip'])}" if data["skip"] else ""),
           f"- started {data['started_at']}, finished {data['finished_at'] or '-'}",
           f"- incident {data['incident'] or '-'} in {data['drill_db'] or '-'}"]
    if data["error"]:
        out.append(f"- error: {data['error']}")
    out += ["", "## Timeline (UTC)", ""]
    out += [f"- {e['at']}  {e['event']}" + (f" ({e['by']})" if e.get("by") else "")
            for e in data["timeline"]] or ["- (none)"]
    s = data["scores"]
    if s:
        t = s["times"]
        out += ["", "## Scores", "",
                f"- time to detect {_secs(t['ttd'])}, contain {_secs(t['ttc'])}, "
                f"eradicate {_secs(t['ttr'])}, verify {_secs(t['ttv'])} (from injection)",
                f"- checklist {s['checklist']['done']}/{s['checklist']['total']} done, "
                f"{s['checklist']['skipped']} skipped",
                f"- checks passed {s['checks']['passed']}/{s['checks']['total']}",
                "- still valid that should not be: " + (", ".join(s["still_valid"]) or "none"),
                "- consumers broken: " + (", ".join(s["consumers_broken"]) or "none")
                + (f"; failed probes {s['probe_failures']}" + (
                    f" in {data['probe']['rounds']} round(s), "
                    f"{len(data['probe'].get('after_steps') or [])} of them after a rotation "
                    "step" if data.get("probe") else "")
                   if s.get("probe_failures") is not None else ""),
                f"- evidence: {s['evidence']['with_evidence']}/{s['evidence']['expected']} "
                "acted-on tasks done with evidence",
                "", "| capability | rating | why |", "|---|---|---|"]
        out += [f"| {cap} | {r['rating']} | {r['why']} |" for cap, r in s["ratings"].items()]
    out += ["", "## What went wrong", ""]
    out += [f"- {w['check']} ({w['target']}): {w['why']}" for w in data["went_wrong"]] \
        or ["- nothing: every check passed"]
    out += ["", "## Improvement plan", ""]
    out += [f"- {p}" for p in data["plan"]] or ["- keep rehearsing: nothing to improve"]
    out += ["", "## Trend", "", "| run | started | status | score |", "|---|---|---|---|"]
    out += [f"| {r['run']} | {r['at']} | {r['status']} | {r['score']} |" for r in data["trend"]]
    if data["anchor"]:
        out += ["", "## Audit anchor of the drill store", "",
                f"- `{data['anchor']['seq']}:{data['anchor']['hash']}`",
                f"- check with: `{data['verify_with']}`"]
    return "\n".join(out) + "\n"
