"""Incident templates as data: the checklist each kind of incident opens with.

Phases are NIST SP 800-61r3's (it files incident response under CSF 2.0's Detect, Respond and
Recover functions); each task names the one CSF 2.0 outcome it serves. Only outcome ids
checked against the CSF 2.0 core are used: DE.AE-08 (incidents are declared), RS.MA-03
(categorised and prioritised), RS.MI-01 (contained), RS.AN-03 (what took place, root cause),
RS.AN-08 (magnitude estimated and validated), RS.MI-02 (eradicated), RS.CO-02 (stakeholders
notified), RC.RP-01 (recovery portion of the plan executed), RC.RP-05 (integrity of restored
assets verified, normal operation confirmed), ID.IM-03 (improvements identified).

A task with ``auto`` names the action ``keyshift incident run`` does for it (runner.py):
``contain-agent`` / ``contain-credential`` (revoke at the issuer by reference), ``review`` (use
since ``since``, the persistence hunt, a revoked token's requests in the Vault audit log),
``remove`` (delete what the hunt found, only once a person checked the list: ``incident run
--remove-found`` or ``incident hunt ID --remove``), ``eradicate`` (rotate the scope with grace
0) and ``verify`` (the issuer checked by reference). Every other task is manual: a person
does it and marks it done. ``command`` is the keyshift command that does the task (or its
keyshift part) where one exists; ``note`` says what keyshift cannot do or prove, so no task
claims evidence the tools do not produce. Texts may use ``{agent}``, ``{credential}``,
``{owner}``, ``{since}``, ``{count}``, ``{owners}`` and ``{inventory}``, filled at open.
"""

from __future__ import annotations

from typing import Any

PHASES = ("detect", "respond", "recover")

NO_CLOUDTRAIL = (
    "keyshift reads from CloudTrail only reads of secrets and parameters (a source's "
    "cloudtrail: true), and the moto sandbox has no CloudTrail lookup: an AWS key's other "
    "calls (and what they created) are checked by hand in CloudTrail"
)
HUNT = (
    "; the hunt lists IAM users, keys and user policies that exist now and were created after "
    "{since} or are unknown to the store, not who made them"
)


def _remove(after: str) -> dict[str, Any]:
    return {
        "step": "remove", "phase": "respond", "csf": "RS.MI-02",
        "title": "Remove what the attacker left " + after + ": the IAM users, access keys and "
                 "policy attachments the hunt found, once a person has checked the list",
        "auto": "remove",
        "note": "keyshift cannot tell who made them (no CloudTrail): incident run deletes them "
                "only with --remove-found; else check the list with keyshift incident hunt and "
                "remove it with keyshift incident hunt --remove. A declared user and the "
                "identity keyshift signs in as are never removed",
    }

