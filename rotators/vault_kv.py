"""Rotate a KV v2 secret in Vault / OpenBao.

Credential ids look like ``<source>:kv:<mount>/<path>``. KV v2 keeps numbered versions and
readers of the latest get the newest one, which gives zero-downtime rotation for free:

- create  writes a new version (check-and-set on the current one) with fresh values for the
          rotated key(s), keeping the other keys as they are. Before writing, the run id, the
          base version and the new values' fingerprint go into the secret's custom metadata, so
          a re-run after a crash finds the version this run already wrote instead of writing a
          second one.
- verify  reads that version back: present, not deleted, the rotated keys non-empty and
          holding what this run wrote (by fingerprint), different from the previous version,
          other keys untouched.
- promote records ``keyshift_current_version`` and clears the pending markers; the previous
          version stays readable by number through the grace period.
- revoke  destroys the previous version (never the current one).
- rollback puts the previous data back on top (as a new version) if the failed one is the
          latest, then destroys the failed version and clears the markers.

Values exist only in memory, for the one call that writes or checks them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import hvac.exceptions
import requests

from rotators.base import (
    CredentialInfo,
    GeneratorRule,
    Pending,
    Plan,
    RotatorContext,
    RotatorError,
    VerifyFailed,
)
from rotators.values import canonical_value

PENDING_RUN = "keyshift_pending_run"
PENDING_VERSION = "keyshift_pending_version"
PENDING_BASE = "keyshift_pending_base"
PENDING_FINGERPRINT = "keyshift_pending_fingerprint"
PENDING_KEYS = "keyshift_pending_keys"
CURRENT_VERSION = "keyshift_current_version"
ROTATED_AT = "keyshift_rotated_at"
_PENDING_MARKERS = (PENDING_RUN, PENDING_VERSION, PENDING_BASE, PENDING_FINGERPRINT, PENDING_KEYS)

DEFAULT_KEY = "value"
DEFAULT_MAX_VERSIONS = 10  # KV v2's own default when neither the secret nor the mount sets one
# The previous version must survive the new write (and a rollback's write-back) to stay
# readable through the grace period.
MIN_MAX_VERSIONS = 3


@dataclass(frozen=True)
class _Target:
    client: Any
    mount: str
    path: str

    @property
    def where(self) -> str:
        return f"{self.mount}/{self.path}"


@dataclass(frozen=True)
class _Meta:
    current_version: int
    max_versions: int
    versions: dict[str, dict[str, Any]]
    custom: dict[str, str]

    def alive(self, version: int) -> bool:
        info = self.versions.get(str(version))
        return bool(info) and not info.get("destroyed") and not info.get("deletion_time")


def _split_keys(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [k.strip() for k in raw.split(",") if k.strip()]
    if isinstance(raw, list | tuple):
        return [str(k).strip() for k in raw if str(k).strip()]
    return []


class VaultKvRotator:
    name: ClassVar[str] = "vault-kv"
    kinds: ClassVar[tuple[str, ...]] = ("kv",)
    manual: ClassVar[bool] = False

    def __init__(self, context: RotatorContext) -> None:
        self.context = context

    # --- the protocol ---------------------------------------------------------------------

    def plan(self, cred: CredentialInfo) -> Plan:
        # Offline on purpose: the TUI shows plans for many credentials at once.
        mount, _, path = cred.native_id.partition("/")
        keys = _split_keys(cred.metadata.get("rotate_keys")) or [DEFAULT_KEY]
        rule = self._rule(cred.metadata)
        warnings = []
        if cred.metadata.get(PENDING_RUN):
            warnings.append(f"a rotation is pending (run {cred.metadata[PENDING_RUN]})")
        return Plan(
            rotator=self.name,
            summary=(
                f"write a new version of {cred.native_id} with new {', '.join(keys)} "
                f"({rule.length} {rule.alphabet} chars), keep the previous version readable "
                "through the grace period, then destroy it"
            ),
            steps=[
                "create: write a new version (check-and-set), other keys unchanged",
                "verify: read the new version back and check it",
                "promote: record it as current; readers of the latest already get it",
                "revoke: destroy the previous version after the grace period",
            ],
            zero_downtime=True,
            needs=[
                f"read, update on {mount}/data/{path}",
                f"read, patch on {mount}/metadata/{path}",
                f"update on {mount}/destroy/{path}",
            ],
            warnings=warnings,
        )

    def create(self, cred: CredentialInfo, run_id: str) -> Pending:
        with self._errors(cred, "create"):
            t = self._target(cred)
            meta = self._metadata(t)
            owner = meta.custom.get(PENDING_RUN)
            if owner and owner != run_id:
                raise RotatorError(
                    f"{t.where} has a rotation pending from run {owner}; "
                    "resume or roll that run back first"
                )
            if owner == run_id:
                found = self._find_written(t, meta, run_id)
                if found is not None:
                    return found  # written before a crash: do not write a second version
                base = int(meta.custom.get(PENDING_BASE) or 0)
                if meta.current_version != base:
                    raise RotatorError(
                        f"{t.where} changed (version {meta.current_version}) since this run "
                        f"started from version {base}",
                        retryable=True,
                    )
            base = meta.current_version
            if base == 0 or not meta.alive(base):
                raise RotatorError(f"{t.where} has no readable current version to rotate")
            current = self._read(t, base)
            hints = {**cred.metadata, **meta.custom}
            keys = self._rotate_keys(hints, current, t)
            rule = self._rule(hints)
            new_data = {**current, **{k: self.context.generate(rule) for k in keys}}
            fp = self._fingerprint(new_data)
            self._ensure_retention(t, meta)
            self._patch_custom(
                t,
                {
                    PENDING_RUN: run_id,
                    PENDING_BASE: str(base),
                    PENDING_FINGERPRINT: fp,
                    PENDING_KEYS: ",".join(keys),
                    PENDING_VERSION: None,
                },
            )
            try:
                written = t.client.secrets.kv.v2.create_or_update_secret(
                    t.path, new_data, cas=base, mount_point=t.mount
                )
            except hvac.exceptions.InvalidRequest as exc:
                self._patch_custom(t, dict.fromkeys(_PENDING_MARKERS))
                if "check-and-set" in str(exc):
                    raise RotatorError(
                        f"{t.where} was written by someone else during the rotation; try again",
                        retryable=True,
                    ) from None
                raise
            version = int(written["data"]["version"])
            self._patch_custom(t, {PENDING_VERSION: str(version)})
            return self._pending(t, version, base, fp, keys, run_id)

    def verify(self, cred: CredentialInfo, pending: Pending) -> None:
        with self._errors(cred, "verify"):
            t = self._target(cred)
            meta = self._metadata(t)
            version = int(pending.version)
            if str(version) not in meta.versions:
                raise VerifyFailed(f"version {version} of {t.where} does not exist")
            if not meta.alive(version):
                raise VerifyFailed(f"version {version} of {t.where} was deleted or destroyed")
            data = self._read(t, version)
            keys = list(pending.detail.get("keys") or [DEFAULT_KEY])
            for key in keys:
                if not isinstance(data.get(key), str) or not data[key]:
                    raise VerifyFailed(
                        f"version {version} of {t.where}: {key!r} is missing or empty"
                    )
            expected = pending.detail.get("fingerprint")
            if expected and self._fingerprint(data) != expected:
                raise VerifyFailed(
                    f"version {version} of {t.where} does not hold what this run wrote"
                )
            previous = int(pending.previous_version) if pending.previous_version else 0
            if previous and meta.alive(previous):
                old = self._read(t, previous)
                same = [k for k in keys if old.get(k) == data[k]]
                if same:
                    raise VerifyFailed(
                        f"version {version} of {t.where} did not change {', '.join(same)}"
                    )
                changed = [k for k in old if k not in keys and data.get(k) != old[k]]
                if changed:
                    raise VerifyFailed(
                        f"version {version} of {t.where} changed keys it should have kept: "
                        f"{', '.join(sorted(changed))}"
                    )

    def promote(self, cred: CredentialInfo, pending: Pending) -> None:
        with self._errors(cred, "promote"):
            t = self._target(cred)
            meta = self._metadata(t)
            version = int(pending.version)
            if meta.current_version != version:
                raise RotatorError(
                    f"{t.where} is at version {meta.current_version}, not this run's "
                    f"version {version}: someone wrote it during the rotation"
                )
            updates: dict[str, str | None] = dict.fromkeys(_PENDING_MARKERS)
            updates[CURRENT_VERSION] = str(version)
            updates[ROTATED_AT] = self.context.now().isoformat(timespec="seconds")
            self._patch_custom(t, updates)

    def revoke(self, cred: CredentialInfo, previous_version: str) -> None:
        with self._errors(cred, "revoke"):
            t = self._target(cred)
            meta = self._metadata(t)
            previous = int(previous_version)
            if previous >= meta.current_version:
                # Never leave the secret without a valid version (DESIGN.md, Rotators).
                raise RotatorError(
                    f"refusing to destroy version {previous} of {t.where}: it is the current one"
                )
            info = meta.versions.get(str(previous))
            if info and not info.get("destroyed"):
                t.client.secrets.kv.v2.destroy_secret_versions(
                    t.path, [previous], mount_point=t.mount
                )

    def rollback(self, cred: CredentialInfo, pending: Pending) -> None:
        with self._errors(cred, "rollback"):
            try:
                t = self._target(cred)
            except RotatorError as exc:
                if not pending.version and not exc.retryable:
                    return  # create failed on the mount itself (not KV v2, ...): nothing written
                raise
            meta = self._metadata(t)
            run_id = pending.detail.get("run_id")
            version = int(pending.version) if pending.version else 0
            base = int(pending.previous_version) if pending.previous_version else 0
            ours = run_id is not None and meta.custom.get(PENDING_RUN) == run_id
            if not version and ours:
                # create failed part-way: find what it wrote, if anything
                found = self._find_written(t, meta, run_id)
                version = int(found.version) if found else 0
                base = base or int(meta.custom.get(PENDING_BASE) or 0)
            if version and meta.current_version == version:
                # Readers of the latest get the failed version (or nothing, if it was deleted):
                # put the previous data back on top before anything else.
                if not base or not meta.alive(base):
                    raise RotatorError(
                        f"cannot roll back {t.where}: previous version {base} is not readable"
                    )
                old = self._read(t, base)
                t.client.secrets.kv.v2.create_or_update_secret(
                    t.path, old, cas=version, mount_point=t.mount
                )
            if version:
                info = meta.versions.get(str(version))
                if info and not info.get("destroyed"):
                    t.client.secrets.kv.v2.destroy_secret_versions(
                        t.path, [version], mount_point=t.mount
                    )
            if ours or (not run_id and meta.custom.get(PENDING_VERSION) == str(version)):
                self._patch_custom(t, dict.fromkeys(_PENDING_MARKERS))

    # --- helpers --------------------------------------------------------------------------

    @contextmanager
    def _errors(self, cred: CredentialInfo, step: str) -> Iterator[None]:
        """Vault client errors become RotatorError naming the secret (never a value)."""
        try:
            yield
        except RotatorError:
            raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            raise RotatorError(
                f"{step}: cannot reach vault source {cred.source}", retryable=True
            ) from None
        except (
            hvac.exceptions.VaultDown,
            hvac.exceptions.InternalServerError,
            hvac.exceptions.BadGateway,
            hvac.exceptions.RateLimitExceeded,
        ) as exc:
            raise RotatorError(
                f"{step} {cred.native_id}: vault unavailable ({type(exc).__name__})",
                retryable=True,
            ) from None
        except hvac.exceptions.Forbidden:
            raise RotatorError(
                f"{step} {cred.native_id}: permission denied by {cred.source}"
            ) from None
        except hvac.exceptions.VaultError as exc:
            errors = "; ".join(str(e) for e in (exc.errors or [])) or type(exc).__name__
            raise RotatorError(f"{step} {cred.native_id}: {errors}") from None

    def _target(self, cred: CredentialInfo) -> _Target:
        client = self.context.vault_client(cred.source)
        native = cred.native_id.strip("/")
        try:
            mount_info = client.adapter.get(f"/v1/sys/internal/ui/mounts/{native}")["data"]
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidPath):
            mount_info = None
        if mount_info is None:
            # No mount introspection for this token: take the first path segment and let the
            # KV v2 endpoints themselves fail if that is wrong.
            mount, _, path = native.partition("/")
            return _Target(client, mount, path)
        mount = str(mount_info.get("path", "")).strip("/")
        if mount_info.get("type") not in ("kv", "generic"):
            raise RotatorError(
                f"{mount}/ is a {mount_info.get('type')} mount, not KV: vault-kv cannot rotate "
                f"{native}"
            )
        version = str((mount_info.get("options") or {}).get("version") or "1")
        if version != "2":
            raise RotatorError(
                f"{mount}/ is a KV v{version} mount; vault-kv rotates KV v2 only "
                f"(upgrade it with `bao kv enable-versioning {mount}/`)"
            )
        path = native[len(mount) :].strip("/")
        if not path:
            raise RotatorError(f"{native} names a mount, not a secret")
        return _Target(client, mount, path)

    def _metadata(self, t: _Target) -> _Meta:
        try:
            data = t.client.secrets.kv.v2.read_secret_metadata(t.path, mount_point=t.mount)["data"]
        except hvac.exceptions.InvalidPath:
            raise RotatorError(f"{t.where} does not exist") from None
        return _Meta(
            current_version=int(data.get("current_version") or 0),
            max_versions=int(data.get("max_versions") or 0),
            versions=data.get("versions") or {},
            custom={k: str(v) for k, v in (data.get("custom_metadata") or {}).items()},
        )

    def _read(self, t: _Target, version: int) -> dict[str, Any]:
        try:
            response = t.client.secrets.kv.v2.read_secret_version(
                t.path, version=version, mount_point=t.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            raise RotatorError(f"version {version} of {t.where} is not readable") from None
        return dict(response["data"]["data"] or {})

    def _patch_custom(self, t: _Target, values: dict[str, str | None]) -> None:
        """Merge into the secret's custom metadata (None deletes a key), leaving the rest."""
        try:
            t.client.adapter.request(
                "PATCH",
                f"/v1/{t.mount}/metadata/{t.path}",
                json={"custom_metadata": values},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        except (hvac.exceptions.UnsupportedOperation, hvac.exceptions.InvalidPath):
            # An older server without metadata PATCH: read, merge, write back in full.
            data = t.client.secrets.kv.v2.read_secret_metadata(t.path, mount_point=t.mount)["data"]
            custom = dict(data.get("custom_metadata") or {})
            for key, value in values.items():
                if value is None:
                    custom.pop(key, None)
                else:
                    custom[key] = value
            t.client.secrets.kv.v2.update_metadata(
                t.path,
                max_versions=data.get("max_versions"),
                cas_required=bool(data.get("cas_required")),
                delete_version_after=data.get("delete_version_after") or "0s",
                mount_point=t.mount,
                custom_metadata=custom,
            )

    def _ensure_retention(self, t: _Target, meta: _Meta) -> None:
        """Make sure writing the new version does not evict the previous one."""
        effective = meta.max_versions
        if not effective:
            try:
                config = t.client.secrets.kv.v2.read_configuration(mount_point=t.mount)["data"]
                effective = int(config.get("max_versions") or 0)
            except hvac.exceptions.VaultError:
                effective = 0  # cannot see the mount config: assume KV's default
        effective = effective or DEFAULT_MAX_VERSIONS
        if effective < MIN_MAX_VERSIONS:
            t.client.adapter.request(
                "PATCH",
                f"/v1/{t.mount}/metadata/{t.path}",
                json={"max_versions": MIN_MAX_VERSIONS},
                headers={"Content-Type": "application/merge-patch+json"},
            )

    def _find_written(self, t: _Target, meta: _Meta, run_id: str) -> Pending | None:
        """The version this run wrote before a crash, recognised by its fingerprint."""
        custom = meta.custom
        base = int(custom.get(PENDING_BASE) or 0)
        expected = custom.get(PENDING_FINGERPRINT)
        keys = _split_keys(custom.get(PENDING_KEYS)) or [DEFAULT_KEY]
        marked = custom.get(PENDING_VERSION)
        if marked:
            # create recorded it; verify decides whether it is still any good
            return self._pending(t, int(marked), base, expected or "", keys, run_id)
        if not expected:
            return None
        for version in range(base + 1, meta.current_version + 1):
            if not meta.alive(version):
                continue
            if self._fingerprint(self._read(t, version)) == expected:
                self._patch_custom(t, {PENDING_VERSION: str(version)})
                return self._pending(t, version, base, expected, keys, run_id)
        return None

    def _pending(
        self, t: _Target, version: int, base: int, fp: str, keys: list[str], run_id: str
    ) -> Pending:
        # Journaled by the engine: versions, keys and a fingerprint, never a value.
        return Pending(
            version=str(version),
            previous_version=str(base) if base else None,
            detail={
                "mount": t.mount,
                "path": t.path,
                "keys": keys,
                "fingerprint": fp,
                "run_id": run_id,
            },
        )

    def _fingerprint(self, data: dict[str, Any]) -> str:
        return self.context.fingerprint(canonical_value(data))

    @staticmethod
    def _rotate_keys(hints: dict[str, Any], current: dict[str, Any], t: _Target) -> list[str]:
        keys = _split_keys(hints.get("rotate_keys"))
        if keys:
            return keys
        if DEFAULT_KEY in current:
            return [DEFAULT_KEY]
        if len(current) == 1:
            return list(current)
        raise RotatorError(
            f"{t.where} has several keys and no {DEFAULT_KEY!r}: say which to rotate in its "
            "custom metadata rotate_keys (comma-separated)"
        )

    @staticmethod
    def _rule(hints: dict[str, Any]) -> GeneratorRule:
        default = GeneratorRule()
        try:
            length = int(hints.get("generator_length") or default.length)
        except (TypeError, ValueError):
            raise RotatorError(
                f"generator_length {hints.get('generator_length')!r} is not a number"
            ) from None
        alphabet = str(hints.get("generator_alphabet") or default.alphabet)
        if alphabet not in ("alnum", "hex", "urlsafe", "printable"):
            raise RotatorError(
                f"generator_alphabet {alphabet!r} is not one of alnum, hex, urlsafe, printable"
            )
        if not 16 <= length <= 512:
            raise RotatorError(f"generator_length {length} is outside 16..512")
        return GeneratorRule(
            length=length, alphabet=alphabet, prefix=str(hints.get("generator_prefix") or "")
        )
