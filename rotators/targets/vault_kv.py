"""Deliver to a Vault / OpenBao KV secret (v2 or v1), at the keys the declaration names.

KV v2 keeps numbered versions and readers of the latest get the newest, so:

- deliver  writes a new version (check-and-set on the current one) holding the new value at
           the declared keys and every other key as it was. Before writing, the run id and
           the base version go into the secret's custom metadata, so a resumed run finds the
           version it wrote instead of writing a second one. While a run still promises the
           previous version (until retire), ``max_versions`` is raised so that no writer,
           keyshift's rollback included, can evict it; retire puts the setting back.
- promote  clears the markers and records ``keyshift_current_version``.
- retire   destroys the previous version (never the current one).
- rollback puts the previous data back on top if the failed version is the latest, then
           destroys the failed version.

KV v1 keeps one value: deliver overwrites it, and only the run's memory holds the old value
for a rollback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import hvac.exceptions

from rotators.base import CredentialInfo, Handle, PartPlan, RotatorError, RunContext, Value
from rotators.targets.common import field_list, matches
from rotators.vault_common import vault_errors

PENDING_RUN = "keyshift_pending_run"
PENDING_BASE = "keyshift_pending_base"
PENDING_VERSION = "keyshift_pending_version"
CURRENT_VERSION = "keyshift_current_version"
ROTATED_AT = "keyshift_rotated_at"
KEPT_MAX_VERSIONS = "keyshift_kept_max_versions"  # what max_versions was before a run raised it
_MARKERS = (PENDING_RUN, PENDING_BASE, PENDING_VERSION)
DEFAULT_MAX_VERSIONS = 10  # KV v2's own default when neither the secret nor the mount sets one
# While a run promises the previous version, keep this many: other writers during the grace
# period, and the rollback's own write-back, must not evict it.
PROMISE_MAX_VERSIONS = 100


@dataclass(frozen=True)
class _Place:
    client: Any
    mount: str
    path: str
    version: int  # 1 or 2

    @property
    def where(self) -> str:
        return f"{self.mount}/{self.path}"


@dataclass(frozen=True)
class _Meta:
    current: int
    max_versions: int
    delete_after: str
    versions: dict[str, dict[str, Any]]
    custom: dict[str, str]

    def alive(self, version: int) -> bool:
        info = self.versions.get(str(version))
        if not info or info.get("destroyed"):
            return False
        deleted = str(info.get("deletion_time") or "")
        return not deleted or deleted.startswith("0001-")


class VaultKvTarget:
    role: ClassVar[str] = "target"
    name: ClassVar[str] = "vault-kv"
    stages: ClassVar[bool] = False

    def __init__(self, spec: Mapping[str, Any], fields: Mapping[str, str], ctx: RunContext):
        self.ctx = ctx
        self.source = str(spec["source"])
        self.native = str(spec["path"]).strip("/")
        self.fields = dict(fields)  # part -> KV key
        self._place: _Place | None = None
        self._peeked: dict[str, Any] | None = None

    def where(self) -> str:
        return f"{self.source} {self.native} ({field_list(self.fields)})"

    # --- the protocol --------------------------------------------------------------------

    def plan(self, cred: CredentialInfo) -> PartPlan:
        with self._errors("plan"):
            p = self._where()
            data = self._current(p)
            self._peeked = data  # read() right after the plan needs no second request
            if data is None:
                return PartPlan(refused=f"{p.where} does not exist or has no readable version")
            if not self.fields:
                if len(data) != 1:
                    return PartPlan(
                        refused=f"{p.where} has several keys ({', '.join(sorted(data))}) and "
                        "what each holds is not declared: say which key rotates (rotations: "
                        "... key:), or mark the others static in its issuer tag"
                    )
                self.fields = {"value": next(iter(data))}
            missing = [k for k in self.fields.values() if k not in data]
            if missing:
                return PartPlan(
                    refused=f"{p.where} has no key {', '.join(missing)} (it has "
                    f"{', '.join(sorted(data)) or 'no keys'})"
                )
            others = sorted(set(data) - set(self.fields.values()))
            keep = f", other keys ({', '.join(others)}) unchanged" if others else ""
            if p.version == 1:
                return PartPlan(
                    steps=[
                        f"deliver: overwrite {p.where} with the new {field_list(self.fields)}"
                        f"{keep} (KV v1 keeps no versions: consumers read it at once)",
                    ],
                    needs=[f"read, update on {p.where}"],
                    warnings=[
                        f"{p.mount}/ is KV v1: the old value is kept only in this run's memory "
                        "until promote"
                    ],
                )
            meta = self._metadata(p)
            warnings = []
            if meta.custom.get(PENDING_RUN):
                warnings.append(f"markers of run {meta.custom[PENDING_RUN]} are on {p.where}")
            if meta.delete_after not in ("", "0s", "0"):
                warnings.append(
                    f"{p.where} deletes versions after {meta.delete_after}: a grace period "
                    "longer than that loses the previous version early"
                )
            return PartPlan(
                steps=[
                    f"deliver: write version {meta.current + 1} of {p.where} with the new "
                    f"{field_list(self.fields)}{keep} (check-and-set); readers of the latest "
                    "get it at once",
                    f"promote: record version {meta.current + 1} as current",
                    f"retire: destroy version {meta.current} (the old value) after revoke",
                ],
                needs=[
                    f"read, update on {p.mount}/data/{p.path}",
                    f"read, patch on {p.mount}/metadata/{p.path}",
                    f"update on {p.mount}/destroy/{p.path}",
                ],
                warnings=warnings,
            )

    def read(self) -> Value | None:
        peeked, self._peeked = self._peeked, None
        if peeked is not None:
            return self._pick(peeked)
        with self._errors("read"):
            p = self._where()
            return self._pick(self._current(p))

    def deliver(self, value: Value) -> Handle:
        with self._errors("deliver"):
            p = self._where()
            if p.version == 1:
                data = self._current(p) or {}
                self._pick(data)  # settles an undeclared secret's lone key
                p.client.secrets.kv.v1.create_or_update_secret(
                    p.path, {**data, **self._fields_of(value)}, mount_point=p.mount
                )
                return {"kv": 1}
            meta = self._metadata(p)
            if not self.fields and meta.current and meta.alive(meta.current):
                self._pick(self._read(p, meta.current))
            owner = meta.custom.get(PENDING_RUN)
            if owner == self.ctx.run_id:
                found = self._ours(p, meta, value)
                if found is not None:
                    return found  # written before a crash: never a second version
            elif owner and meta.alive(int(meta.custom.get(PENDING_VERSION) or 0) or -1):
                raise RotatorError(f"{p.where} carries a pending version of run {owner}")
            base = meta.current
            if not base or not meta.alive(base):
                raise RotatorError(f"{p.where} has no readable current version")
            current = self._read(p, base)
            markers: dict[str, str | None] = {
                PENDING_RUN: self.ctx.run_id, PENDING_BASE: str(base), PENDING_VERSION: None
            }
            self._patch(p, markers, **self._promise(meta, markers))
            self.ctx.checkpoint("vault-kv:marked")
            try:
                written = p.client.secrets.kv.v2.create_or_update_secret(
                    p.path, {**current, **self._fields_of(value)}, cas=base, mount_point=p.mount
                )
            except hvac.exceptions.InvalidRequest as exc:
                if "check-and-set" in str(exc):
                    raise RotatorError(
                        f"{p.where} changed while this run wrote it (another writer)",
                        retryable=True,
                    ) from None
                raise
            version = int(written["data"]["version"])
            self.ctx.checkpoint("vault-kv:written")
            self._patch(p, {PENDING_VERSION: str(version)})
            return {"version": version, "previous_version": base}

    def read_delivered(self, handle: Handle) -> Value | None:
        with self._errors("verify"):
            p = self._where()
            if p.version == 1:
                return self._pick(self._current(p))
            meta = self._metadata(p)
            version = int(handle.get("version") or 0)
            if not meta.alive(version):
                return None
            return self._pick(self._read(p, version))

    def find_delivered(self, expected: Mapping[str, str]) -> tuple[Handle, Value] | None:
        with self._errors("resume"):
            p = self._where()
            if p.version == 1:
                current = self._pick(self._current(p))
                return ({"kv": 1}, current) if matches(self.ctx, current, expected) else None
            meta = self._metadata(p)
            if meta.custom.get(PENDING_RUN) != self.ctx.run_id:
                return None
            base = int(meta.custom.get(PENDING_BASE) or 0)
            for version in range(meta.current, base, -1):
                if not meta.alive(version):
                    continue
                value = self._pick(self._read(p, version))
                if matches(self.ctx, value, expected):
                    self._patch(p, {PENDING_VERSION: str(version)})
                    return {"version": version, "previous_version": base}, value  # type: ignore[return-value]
            return None

    def read_previous(self, handle: Handle) -> Value | None:
        with self._errors("read"):
            p = self._where()
            previous = int(handle.get("previous_version") or 0)
            if p.version == 1 or not previous:
                return None
            meta = self._metadata(p)
            return self._pick(self._read(p, previous)) if meta.alive(previous) else None

    def promote(self, handle: Handle) -> None:
        with self._errors("promote"):
            p = self._where()
            if p.version == 1:
                return
            version = int(handle["version"])
            meta = self._metadata(p)
            if not meta.alive(version):
                raise RotatorError(f"version {version} of {p.where} is gone; cannot promote it")
            if meta.current != version:
                raise RotatorError(
                    f"{p.where} moved on to version {meta.current} since version {version} was "
                    "delivered (another writer): promote refused, the run rolls back"
                )
            updates: dict[str, str | None] = dict.fromkeys(_MARKERS)
            updates[CURRENT_VERSION] = str(version)
            updates[ROTATED_AT] = self.ctx.now().isoformat(timespec="seconds")
            self._patch(p, updates)

    def retire(self, handle: Handle) -> None:
        with self._errors("retire"):
            p = self._where()
            if p.version == 1:
                return
            previous = int(handle.get("previous_version") or 0)
            meta = self._metadata(p)
            if previous and previous >= meta.current:
                raise RotatorError(
                    f"refusing to destroy version {previous} of {p.where}: it is the current one"
                )
            if previous and meta.alive(previous):
                p.client.secrets.kv.v2.destroy_secret_versions(
                    p.path, [previous], mount_point=p.mount
                )
            self._release(p, meta)

    def rollback(self, handle: Handle | None, old: Value | None) -> None:
        with self._errors("rollback"):
            p = self._where()
            if p.version == 1:
                if old is None:
                    raise RotatorError(
                        f"cannot restore {p.where}: KV v1 keeps no previous version and the old "
                        "value was not kept (the run that read it ended)"
                    )
                data = self._current(p) or {}
                p.client.secrets.kv.v1.create_or_update_secret(
                    p.path, {**data, **self._fields_of(old)}, mount_point=p.mount
                )
                return
            meta = self._metadata(p)
            if handle is None and meta.custom.get(PENDING_RUN) == self.ctx.run_id:
                marked = int(meta.custom.get(PENDING_VERSION) or 0)
                base = int(meta.custom.get(PENDING_BASE) or 0)
                handle = {"version": marked, "previous_version": base}
                if not marked and meta.current > base:
                    handle["version"] = meta.current  # written, then the process died
            if handle is None:
                return  # this run never wrote here
            version = int(handle.get("version") or 0)
            base = int(handle.get("previous_version") or 0)
            if version and meta.current == version:
                # readers of the latest get the failed value: put the previous data on top
                if base and meta.alive(base):
                    data = self._read(p, base)
                elif old is not None:
                    data = {**self._read(p, version), **self._fields_of(old)}
                else:
                    raise RotatorError(
                        f"cannot roll back {p.where}: version {base} is gone and the old value "
                        "was not kept"
                    )
                p.client.secrets.kv.v2.create_or_update_secret(
                    p.path, data, cas=version, mount_point=p.mount
                )
                self.ctx.checkpoint("vault-kv:restored")
            if version and meta.alive(version):
                p.client.secrets.kv.v2.destroy_secret_versions(
                    p.path, [version], mount_point=p.mount
                )
            self._patch(p, dict.fromkeys(_MARKERS))
            self._release(p, self._metadata(p))

    # --- helpers ---------------------------------------------------------------------------

    def _errors(self, step: str) -> Any:
        return vault_errors(step, self.native, self.source)

    def _fields_of(self, value: Value) -> dict[str, str]:
        if not self.fields:
            raise RotatorError(f"which key of {self.native} holds the value is not settled")
        missing = set(self.fields) - set(value)
        if missing:
            raise RotatorError(f"no value for {', '.join(sorted(missing))}")
        return {key: value[part].reveal() for part, key in self.fields.items()}

    def _pick(self, data: dict[str, Any] | None) -> Value | None:
        if not data:
            return None
        if not self.fields and len(data) == 1:
            self.fields = {"value": next(iter(data))}  # an undeclared secret's lone key
        value = {
            part: self.ctx.keep(str(data[key]))
            for part, key in self.fields.items()
            if isinstance(data.get(key), str) and data[key]
        }
        return value or None

    def _where(self) -> _Place:
        if self._place is not None:
            return self._place
        client = self.ctx.vault_client(self.source)
        try:
            info = client.adapter.get(f"/v1/sys/internal/ui/mounts/{self.native}")["data"]
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidPath):
            info = None
        if info is None:
            # no mount introspection for this token: take the first segment as the mount and
            # let the KV v2 endpoints fail if that is wrong
            mount, _, path = self.native.partition("/")
            self._place = _Place(client, mount, path, 2)
            return self._place
        mount = str(info.get("path", "")).strip("/")
        if info.get("type") not in ("kv", "generic"):
            raise RotatorError(f"{mount}/ is a {info.get('type')} mount, not KV")
        version = 2 if str((info.get("options") or {}).get("version") or "1") == "2" else 1
        path = self.native[len(mount) :].strip("/")
        if not path:
            raise RotatorError(f"{self.native} names a mount, not a secret")
        self._place = _Place(client, mount, path, version)
        return self._place

    def _current(self, p: _Place) -> dict[str, Any] | None:
        try:
            if p.version == 1:
                return dict(
                    p.client.secrets.kv.v1.read_secret(p.path, mount_point=p.mount)["data"] or {}
                )
            got = p.client.secrets.kv.v2.read_secret_version(
                p.path, mount_point=p.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        return dict(got["data"]["data"] or {})

    def _metadata(self, p: _Place) -> _Meta:
        try:
            data = p.client.secrets.kv.v2.read_secret_metadata(p.path, mount_point=p.mount)["data"]
        except hvac.exceptions.InvalidPath:
            raise RotatorError(f"{p.where} does not exist") from None
        return _Meta(
            current=int(data.get("current_version") or 0),
            max_versions=int(data.get("max_versions") or 0),
            delete_after=str(data.get("delete_version_after") or ""),
            versions=data.get("versions") or {},
            custom={k: str(v) for k, v in (data.get("custom_metadata") or {}).items()},
        )

    def _read(self, p: _Place, version: int) -> dict[str, Any]:
        try:
            got = p.client.secrets.kv.v2.read_secret_version(
                p.path, version=version, mount_point=p.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            raise RotatorError(f"version {version} of {p.where} is not readable") from None
        return dict(got["data"]["data"] or {})

    def _ours(self, p: _Place, meta: _Meta, value: Value) -> Handle | None:
        expected = {part: self.ctx.fingerprint(v) for part, v in value.items()}
        found = self.find_delivered(expected)
        return found[0] if found else None

    def _patch(self, p: _Place, values: dict[str, str | None], **settings: Any) -> None:
        """Merge into the secret's custom metadata (None deletes a key), leaving the rest;
        ``settings`` (max_versions) change in the same request."""
        try:
            p.client.adapter.request(
                "PATCH",
                f"/v1/{p.mount}/metadata/{p.path}",
                json={"custom_metadata": values, **settings},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        except (hvac.exceptions.UnsupportedOperation, hvac.exceptions.InvalidPath):
            # an older server without metadata PATCH: read, merge, write back in full
            data = p.client.secrets.kv.v2.read_secret_metadata(p.path, mount_point=p.mount)["data"]
            custom = dict(data.get("custom_metadata") or {})
            for key, value in values.items():
                if value is None:
                    custom.pop(key, None)
                else:
                    custom[key] = value
            p.client.secrets.kv.v2.update_metadata(
                p.path,
                max_versions=settings.get("max_versions", data.get("max_versions")),
                cas_required=bool(data.get("cas_required")),
                delete_version_after=data.get("delete_version_after") or "0s",
                mount_point=p.mount,
                custom_metadata=custom,
            )

    @staticmethod
    def _promise(meta: _Meta, markers: dict[str, str | None]) -> dict[str, Any]:
        """Raise max_versions so the previous version outlives the grace period (recording
        the owner's setting in ``markers``, to put back at retire)."""
        if meta.max_versions >= PROMISE_MAX_VERSIONS or KEPT_MAX_VERSIONS in meta.custom:
            return {}
        markers[KEPT_MAX_VERSIONS] = str(meta.max_versions)
        return {"max_versions": PROMISE_MAX_VERSIONS}

    def _release(self, p: _Place, meta: _Meta) -> None:
        """Put back the max_versions a run raised (0: the mount's setting)."""
        kept = meta.custom.get(KEPT_MAX_VERSIONS)
        if kept is None:
            return
        p.client.adapter.request(
            "PATCH",
            f"/v1/{p.mount}/metadata/{p.path}",
            json={"max_versions": int(kept), "custom_metadata": {KEPT_MAX_VERSIONS: None}},
            headers={"Content-Type": "application/merge-patch+json"},
        )