TEMPLATES: dict[str, dict[str, Any]] = {
    "compromised-agent": {
        "title": "Compromised agent {agent}",
        "severity": "high",
        "tasks": [
            {"step": "declare", "phase": "detect", "csf": "DE.AE-08",
             "title": "Declare the incident: agent {agent} is assumed compromised"},
            {"step": "categorise", "phase": "respond", "csf": "RS.MA-03",
             "title": "Categorise and prioritise: {count} credentials in reach, owners {owners}"},
            {"step": "contain", "phase": "respond", "csf": "RS.MI-01",
             "title": "Contain: revoke {agent}'s Vault tokens and secret-ids, deactivate its "
                      "access keys (before rotating, when the leak is confirmed)",
             "auto": "contain-agent",
             "note": "an IAM role's sessions cannot be revoked by keyshift"},
            {"step": "review", "phase": "respond", "csf": "RS.AN-03",
             "title": "Review activity since {since}: the usage events in the scope; on AWS the "
                      "key's calls, including new users, new keys and attached policies",
             "auto": "review", "note": NO_CLOUDTRAIL + HUNT},
            {"step": "magnitude", "phase": "respond", "csf": "RS.AN-08",
             "title": "Estimate the magnitude: which credentials in scope were used, by whom"},
            _remove("with {agent}'s access"),
            {"step": "eradicate", "phase": "respond", "csf": "RS.MI-02",
             "title": "Eradicate: rotate everything in the blast radius",
             "auto": "eradicate",
             "command": "keyshift playbook run rotate-agent --agent {agent}"},
            {"step": "verify", "phase": "respond", "csf": "RS.MI-02",
             "title": "Verify: old values refused by their issuers, new values work, consumers "
                      "healthy",
             "auto": "verify",
             "note": "checked by reference: revoked accessors no longer found, keys gone or "
                     "Inactive, every credential in scope rotated (a completed run with its "
                     "verify step ok), what remove deleted gone; an old value keyshift never "
                     "held cannot be tried against its issuer"},
            {"step": "notify", "phase": "respond", "csf": "RS.CO-02",
             "title": "Notify the owners: {owners}"},
            {"step": "recover", "phase": "recover", "csf": "RC.RP-01",
             "title": "Recover: give {agent} fresh credentials and confirm it runs normally"},
            {"step": "lessons", "phase": "recover", "csf": "ID.IM-03",
             "title": "Lessons: update the inventory and the threat model"},
        ],
    },
    "leaked-credential": {
        "title": "Leaked credential {credential}",
        "severity": "high",
        "tasks": [
            {"step": "declare", "phase": "detect", "csf": "DE.AE-08",
             "title": "Declare the incident: {credential} is assumed leaked"},
            {"step": "categorise", "phase": "respond", "csf": "RS.MA-03",
             "title": "Categorise and prioritise: {count} holders, owners {owners}"},
            {"step": "contain", "phase": "respond", "csf": "RS.MI-01",
             "title": "Contain: disable the leaked value at its issuer if it cannot be "
                      "rotated at once",
             "auto": "contain-credential",
             "command": "keyshift revoke {credential}",
             "note": "only a Vault token, an AppRole secret-id or an IAM key can be revoked; "
                     "any other kind is contained by rotating it (eradicate, grace 0)"},
            {"step": "review", "phase": "respond", "csf": "RS.AN-03",
             "title": "Review its use since {since} (usage events in the scope) and where the "
                      "leak came from",
             "command": "keyshift show {credential}",
             "auto": "review", "note": NO_CLOUDTRAIL + HUNT},
            {"step": "magnitude", "phase": "respond", "csf": "RS.AN-08",
             "title": "Estimate the magnitude: its holders and the other places its value "
                      "lives (in the scope)"},
            _remove("with it"),
            {"step": "eradicate", "phase": "respond", "csf": "RS.MI-02",
             "title": "Eradicate: rotate it, and every other place that holds the same value",
             "auto": "eradicate",
             "command": "keyshift rotate {credential} --grace 0"},
            {"step": "verify", "phase": "respond", "csf": "RS.MI-02",
             "title": "Verify: the old value refused by its issuer, the new one works",
             "command": "keyshift runs --credential {credential}",
             "auto": "verify",
             "note": "checked by reference: the revoked accessor or key, each rotation run "
                     "completed with its verify step ok"},
            {"step": "notify", "phase": "respond", "csf": "RS.CO-02",
             "title": "Notify the owners: {owners}"},
            {"step": "recover", "phase": "recover", "csf": "RC.RP-05",
             "title": "Recover: holders run normally on the new value"},
            {"step": "lessons", "phase": "recover", "csf": "ID.IM-03",
             "title": "Lessons: how it leaked, and what stops it next time"},
        ],
    },
    "departed-owner": {
        "title": "Departed owner {owner}",
        "severity": "medium",
        "tasks": [
            {"step": "declare", "phase": "detect", "csf": "DE.AE-08",
             "title": "Declare: {owner} has left; {count} credentials and the agents they own "
                      "are in scope"},
            {"step": "reassign", "phase": "respond", "csf": "RS.MA-03",
             "title": "Reassign ownership of {owner}'s agents and credentials in {inventory}",
             "note": "keyshift does not edit the inventory: a person edits the owner: fields"},
            {"step": "review", "phase": "respond", "csf": "RS.AN-03",
             "title": "Review use of {owner}'s credentials since {since}",
             "auto": "review", "note": NO_CLOUDTRAIL + HUNT},
            _remove("with {owner}'s credentials"),
            {"step": "eradicate", "phase": "respond", "csf": "RS.MI-02",
             "title": "Rotate what {owner} could read: every credential of their agents "
                      "(rotate-agent) and the credentials they own",
             "auto": "eradicate"},
            {"step": "verify", "phase": "respond", "csf": "RS.MI-02",
             "title": "Verify: each rotation run completed with its verify step ok",
             "auto": "verify"},
            {"step": "notify", "phase": "respond", "csf": "RS.CO-02",
             "title": "Tell the new owners: {owners}"},
            {"step": "lessons", "phase": "recover", "csf": "ID.IM-03",
             "title": "Lessons: no credential left with an owner who has gone"},
        ],
    },
}
