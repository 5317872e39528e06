"""Findings as SARIF 2.1.0, so a code host shows exposure findings on their file and line.

Exposure findings get a physical location (the file, relative to the working directory when
it is inside it, and the line); the others a logical one (the credential or the agent). Each
result carries keyshift's finding id as a partial fingerprint, so a code host follows it from
run to run. Never a value: messages are the finding's title and evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.findings.rules import Rule

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note",
         "info": "note"}
# GitHub code scanning reads this property to rank security results (0.0-10.0)
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0",
                     "info": "1.0"}


def _uri(file: str) -> str:
    path = Path(file)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _result(row: dict, index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": row["rule"],
        "ruleIndex": index,
        "level": LEVEL.get(row["severity"], "warning"),
        "message": {"text": f"{row['title']}. {row['evidence']}"},
        "partialFingerprints": {"keyshiftFinding/v1": row["id"]},
        "properties": {
            "severity": row["severity"],
            "status": row["status"],
            "security-severity": SECURITY_SEVERITY.get(row["severity"], "5.0"),
        },
    }
    if row.get("file"):
        region = {"startLine": int(row["line"])} if row.get("line") else {}
        result["locations"] = [{
            "physicalLocation": {
                "artifactLocation": {"uri": _uri(row["file"])},
                **({"region": region} if region else {}),
            }
        }]
    else:
        subject = row["credential"] or row["agent"]
        if subject:
            result["locations"] = [{
                "logicalLocations": [{
                    "name": subject,
                    "kind": "resource" if row["credential"] else "object",
                }]
            }]
    if row["status"] == "accepted":
        result["suppressions"] = [{
            "kind": "external",
            "justification": f"{row['accepted_reason']} (until {row['accepted_until']}, "
                             f"by {row['accepted_by']})",
        }]
    return result


def to_sarif(rows: list[dict], rules: dict[str, Rule]) -> dict[str, Any]:
    """One SARIF log with one run: the rules used by ``rows`` and one result per row."""
    used = sorted({r["rule"] for r in rows})
    index = {rule_id: i for i, rule_id in enumerate(used)}
    driver_rules = []
    for rule_id in used:
        rule = rules.get(rule_id)
        text = rule.rationale if rule else rule_id
        driver_rules.append({
            "id": rule_id,
            "name": rule_id.replace(".", "-"),
            "shortDescription": {"text": text},
            "fullDescription": {"text": text},
            "defaultConfiguration": {
                "level": LEVEL.get(rule.severity if rule else "medium", "warning")
            },
            "properties": {
                "tags": ["security", rule.family if rule else "keyshift"],
                "security-severity": SECURITY_SEVERITY.get(
                    rule.severity if rule else "medium", "5.0"
                ),
            },
        })
    from importlib.metadata import PackageNotFoundError, version

    try:
        tool_version = version("keyshift")
    except PackageNotFoundError:
        tool_version = "0"
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keyshift",
                "version": tool_version,
                "rules": driver_rules,
            }},
            "results": [_result(r, index[r["rule"]]) for r in rows],
        }],
    }
