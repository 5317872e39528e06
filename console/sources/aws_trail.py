"""AWS last use from CloudTrail's LookupEvents: who read which secret or parameter, and when.

Opt in per source (``cloudtrail: true``). Per region, one LookupEvents query per read event of
what keyshift inventories (``GetSecretValue``; ``GetParameter`` and ``GetParameters``), over
``[max(now - cloudtrail_days, last position - overlap), now]``, page by page. BatchGetSecretValue
is not asked for: Secrets Manager logs a GetSecretValue event for each secret of a batch, and the
batch's own event would only repeat them. An event with an ``errorCode`` is a refused call, not
a use; keyshift's own reads (its fingerprints) are not use either.

The newest event time read in a region is its read position (``cloudtrail:<region>``, kept by
the store like the Vault audit log's), so the next sync asks only from there, less an overlap
for events CloudTrail delivers late; what the overlap reads again, the usage table's unique
index drops. A region whose read fails keeps its old position (events come newest first, so a
failure mid-way may have skipped older ones) and is one ItemError: "CloudTrail not read".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions

from console.model import Credential, Grant, ItemError, ReadPosition, UsageEvent
from console.vocabulary import NO_USE_RECORDED

EVIDENCE = "aws:cloudtrail"
# CloudTrail delivers an event to LookupEvents minutes after the call (about 5 on average, not
# guaranteed): a call made just before the newest event read may appear only later
OVERLAP = timedelta(minutes=15)
PAGE = 50  # LookupEvents' most events a page: the fewer requests, the better (see below)
SECRET_EVENTS = ("GetSecretValue",)
PARAMETER_EVENTS = ("GetParameter", "GetParameters")


def position_key(region: str) -> str:
    return f"cloudtrail:{region}"


@dataclass
class TrailEvent:
    at: datetime
    name: str  # the API call: GetSecretValue, GetParameter, ...
    region: str
    arn: str  # the caller: an IAM user, an assumed-role session, ...
    principal: tuple[str, str] | None  # ("aws-iam-user" | "aws-iam-role", name) when IAM
    access_key_id: str
    targets: list[str]  # what it read, as the caller named it (a name or an ARN)
    remote: str | None


@dataclass
class RegionRead:
    region: str
    events: list[TrailEvent] = field(default_factory=list)
    newest: datetime | None = None  # of every event read, used or not
    error: str | None = None  # why the region could not be read (all of it)
    asked_from: datetime | None = None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def parse_event(listed: dict[str, Any], region: str) -> tuple[datetime | None, TrailEvent | None]:
    """One LookupEvents entry: (its time, the read it records). The read is None for a failed
    call (``errorCode``: refused, not a use) or a record keyshift cannot read."""
    at = _time(listed.get("EventTime"))
    try:
        record = json.loads(listed.get("CloudTrailEvent") or "{}")
    except ValueError:
        return at, None
    if not isinstance(record, dict):
        return at, None
    at = _time(record.get("eventTime")) or at
    if at is None or record.get("errorCode"):
        return at, None
    who = record.get("userIdentity") or {}
    params = record.get("requestParameters") or {}
    if not isinstance(who, dict) or not isinstance(params, dict):
        return at, None
    targets: list[str] = []
    for key in ("secretId", "name"):
        if isinstance(params.get(key), str):
            targets.append(params[key])
    if isinstance(params.get("names"), list):
        targets += [n for n in params["names"] if isinstance(n, str)]
    principal: tuple[str, str] | None = None
    kind = who.get("type")
    if kind == "IAMUser" and who.get("userName"):
        principal = ("aws-iam-user", str(who["userName"]))
    elif kind == "AssumedRole":
        # the role's name: its session issuer's, or the session ARN's
        # (arn:aws:sts::<account>:assumed-role/<role>/<session>)
        issuer = (who.get("sessionContext") or {}).get("sessionIssuer") or {}
        role = str(issuer.get("userName") or "")
        if not role and ":assumed-role/" in str(who.get("arn") or ""):
            role = str(who["arn"]).split(":assumed-role/", 1)[1].split("/", 1)[0]
        if role:
            principal = ("aws-iam-role", role)
    event = TrailEvent(
        at=at,
        name=str(record.get("eventName") or listed.get("EventName") or ""),
        region=str(record.get("awsRegion") or region),
        arn=str(who.get("arn") or who.get("type") or "unknown"),
        principal=principal,
        access_key_id=str(who.get("accessKeyId") or listed.get("AccessKeyId") or ""),
        targets=targets,
        remote=str(record["sourceIPAddress"]) if record.get("sourceIPAddress") else None,
    )
    return at, event


def start_of(
    region: str, positions: dict[str, ReadPosition], now: datetime, days: int
) -> datetime:
    """Where a region's read starts: the window's start, or the last position less the
    overlap when that is later."""
    start = now - timedelta(days=days)
    pos = positions.get(position_key(region))
    if pos is not None:
        start = max(start, datetime.fromtimestamp(pos.offset, UTC) - OVERLAP)
    return start


def read_region(
    client: Any, region: str, names: Iterable[str], start: datetime, end: datetime
) -> RegionRead:
    """The read events of one region between ``start`` and ``end``.

    LookupEvents is throttled at 2 requests a second per account and region: the calls are one
    paginated query per event name (it takes one lookup attribute a request) with the largest
    page, one region at a time per thread, and the client's standard retry mode backs off when
    a ThrottlingException comes anyway."""
    out = RegionRead(region, asked_from=start)
    try:
        for name in names:
            pages = client.get_paginator("lookup_events").paginate(
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}],
                StartTime=start,
                EndTime=end,
                PaginationConfig={"PageSize": PAGE},
            )
            for page in pages:
                for listed in page.get("Events") or []:
                    try:
                        at, event = parse_event(listed, region)
                    except (AttributeError, TypeError, ValueError):
                        continue  # a record not shaped as CloudTrail documents it: no use read
                    if at is not None and (out.newest is None or at > out.newest):
                        out.newest = at
                    if event is not None:
                        out.events.append(event)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        out.error = f"HTTP {code}" if code.isdigit() else code
    except botocore.exceptions.BotoCoreError as exc:
        out.error = type(exc).__name__
    return out


def _secret_keys(cred: Credential) -> list[str]:
    """How a call may name a secret: its name, its ARN, or its ARN without the random suffix
    (a partial ARN)."""
    arn = cred.native_id
    keys = [cred.name, arn]
    if arn.count("-") and len(arn.rsplit("-", 1)[1]) == 6:
        keys.append(arn.rsplit("-", 1)[0])
    return keys


def _parameter_name(target: str) -> list[str]:
    """The parameter a call names: a name (with a ``:version`` or ``:label`` selector, which
    names cannot contain) or an ARN, whose ``parameter/`` part drops a hierarchy's first
    slash."""
    if target.startswith("arn:"):
        rest = target.split(":parameter/", 1)[-1].split(":", 1)[0]
        return [rest, f"/{rest}"]
    return [target.split(":", 1)[0]]


@dataclass
class Applied:
    usage: list[UsageEvent] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    positions: list[ReadPosition] = field(default_factory=list)


def apply(
    reads: list[RegionRead],
    credentials: list[Credential],
    grants: list[Grant],
    agents_of: dict[tuple[str, str], list[str]],
    own: set[str],
    prior: dict[str, ReadPosition],
) -> Applied:
    """The regions' reads as use of this collect's credentials: usage events, each credential's
    last use (the latest known; CloudTrail's time beats a day of LastAccessedDate, and never
    replaces a later GetAccessKeyLastUsed), and the grants of the agents that made the calls.
    ``own``: keyshift's own access key and ARN, whose reads are its own."""
    out = Applied()
    secrets: dict[tuple[str, str], Credential] = {}
    parameters: dict[tuple[str, str], Credential] = {}
    keys: dict[str, Credential] = {}
    for cred in credentials:
        region = cred.tags.get("region", "")
        if cred.kind == "secretsmanager":
            for key in _secret_keys(cred):
                secrets[(region, key)] = cred
        elif cred.kind == "ssm-parameter":
            parameters[(region, cred.name)] = cred
        elif cred.kind == "iam-key":
            keys[cred.native_id] = cred
    for read in reads:
        if read.error is not None:
            out.errors.append(
                ItemError(
                    where=f"cloudtrail {read.region}",
                    message=f"region {read.region}: CloudTrail not read ({read.error})",
                )
            )
        elif read.newest is not None:
            old = prior.get(position_key(read.region))
            newest = int(read.newest.timestamp())
            if old is None or newest > old.offset:
                out.positions.append(
                    ReadPosition(
                        log=position_key(read.region),
                        inode=0,
                        offset=newest,
                        head=read.newest.isoformat(),
                    )
                )
        # what was read before a failure is still true: kept, though the position stays
        for event in read.events:
            if event.access_key_id in own or event.arn in own:
                continue
            used: list[Credential] = []
            for target in event.targets:
                if event.name in SECRET_EVENTS:
                    found = secrets.get((event.region, target))
                    if found is not None:
                        used.append(found)
                else:
                    for name in _parameter_name(target):
                        found = parameters.get((event.region, name))
                        if found is not None:
                            used.append(found)
                            break
            if not used:
                continue  # not a read of anything this collect lists
            key = keys.get(event.access_key_id)
            for cred in [*used, *([key] if key else [])]:
                out.usage.append(
                    UsageEvent(
                        credential_id=cred.id,
                        at=event.at,
                        identity=event.arn,
                        remote=event.remote,
                        operation=event.name,
                        evidence=EVIDENCE,
                    )
                )
                if cred.last_used_at is None or event.at > cred.last_used_at:
                    cred.last_used_at = event.at
                    cred.last_used_evidence = EVIDENCE
                    if cred.tags.get("last_used") == NO_USE_RECORDED:
                        del cred.tags["last_used"]
            if event.principal is None:
                continue
            agents = set(agents_of.get(event.principal, []))
            head = f"iam-{event.principal[0].removeprefix('aws-iam-')}:{event.principal[1]}"
            ids = {c.id for c in used} | ({key.id} if key else set())
            for grant in grants:
                # the caller's own grants; one through a role it may assume is not what it
                # used here (a call made as that role names the role, and who assumed it is
                # not known)
                if (
                    grant.agent in agents
                    and grant.credential_id in ids
                    and grant.chain[1:2] == [head]
                    and not any(step.startswith("assume:") for step in grant.chain)
                ):
                    grant.used = True
    return out
