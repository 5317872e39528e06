"""Vault / OpenBao: every KV v2 secret under the configured mounts, who may read it, who did.

Listing, fastest first, detected per mount (one probe, then fallback):
1. OpenBao ``SCAN <mount>/detailed-metadata/``: every key's metadata in one request;
2. OpenBao ``LIST <mount>/detailed-metadata/<folder>``: one request per folder;
3. HashiCorp Vault: ``LIST <mount>/metadata/<folder>`` and ``GET <mount>/metadata/<key>`` per key.
Each value is read only to fingerprint it (reuse across environments) and is never kept.

Grants come from each agent's AppRole role -> token policies -> ACL rules (vault_policy.py);
usage from the server's file audit log: reads of ``<mount>/data/<path>`` by someone other than
keyshift itself, and each listed token's latest request, matched by its accessor (a plaintext
accessor directly, an HMAC'd one through ``sys/audit-hash`` of the device writing that file).
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import hvac.adapters
import ijson
import requests
import requests.adapters
import requests.utils
import urllib3
import urllib3.util

from console.connections import VAULT_TIMEOUT
from console.errors import KeyshiftError, SourceError
from console.fingerprint import fingerprint as fingerprint_of
from console.inventory import VaultIdentity
from console.model import (
    Credential,
    CredentialStatus,
    Grant,
    ItemError,
    ReadPosition,
    UsageEvent,
    credential_id,
)
from console.sources.base import CollectResult, Progress
from console.sources.vault_audit import AuditBatch, TokenUse, parse_vault_time, read_audit_log
from console.sources.vault_policy import Acl, PolicyError, Rule, parse_policy
from rotators.values import canonical_value

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.inventory import VaultSource as VaultSourceConfig

KIND = "kv"
KIND_V1 = "kv-v1"  # no versions and no metadata: nothing can be rotated safely
_POOL_SIZE = 8
# accessors hashed per round of sys/audit-hash calls: matching stops after the round in which
# every HMAC'd accessor of the log is found, so few rounds run when the active tokens are young
_HASH_ROUND = 64
# (server address and namespace, audit device) -> accessor -> its HMAC under that device's
# salt: what sys/audit-hash answered, kept for the process (the console and the scheduler
# sync again and again; a token's hash does not change while the device keeps its salt, and
# one remembered accessor, hashed afresh at every match, tells when it does not)
_HASHES: dict[tuple[str, str], dict[str, str]] = {}
_HASH_GENERATION: dict[tuple[str, str], int] = {}  # bumped when a device's hashes are dropped
_HASHES_LOCK = threading.Lock()
_HMAC = "hmac-sha256:"
# custom_metadata keys keyshift reads into Credential fields; the rest become tags
_KNOWN_META = {"owner", "environment", "scope", "sensitivity", "rotator", "created"}


class _Unsupported(Exception):
    """The server does not offer this listing method; try the next one."""


class _Denied(Exception):
    pass


@dataclass(slots=True)
class _Secret:
    mount: str
    path: str
    meta: dict[str, Any]
    kv_version: int = 2
    # its credential, when the lister was given a builder: made as the key is listed, so a
    # listing's metadata and the credentials built from it are never all alive at once
    cred: Credential | None = None

    @property
    def data_path(self) -> str:
        """The API path that reads its value (and that policies and the audit log name)."""
        if self.kv_version == 1:
            return f"{self.mount}/{self.path}"
        return f"{self.mount}/data/{self.path}"


# ---------------------------------------------------------------------------------------
# small helpers


def _duration_seconds(value: Any) -> int | None:
    """Vault durations as reported in metadata: "0s", "768h0m0s", "30m", or an int."""
    if isinstance(value, int):
        return value or None
    if not isinstance(value, str) or not value:
        return None
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for ch in value:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            return None
    if number:
        total += float(number)
    return int(total) or None


def _same_file(written: Path, ours: Path) -> bool:
    """Whether the server's audit file is the one keyshift reads (the server may run on
    another host, where the path names another file or none)."""
    if written == ours:
        return True
    try:
        return written.samefile(ours)
    except OSError:
        return False


def _errors(response: requests.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return [response.text[:200]] if response.text else []
    return [str(e) for e in (body.get("errors") or [])] if isinstance(body, dict) else []


def _short(errors: list[str]) -> str:
    text = " ".join(e.replace("\n", " ").replace("\t", " ") for e in errors)
    text = " ".join(text.split())
    return text[:200] or "no detail"


# ---------------------------------------------------------------------------------------
# the HTTP side


class VaultClient:
    """Thin wrapper over hvac's raw adapter: every call returns the response, never raises
    hvac's exceptions, and turns connection failures into SourceError.

    ``json()`` (every call but the streamed SCAN) goes straight to the urllib3 pool of the
    same requests session, with the settings requests would apply to it (see ``_Direct``):
    requests' own preparation of a request costs about 0.26 ms of CPU under the GIL, as
    much as the rest of the call, and a sync makes one call per token, secret-id and lease."""

    def __init__(self, source: str, address: str, token: str | None, namespace: str | None):
        from console.connections import VaultConnection, hvac_client

        self.source = source
        self.address = address
        self.namespace = namespace
        self.hvac = hvac_client(VaultConnection(source, address, token or "", namespace))
        self.raw = hvac.adapters.RawAdapter.from_adapter(self.hvac.adapter)
        self._direct = _Direct.of(self.hvac.adapter)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.raw.request(method, f"/v1/{path}", raise_exception=False, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise self._unreachable(exc) from None
        except requests.exceptions.Timeout:
            raise self._timed_out() from None
        except requests.exceptions.RequestException as exc:
            raise self._failed(exc) from None

    def json(
        self, method: str, path: str, json: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        if self._direct is not None:
            try:
                status, content = self._direct.call(method, path, json)
            except urllib3.exceptions.ReadTimeoutError:
                raise self._timed_out() from None
            except (urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError,
                    urllib3.exceptions.ClosedPoolError, urllib3.exceptions.SSLError,
                    OSError) as exc:
                raise self._unreachable(exc) from None  # as requests maps them
            except urllib3.exceptions.HTTPError as exc:
                raise self._failed(exc) from None
            if status not in _REDIRECTS:
                return status, _parsed(status, content)
            # a standby's redirect to the active node: followed as requests follows it
        response = self.request(method, path, json=json)
        return response.status_code, _parsed(response.status_code, response.content)

    def _unreachable(self, exc: Exception) -> SourceError:
        reason = "connection refused" if "refused" in str(exc).lower() else "unreachable"
        return SourceError(
            f"{self.source}: cannot reach {self.address} ({reason})",
            hint="is the server running? `keyshift sandbox up` starts the sandbox one",
        )

    def _timed_out(self) -> SourceError:
        return SourceError(
            f"{self.source}: {self.address} did not answer within {VAULT_TIMEOUT}s",
            hint="check the address and the network",
        )

    def _failed(self, exc: Exception) -> SourceError:
        return SourceError(
            f"{self.source}: request to {self.address} failed ({type(exc).__name__})",
            hint="check the address (http/https) and TLS settings",
        )

    def close(self) -> None:
        self.hvac.adapter.close()


_REDIRECTS = frozenset((301, 302, 303, 307, 308))


def _parsed(status: int, content: bytes) -> dict[str, Any]:
    """A response's JSON object ({} for none); an error's body is its ``errors`` (or the
    start of a body that is not JSON)."""
    if status == 204 or not content:
        return {}
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if status >= 400:
        if isinstance(body, dict):
            return {"errors": [str(e) for e in body.get("errors") or []]}
        text = content.decode("utf-8", "replace")[:200] if body is None else ""
        return {"errors": [text] if text else []}
    return body if isinstance(body, dict) else {}


@dataclass(slots=True)
class _Direct:
    """A Vault client's own session, asked through its urllib3 pool without requests'
    per-request layers: the pool requests itself uses for this address (so keep-alive
    connections are shared by every thread and by both paths), with the TLS settings,
    timeout, retries and headers requests and hvac would give each request. None where that
    cannot be had as requests would do it (a proxy applies): the ordinary path serves."""

    adapter: requests.adapters.HTTPAdapter
    host_params: dict[str, Any]
    pool_kwargs: dict[str, Any]
    prefix: str
    headers: dict[str, str]
    timeout: urllib3.Timeout
    retries: Any

    @classmethod
    def of(cls, vault: hvac.adapters.Adapter) -> _Direct | None:
        session: requests.Session = vault.session
        # what hvac passes to each request: connections.py's timeout, and TLS as hvac and the
        # session settle it. A private attribute of hvac's adapter: where a later hvac has
        # none, the ordinary requests path serves (slower, the same answers)
        kwargs = getattr(vault, "_kwargs", None)
        if not isinstance(kwargs, dict):
            return None
        settings = dict(kwargs)
        url = vault.urljoin(vault.base_uri, "v1") + "/"
        try:
            merged = session.merge_environment_settings(
                url, settings.get("proxies") or {}, False, settings.get("verify"),
                settings.get("cert"),
            )
            if requests.utils.select_proxy(url, merged["proxies"]):
                return None
            adapter = session.get_adapter(url)
            if not isinstance(adapter, requests.adapters.HTTPAdapter):
                return None
            prepared = requests.Request("GET", url).prepare()
            host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(
                prepared, merged["verify"], merged["cert"]
            )
            # requests' own check of the CA bundle and client certificate files
            pool = adapter.poolmanager.connection_from_host(**host_params,
                                                            pool_kwargs=pool_kwargs)
            adapter.cert_verify(pool, url, merged["verify"], merged["cert"])
        except (OSError, ValueError, requests.exceptions.RequestException):
            return None  # the ordinary path says what is wrong, on the first request
        headers = {str(k): str(v) for k, v in session.headers.items()}
        if vault.request_header:
            headers["X-Vault-Request"] = "true"
        if vault.token:
            headers["X-Vault-Token"] = vault.token
        if vault.namespace:
            headers["X-Vault-Namespace"] = vault.namespace
        timeout = settings.get("timeout")
        return cls(
            adapter=adapter,
            host_params=host_params,
            pool_kwargs=pool_kwargs,
            prefix=urllib3.util.parse_url(url).path or "/v1/",
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=adapter.max_retries,
        )

    def call(self, method: str, path: str, payload: dict[str, Any] | None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        body = None
        if payload is not None:
            body = json.dumps(payload, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        target = self.prefix + path
        while "//" in target:
            target = target.replace("//", "/")  # as hvac does: Vault reads // as /
        # asked for each call, not kept: the pool manager may close a pool it drops
        pool = self.adapter.poolmanager.connection_from_host(
            **self.host_params, pool_kwargs=self.pool_kwargs
        )
        response = pool.urlopen(
            method, target, body=body, headers=headers, redirect=False,
            assert_same_host=False, retries=self.retries, timeout=self.timeout,
            preload_content=True, decode_content=True,
        )
        return response.status, response.data


def _version_of(info: dict[str, Any] | None) -> str:
    """A KV mount's version as ``sys/internal/ui/mounts`` reports it (none said: v1)."""
    return str(((info or {}).get("options") or {}).get("version") or "1")


def _lister(
    client: VaultClient,
    mount: str,
    version: int,
    pool: ThreadPoolExecutor,
    build: Callable[[_Secret], Credential] | None = None,
) -> MountLister | V1Lister:
    kind = MountLister if version == 2 else V1Lister
    return kind(client, mount, pool, build)


def _is_unsupported(status: int, body: dict[str, Any]) -> bool:
    """A listing method this server lacks (HashiCorp Vault: no SCAN, no detailed-metadata)."""
    if status in (400, 405, 501):
        return True
    text = " ".join(body.get("errors") or []).lower()
    return status == 404 and ("unsupported" in text or "no handler" in text)


# ---------------------------------------------------------------------------------------
# listing

# What ``_credential`` reads of a key's metadata, besides its current version. The rest (every
# older version's times, the CAS and max-versions settings) is dropped as a listing is read.
_META_USED = ("custom_metadata", "current_version", "created_time", "updated_time",
              "delete_version_after")


def _slim(meta: dict[str, Any]) -> dict[str, Any]:
    """A key's metadata cut to what ``_credential`` reads: the fields above and the current
    version's entry of ``versions``."""
    out = {k: meta[k] for k in _META_USED if k in meta}
    versions = meta.get("versions")
    current = str(meta.get("current_version") or 0)
    if isinstance(versions, dict) and current in versions:
        out["versions"] = {current: versions[current]}
    return out


# How much of a SCAN body is read at a time. OpenBao's SCAN takes no ``after`` / ``limit``
# (2.7: both are ignored, the whole mount comes back; LIST honours them), so the body is
# read as a stream instead: each key's metadata is parsed as its bytes arrive, so a large
# response never exists whole, as bytes, text or parsed tree (100,000 keys: about 50 MB).
_SCAN_CHUNK = 256 * 1024
_WHITESPACE = b" \t\n\r"


def _json_backend() -> Any:
    """ijson's C parser (yajl2_c, in its wheels); its pure-Python one is about 18 times
    slower and is taken only where the C one cannot load."""
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:
        return ijson


_ijson = _json_backend()


class _BadJson(ValueError):
    """A SCAN body that is not the JSON document it should be."""


class _Body:
    """A SCAN body as the file ijson reads: each read is requests' next chunk of it (ijson
    takes a read of any length; empty is the end). Its first bytes must open an object."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._started = False

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson's probe of what the file returns (bytes or text)
        for chunk in self._chunks:
            if not self._started:
                head = chunk.lstrip(_WHITESPACE)[:1]
                if head and head != b"{":
                    raise _BadJson("the body is not a JSON object")
                self._started = bool(head)
            if chunk:
                return chunk
        return b""


def _scan_entries(chunks: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """(key, metadata) of each entry of a SCAN body's ``data.key_info``, as the body is read
    from ``chunks``: ijson parses a chunk at a time and hands on the entries it completed
    before reading the next. A body that is not one JSON object (cut short, trailing bytes,
    not UTF-8, not an object) raises _BadJson once the parser sees it; an exception of
    ``chunks`` itself (the connection dropped) goes through as it is. (ijson's pull reader
    over a file, not its push coroutines: those took twice the CPU on 100,000 keys.)"""
    try:
        yield from _ijson.kvitems(_Body(chunks), "data.key_info", use_float=True,
                                  buf_size=_SCAN_CHUNK)
    except ijson.JSONError as exc:
        raise _BadJson(f"malformed JSON document ({type(exc).__name__})") from None


class _Lister:
    """What the listers share: the secrets each keeps, each built into its credential as it is
    listed when a builder is given."""

    METHOD = ""  # the listing method before one has served

    def __init__(
        self,
        client: VaultClient,
        mount: str,
        pool: ThreadPoolExecutor,
        build: Callable[[_Secret], Credential] | None = None,
    ) -> None:
        self.client = client
        self.mount = mount.strip("/")
        self.pool = pool
        self.build = build
        self.method = self.METHOD  # which listing method served, for the bench and tests
        self.errors: list[ItemError] = []

    def _keep(self, secret: _Secret) -> _Secret:
        """``secret`` as listed, with its key's whole metadata: built into its credential,
        or else its metadata cut to what a credential is built from."""
        if self.build is not None:
            secret.cred = self.build(secret)
            secret.meta = {}
        else:
            secret.meta = _slim(secret.meta)
        return secret


class MountLister(_Lister):
    """Lists every KV v2 secret's metadata under one mount, with the fastest method available."""

    def list(self, *, use_scan: bool = True) -> list[_Secret]:
        if use_scan:
            try:
                found = self._scan()
                self.method = "scan"
                return found
            except _Unsupported:
                pass
        try:
            found = self._walk(detailed=True)
            self.method = "detailed-metadata"
            return found
        except _Unsupported:
            pass
        found = self._walk(detailed=False)
        self.method = "metadata"
        return found

    def _scan(self) -> list[_Secret]:
        response = self.client.request("SCAN", f"{self.mount}/detailed-metadata/", stream=True)
        try:
            if response.status_code != 200:
                if response.status_code == 404 and not (response.content and _errors(response)):
                    return []  # an empty mount
                # 403: no "scan" capability at the root; a folder walk may still be allowed.
                # Anything else (HashiCorp Vault has no SCAN): the walk says what is wrong
                raise _Unsupported
            found: list[_Secret] = []
            try:
                for path, meta in _scan_entries(response.iter_content(_SCAN_CHUNK)):
                    if not path.endswith("/") and isinstance(meta, dict):
                        found.append(self._keep(_Secret(self.mount, path, meta)))
            except _BadJson:
                raise _Unsupported from None  # what was built of it is dropped with ``found``
            except requests.exceptions.RequestException as exc:
                raise SourceError(
                    f"{self.client.source}: the listing of {self.mount} from "
                    f"{self.client.address} broke off ({type(exc).__name__})",
                    hint="check the server and the network, then sync again",
                ) from None
            return found
        finally:
            response.close()

    def _list_folder(self, folder: str, detailed: bool) -> tuple[list[str], dict[str, Any]]:
        kind = "detailed-metadata" if detailed else "metadata"
        status, body = self.client.json("LIST", f"{self.mount}/{kind}/{folder}")
        if status == 200:
            data = body.get("data") or {}
            return list(data.get("keys") or []), data.get("key_info") or {}
        if status == 404 and not body.get("errors"):
            return [], {}
        if detailed and _is_unsupported(status, body):
            raise _Unsupported
        if status == 403:
            raise _Denied(f"permission denied listing {self.mount}/{folder or ''}")
        if status == 404:
            raise _Denied(f"{self.mount}: not found ({_short(body.get('errors') or [])})")
        raise _Denied(f"listing {self.mount}/{folder} failed: HTTP {status}")

    def _walk(self, detailed: bool) -> list[_Secret]:
        found: list[_Secret] = []
        errors: list[ItemError] = []
        # probe the root synchronously: it decides whether this method is supported at all
        try:
            keys, info = self._list_folder("", detailed)
        except _Denied as exc:
            self.errors.append(ItemError(where=f"{self.mount}/", message=str(exc)))
            return []
        pending: dict[Future, str] = {}
        leaves: list[str] = []

        def handle(folder: str, keys: list[str], info: dict[str, Any]) -> None:
            for key in keys:
                full = folder + key
                if key.endswith("/"):
                    fut = self.pool.submit(self._list_folder, full, detailed)
                    pending[fut] = full
                elif detailed and isinstance(info.get(key), dict):
                    found.append(self._keep(_Secret(self.mount, full, info[key])))
                else:
                    leaves.append(full)

        handle("", keys, info)
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                folder = pending.pop(fut)
                try:
                    keys, info = fut.result()
                except _Denied as exc:
                    errors.append(ItemError(where=f"{self.mount}/{folder}", message=str(exc)))
                    continue
                except _Unsupported:
                    continue  # cannot happen after a supported root; be safe
                handle(folder, keys, info)
        if leaves:
            found.extend(self._read_metadata(leaves, errors))
        self.errors.extend(errors)
        return found

    def _read_metadata(self, paths: list[str], errors: list[ItemError]) -> list[_Secret]:
        def one(path: str) -> tuple[str, int, dict[str, Any]]:
            status, body = self.client.json("GET", f"{self.mount}/metadata/{path}")
            return path, status, body

        out = []
        for path, status, body in self.pool.map(one, paths):
            if status == 200:
                out.append(self._keep(_Secret(self.mount, path, body.get("data") or {})))
            elif status == 404:
                continue  # deleted between the list and the read
            else:
                errors.append(
                    ItemError(
                        where=f"{self.mount}/{path}",
                        message=f"reading metadata: HTTP {status} "
                        f"({_short(body.get('errors') or [])})",
                    )
                )
        return out


class V1Lister(_Lister):
    """Lists a KV v1 mount: LIST per folder, in parallel. KV v1 keeps no metadata, so the
    secrets have no times and no versions; only their paths (and values, to fingerprint)."""

    METHOD = "kv-v1"

    def _list(self, folder: str) -> list[str]:
        status, body = self.client.json("LIST", f"{self.mount}/{folder}")
        if status == 200:
            return list((body.get("data") or {}).get("keys") or [])
        if status == 404 and not body.get("errors"):
            return []
        why = "permission denied" if status == 403 else f"HTTP {status}"
        raise _Denied(f"{why} listing {self.mount}/{folder}")

    def list(self, *, use_scan: bool = True) -> list[_Secret]:
        found: list[_Secret] = []
        pending: dict[Future, str] = {self.pool.submit(self._list, ""): ""}
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                folder = pending.pop(fut)
                try:
                    keys = fut.result()
                except _Denied as exc:
                    self.errors.append(ItemError(where=f"{self.mount}/{folder}", message=str(exc)))
                    continue
                for key in keys:
                    if key.endswith("/"):
                        pending[self.pool.submit(self._list, folder + key)] = folder + key
                    else:
                        found.append(
                            self._keep(_Secret(self.mount, folder + key, {}, kv_version=1))
                        )
        return found


# ---------------------------------------------------------------------------------------
# the collector

# While a listing's credentials are built, the collector's youngest generation is collected
# every 50,000 new objects instead of every 700: each credential leaves 4-5 live containers,
# and the default collections took 40% of the build's time (100,000 keys: 1.5-1.7 s against
# 0.93 s). Nothing there makes reference cycles. The setting is the process's, so it is
# raised by the first collect to start and put back, as it was, by the last to finish.
_GC_YOUNG = 50_000
_gc_lock = threading.Lock()
_gc_holders = 0
_gc_saved: tuple[int, int, int] = (700, 10, 10)


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    global _gc_holders, _gc_saved
    with _gc_lock:
        if _gc_holders == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(max(_gc_saved[0], _GC_YOUNG), *_gc_saved[1:])
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0:
                gc.set_threshold(*_gc_saved)



# the Vault identity types of the inventory, each resolved to the policies its tokens carry
VAULT_IDENTITY_TYPES = ("vault-approle", "vault-token-role", "vault-entity")
# a grant's capability when keyshift cannot tell what the server would allow
UNKNOWN_CAPABILITY = "unknown"


class _PolicyCache:
    """Each policy read and parsed once per sync."""

    def __init__(self, source: VaultSource, client: VaultClient, result: CollectResult) -> None:
        self._source, self._client, self._result = source, client, result
        self._seen: dict[str, list[Rule] | None] = {}

    def rules(self, names: list[str]) -> tuple[list[Rule], list[str]]:
        """The rules of ``names`` and the names keyshift could not read."""
        rules: list[Rule] = []
        unreadable: list[str] = []
        for name in names:
            if name == "root":
                continue  # root grants everything; Acl is told so
            if name not in self._seen:
                self._seen[name] = self._source._read_policy(self._client, name, self._result)
            found = self._seen[name]
            if found is None:
                unreadable.append(name)
            else:
                rules.extend(found)
        return rules, unreadable


def _grant_for(
    acl: Acl, agent: str, head: list[str], cred_id: str, secret: _Secret
) -> Grant | None:
    data = acl.capabilities(secret.data_path)
    if data.unknown:
        return Grant(
            agent=agent,
            credential_id=cred_id,
            capabilities=[UNKNOWN_CAPABILITY],
            chain=[*head, f"rule:unknown ({data.unknown})"],
        )
    if data.root:
        return Grant(agent=agent, credential_id=cred_id, capabilities=["root"],
                     chain=[*head, "policy:root"])
    if not data.capabilities or data.rule is None:
        return None
    chain = [*head, f"policy:{','.join(data.rule.policies)}", f"rule:{data.rule.path}"]
    if secret.kv_version == 1:
        return Grant(agent=agent, credential_id=cred_id, capabilities=list(data.capabilities),
                     chain=chain)
    meta = acl.capabilities(f"{secret.mount}/metadata/{secret.path}")
    meta_caps = [UNKNOWN_CAPABILITY] if meta.unknown else list(meta.capabilities)
    return Grant(
        agent=agent,
        credential_id=cred_id,
        capabilities=[*data.capabilities, *(f"metadata:{c}" for c in meta_caps)],
        chain=chain,
    )


class VaultSource:
    type = "vault"

    def __init__(self, cfg: VaultSourceConfig, loaded: LoadedInventory) -> None:
        self.name = cfg.name
        self.type = cfg.type
        self._cfg = cfg
        self._loaded = loaded
        self.listing_methods: dict[str, str] = {}  # mount -> method used in the last collect
        # where the audit log was read up to (sync fills it from the store; empty: from start)
        self.start_positions: dict[str, ReadPosition] = {}
        # entity id -> (entity name, agents naming it), found while resolving identities:
        # the audit log names a token's entity by id
        self._entities: dict[str, tuple[str, list[str]]] = {}
        self._environment = sys.intern(str(cfg.environment)) if cfg.environment else None
        self._declared: dict[str | None, datetime | None] = {}  # custom "created" -> its time
        # a version's deletion_time before this is a deletion, after it a scheduled one
        self._now = datetime.now(UTC)
        self._devices: dict[str, Any] | None = None  # sys/audit's answer, once per collect

    # -- connection --------------------------------------------------------------------

    def _connect(self) -> VaultClient:
        from console.connections import vault_connection

        try:
            conn = vault_connection(self._cfg)
        except SourceError:
            raise
        except KeyshiftError as exc:
            raise SourceError(f"{self.name}: {exc.message}", hint=exc.hint) from None
        address = conn.address
        client = VaultClient(self.name, address, conn.token, conn.namespace)
        status, body = client.json("GET", "auth/token/lookup-self")
        if status in (401, 403):
            client.close()
            raise SourceError(
                f"{self.name}: {address} refused keyshift's token (HTTP {status})",
                hint="the token expired or was revoked; store a new one with keyshift secret set",
            )
        if status == 503 and "sealed" in " ".join(body.get("errors") or []).lower():
            client.close()
            raise SourceError(
                f"{self.name}: {address} is sealed; nothing can be read until it is unsealed",
                hint="unseal it (bao operator unseal); what keyshift knew is kept, marked stale",
            )
        if status >= 500 or status == 0:
            client.close()
            raise SourceError(
                f"{self.name}: {address} answered HTTP {status} "
                f"({_short(body.get('errors') or [])})",
                hint="is the server sealed? check `bao status`",
            )
        return client

    # -- collect -----------------------------------------------------------------------

    def collect(self, progress: Progress | None = None) -> CollectResult:
        return self._collect(progress)

    def list_secrets(self, *, use_scan: bool = True) -> list[_Secret]:
        """Only the listing (metadata of every KV secret), for the bench."""
        client = self._connect()
        try:
            with ThreadPoolExecutor(_POOL_SIZE) as pool:
                out: list[_Secret] = []
                for mount, version in self._mounts(client):
                    lister = _lister(client, mount, version, pool)
                    out.extend(lister.list(use_scan=use_scan))
                    self.listing_methods[lister.mount] = lister.method
                return out
        finally:
            client.close()

    def _collect(self, progress: Progress | None) -> CollectResult:
        result = CollectResult()
        self._entities = {}
        self._declared = {}
        self._now = datetime.now(UTC)
        self._devices = None
        client = self._connect()
        try:
            with ThreadPoolExecutor(_POOL_SIZE) as pool, ThreadPoolExecutor(1) as side:
                # tokens, secret-ids and leases do not depend on the KV listing: their lists
                # and lookups run beside it, on the same pool, into a result of their own
                aside = CollectResult()
                # the log is read before anything is listed: a token or secret whose request
                # is in the lines read existed when it was listed, so none of that use can
                # belong to one made after its list was taken (it would be lost)
                batch = self._read_log(result)
                auth = side.submit(self._auth_and_leases, client, pool, aside)
                found: list[_Secret] = []
                creds: dict[str, Credential] = {}
                with _fewer_collections():
                    for mount, version in self._mounts(client):
                        lister = _lister(client, mount, version, pool, self._credential)
                        found.extend(lister.list())
                        self.listing_methods[lister.mount] = lister.method
                        result.errors.extend(lister.errors)
                    found.sort(key=lambda s: (s.mount, s.path))
                    for secret in found:
                        creds[self._cred_id(secret)] = secret.cred or self._credential(secret)
                        secret.cred, secret.meta = None, {}
                if self._cfg.fingerprint:
                    self._fingerprint(client, pool, found, creds, result, progress)
                elif progress:
                    for cid in creds:
                        progress(cid)
                self._grants(client, found, result)
                if batch is not None:
                    self._usage(client, batch, found, creds, result)
                result.credentials = list(creds.values())
                auth.result()
                if batch is not None and batch.tokens:
                    self._token_usage(client, pool, batch, aside, result)
                result.credentials.extend(aside.credentials)
                result.grants.extend(aside.grants)
                result.errors.extend(aside.errors)
        finally:
            client.close()
        if result.errors:
            result.complete = False
        return result

    def _auth_and_leases(
        self, client: VaultClient, pool: ThreadPoolExecutor, result: CollectResult
    ) -> None:
        if self._cfg.auth:
            self._auth(client, pool, result)
        if self._cfg.leases:
            from console.sources.vault_leases import LeaseLister

            environment = str(self._cfg.environment) if self._cfg.environment else None
            LeaseLister(self.name, client, pool, environment).collect(result)

    def _auth(self, client: VaultClient, pool: ThreadPoolExecutor, result: CollectResult) -> None:
        """Tokens and AppRole secret-ids (console/sources/vault_auth.py)."""
        from console.sources.vault_auth import AuthLister, Holders

        holders: Holders = {}
        by_name = {a.name: a for a in self._loaded.inventory.agents}
        for agent, ident in self._agent_roles(("vault-approle",)):
            found = by_name[agent]
            holders.setdefault(ident.role, []).append(
                (agent, found.owner, str(found.environment))
            )
        environment = str(self._cfg.environment) if self._cfg.environment else None
        AuthLister(
            self.name, client, pool, self._cfg.approle_mount, holders, environment,
            token_role_holders=self._token_role_holders(),
        ).collect(result)

    def _token_role_holders(self) -> dict[str, list[tuple[str, str | None, str | None]]]:
        """Token role -> who holds the tokens it makes: agents with that token-role identity,
        and the agents of a declared rotation whose issuer mints tokens from it (with the
        rotation's owner and environment, which say more about that token than the agent)."""
        by_name = {a.name: a for a in self._loaded.inventory.agents}
        out: dict[str, list[tuple[str, str | None, str | None]]] = {}

        def add(role: str, agent: str, owner: str | None, env: str | None) -> None:
            held = out.setdefault(role, [])
            if all(h[0] != agent for h in held):
                held.append((agent, owner, env))

        for agent, ident in self._agent_roles(("vault-token-role",)):
            found = by_name[agent]
            add(ident.role, agent, found.owner, str(found.environment))
        for rot in self._loaded.inventory.rotations:
            issuer = rot.issuer
            role = getattr(issuer, "role", None) if issuer.type == "vault-token" else None
            if not role or getattr(issuer, "source", None) != self.name:
                continue  # not a token role's tokens (one without a role renews its old one)
            for agent in rot.agents:
                found = by_name.get(agent)
                owner = rot.owner or (found.owner if found else None)
                env = rot.environment or (found.environment if found else None)
                add(role, agent, owner, str(env) if env else None)
        return out

    def _mounts(self, client: VaultClient) -> list[tuple[str, int]]:
        """The KV mounts to list, with their KV version: the source's own list, else every KV
        mount the token can see (``sys/internal/ui/mounts`` answers any token, for the mounts
        it may use)."""
        if self._cfg.kv_mounts is not None:
            return [(m.strip("/"), self._kv_version(client, m)) for m in self._cfg.kv_mounts]
        status, body = client.json("GET", "sys/internal/ui/mounts")
        if status != 200:
            raise SourceError(
                f"{self.name}: cannot list the mounts ({_short(body.get('errors') or [])}, "
                f"HTTP {status})",
                hint="name them in the source: kv_mounts: [secret]",
            )
        mounts = ((body.get("data") or {}).get("secret")) or {}
        return [
            (path.strip("/"), 2 if _version_of(info) == "2" else 1)
            for path, info in sorted(mounts.items())
            if (info or {}).get("type") in ("kv", "generic")
        ]

    def _kv_version(self, client: VaultClient, mount: str) -> int:
        """A named mount's KV version; v2 unless the server says otherwise (a token that may
        not ask is listed as v2, which a v1 mount answers with a clear listing error)."""
        status, body = client.json("GET", f"sys/internal/ui/mounts/{mount.strip('/')}")
        if status != 200:
            return 2
        info = body.get("data") or {}
        if info.get("type") not in ("kv", "generic"):
            return 2
        return 2 if _version_of(info) == "2" else 1

    def _cred_id(self, secret: _Secret) -> str:
        kind = KIND if secret.kv_version == 2 else KIND_V1
        return credential_id(self.name, kind, f"{secret.mount}/{secret.path}")

    def _credential(self, secret: _Secret) -> Credential:
        meta = secret.meta
        # the same few owners, environments and sensitivities recur across 100,000 keys: one
        # string each, not one a credential
        custom = {
            sys.intern(str(k)): sys.intern(str(v))
            for k, v in (meta.get("custom_metadata") or {}).items()
        }
        current = int(meta.get("current_version") or 0)
        version = (meta.get("versions") or {}).get(str(current)) or {}
        # KV v2 sets a version's deletion_time when it is deleted, and also when it is written
        # under a delete_version_after (the secret's, or the mount's when that is shorter: the
        # mount's is a maximum the secret's metadata does not show): a time still to come is
        # the version's expiry, one gone by is its deletion
        deletion = parse_vault_time(version.get("deletion_time"))
        destroyed = bool(version.get("destroyed"))
        deleted = destroyed or (deletion is not None and deletion <= self._now)
        scheduled = deletion if deletion is not None and not deleted else None
        sensitivity = custom.get("sensitivity") or None
        policy = (
            self._loaded.inventory.policies.by_sensitivity.get(sensitivity)  # type: ignore[call-overload]
            if sensitivity
            else None
        )
        tags = {k: v for k, v in custom.items() if k not in _KNOWN_META}
        if deleted:
            tags["deleted"] = "destroyed" if version.get("destroyed") else "soft-deleted"
        ttl = _duration_seconds(meta.get("delete_version_after"))
        written = parse_vault_time(version.get("created_time"))
        rotated = written or parse_vault_time(meta.get("updated_time"))
        expires = rotated + timedelta(seconds=ttl) if rotated and ttl else None
        if scheduled is not None:
            expires = scheduled
            if written is not None:
                ttl = int((scheduled - written).total_seconds())
        declared = custom.get("created")
        if declared not in self._declared:
            # a few declared dates recur across many keys: one datetime each
            self._declared[declared] = parse_vault_time(declared)
        declared_created = self._declared[declared]
        if current <= 1 and declared_created and (rotated is None or declared_created < rotated):
            # Never rotated here, and its owner says the value is older than this first version
            # (a secret migrated in): its age runs from that date, not from the import.
            rotated = declared_created
        if secret.kv_version == 1:
            # KV v1 records no times, versions or metadata: those stay unknown
            current, ttl, rotated, declared_created, expires = 1, None, None, None, None
            tags = {"kv": "1"}
        native_id = f"{secret.mount}/{secret.path}"
        fields = dict(
            id=self._cred_id(secret),
            source=self.name,
            kind=KIND if secret.kv_version == 2 else KIND_V1,
            native_id=native_id,
            name=secret.path,
            location=native_id,
            owner=custom.get("owner") or None,
            environment=custom.get("environment") or self._environment,
            scope=custom.get("scope") or None,
            sensitivity=sensitivity,
            created_at=declared_created or parse_vault_time(meta.get("created_time")),
            rotated_at=rotated,
            expires_at=expires,
            ttl_seconds=ttl,
            rotator=custom.get("rotator") or None,
            max_age_days=policy.max_age_days if policy else None,
            version=str(current) if current and secret.kv_version == 2 else None,
            tags=tags,
            status=CredentialStatus.inactive if deleted or not current else CredentialStatus.active,
        )
        # only the fields that have a value: pydantic records which fields were given, and
        # past 18 of them that record takes 2 KB more a credential (100,000 of them: 200 MB)
        return Credential(**{k: v for k, v in fields.items() if v is not None})

    # -- fingerprints --------------------------------------------------------------------

    def _fingerprint(
        self,
        client: VaultClient,
        pool: ThreadPoolExecutor,
        found: list[_Secret],
        creds: dict[str, Credential],
        result: CollectResult,
        progress: Progress | None,
    ) -> None:
        readable = [s for s in found if creds[self._cred_id(s)].status == "active"]

        def read(secret: _Secret) -> tuple[_Secret, int, Any]:
            status, body = client.json("GET", secret.data_path)
            data = body.get("data") if status == 200 else None
            if secret.kv_version == 2 and isinstance(data, dict):
                data = data.get("data")
            return secret, status, data if status == 200 else body.get("errors")

        for secret, status, payload in pool.map(read, readable):
            cid = self._cred_id(secret)
            if status == 200 and isinstance(payload, dict):
                value = canonical_value(payload)
                update: dict[str, Any] = {"fingerprint": fingerprint_of(value)}
                if len(payload) > 1:
                    # each key's own fingerprint too, so one key reused elsewhere (a password
                    # also kept in SSM) still shows; an HMAC reveals nothing of the value
                    tags = dict(creds[cid].tags)
                    for key, v in sorted(payload.items()):
                        if isinstance(v, str) and v:
                            tags[f"fingerprint:{key}"] = fingerprint_of(v)
                    update["tags"] = tags
                creds[cid] = creds[cid].model_copy(update=update)
            elif status == 404:
                pass  # deleted since listing
            else:
                reason = "permission denied" if status == 403 else f"HTTP {status}"
                result.errors.append(
                    ItemError(
                        where=f"{secret.mount}/{secret.path}",
                        message=f"cannot read the value to fingerprint it ({reason})",
                    )
                )
            if progress:
                progress(cid)

    # -- grants --------------------------------------------------------------------------

    def _agent_roles(
        self, types: tuple[str, ...] = ("vault-approle",)
    ) -> Iterator[tuple[str, VaultIdentity]]:
        for agent in self._loaded.inventory.agents:
            for ident in agent.identities:
                if (
                    isinstance(ident, VaultIdentity)
                    and ident.source == self.name
                    and ident.type in types
                ):
                    yield agent.name, ident

    def _grants(self, client: VaultClient, found: list[_Secret], result: CollectResult) -> None:
        """Each agent's Vault identity -> its policies -> the rule that decides each secret's
        data path, decided as the server decides (vault_policy.Acl). A path a templated rule
        may cover, or an identity with a policy keyshift cannot read, becomes a grant whose
        capabilities are ``unknown``: reported, never dropped and never guessed."""
        policies = _PolicyCache(self, client, result)
        for agent, ident in self._agent_roles(VAULT_IDENTITY_TYPES):
            resolved = self._identity_policies(client, agent, ident, result)
            if resolved is None:
                continue
            link, names = resolved
            rules, unreadable = policies.rules(names)
            head = [f"agent:{agent}", f"{link}:{ident.role}"]
            if unreadable:
                for secret in found:
                    result.grants.append(
                        Grant(
                            agent=agent,
                            credential_id=self._cred_id(secret),
                            capabilities=[UNKNOWN_CAPABILITY],
                            chain=[*head, f"policy:{','.join(unreadable)} (unreadable)"],
                        )
                    )
                continue
            acl = Acl(rules, root="root" in names)
            for secret in found:
                grant = _grant_for(acl, agent, head, self._cred_id(secret), secret)
                if grant is not None:
                    result.grants.append(grant)

    def _identity_policies(
        self, client: VaultClient, agent: str, ident: VaultIdentity, result: CollectResult
    ) -> tuple[str, list[str]] | None:
        """The chain link and the policy names an identity's tokens carry, or None (said in
        ``result.errors``)."""
        mount = self._cfg.approle_mount.strip("/")
        if ident.type == "vault-approle":
            path, what, link = f"auth/{mount}/role/{ident.role}", "AppRole role", "approle"
        elif ident.type == "vault-token-role":
            path, what, link = f"auth/token/roles/{ident.role}", "token role", "token-role"
        else:
            path, what, link = f"identity/entity/name/{ident.role}", "entity", "entity"
        status, body = client.json("GET", path)
        if status != 200:
            why = "not found" if status in (404, 400) else f"HTTP {status}"
            if status == 403:
                why = "permission denied"
            result.errors.append(
                ItemError(where=f"agent {agent}", message=f"{what} {ident.role!r} at {path}: {why}")
            )
            return None
        data = body.get("data") or {}
        if ident.type == "vault-entity":
            if data.get("id"):
                self._entities.setdefault(str(data["id"]), (ident.role, []))[1].append(agent)
            return link, self._entity_policies(client, agent, data, result)
        names = list(
            data.get("token_policies") or data.get("policies") or data.get("allowed_policies") or []
        )
        if not data.get("token_no_default_policy") and "default" not in names:
            names.append("default")
        return link, names

    def _entity_policies(
        self, client: VaultClient, agent: str, entity: dict[str, Any], result: CollectResult
    ) -> list[str]:
        """An entity's own policies and those of every group it is in (direct or inherited).
        The policies its login method adds to each token are not known from the entity, so
        the reach found this way is what the identity alone grants."""
        names = list(entity.get("policies") or [])
        groups = [*(entity.get("direct_group_ids") or []), *(entity.get("group_ids") or []),
                  *(entity.get("inherited_group_ids") or [])]
        for group_id in dict.fromkeys(groups):
            status, body = client.json("GET", f"identity/group/id/{group_id}")
            if status != 200:
                result.errors.append(
                    ItemError(
                        where=f"agent {agent}",
                        message=f"group {group_id} of entity {entity.get('name')!r}: "
                        f"HTTP {status}; its policies are not counted",
                    )
                )
                continue
            names += (body.get("data") or {}).get("policies") or []
        return list(dict.fromkeys(names))

    def _read_policy(
        self, client: VaultClient, name: str, result: CollectResult
    ) -> list[Rule] | None:
        """A policy's rules; None when it cannot be read or parsed (said in ``result``)."""
        status, body = client.json("GET", f"sys/policies/acl/{name}")
        text = (body.get("data") or {}).get("policy") if status == 200 else None
        if text is None:
            status, body = client.json("GET", f"sys/policy/{name}")
            text = (body.get("data") or body).get("rules") if status == 200 else None
        if text is None:
            if status == 404:
                return []  # a role may name a policy that does not exist: it grants nothing
            result.errors.append(
                ItemError(
                    where=f"policy {name}",
                    message=f"cannot read policy (HTTP {status}); grants through it are unknown",
                )
            )
            return None
        try:
            return parse_policy(name, text)
        except PolicyError as exc:
            result.errors.append(
                ItemError(where=f"policy {name}", message=f"{exc}; grants through it are unknown")
            )
            return None

    # -- usage ---------------------------------------------------------------------------

    def _audit_path(self) -> Path | None:
        configured = self._cfg.audit_log
        if configured:
            path = Path(configured).expanduser()
            return path if path.is_absolute() else Path(self._loaded.base_dir, path)
        if self._cfg.sandbox:
            from console.sandbox import load_state

            state = load_state()
            return state.audit_log_path if state else None
        return None

    def _audit_devices(self, client: VaultClient) -> dict[str, Any] | None:
        """The enabled audit devices (path -> type, options), or None when ``sys/audit`` is
        not readable (it needs sudo)."""
        if self._devices is None:
            status, body = client.json("GET", "sys/audit")
            if status != 200:
                return None
            self._devices = body.get("data") or body
        return self._devices

    def _own_token_hmac(self, client: VaultClient) -> set[str]:
        """How the audit log names keyshift's own token, so its fingerprint reads are not
        counted as use. Asks the server to hash the token (``sys/audit-hash``)."""
        token = client.hvac.token
        if not token:
            return set()
        devices = self._audit_devices(client)
        if devices is None:
            return set()
        hashes = set()
        for device_path in devices:
            if not isinstance(devices.get(device_path), dict):
                continue
            st, hashed = client.json(
                "POST", f"sys/audit-hash/{device_path.strip('/')}", json={"input": token}
            )
            value = (hashed.get("data") or hashed).get("hash") if st == 200 else None
            if value:
                hashes.add(value)
        return hashes

    def _read_log(self, result: CollectResult) -> AuditBatch | None:
        """What the audit log holds since the last read (None: no log, or it is unreadable:
        said in ``result``)."""
        path = self._audit_path()
        if path is None:
            return None
        if not path.is_file():
            result.errors.append(
                ItemError(where="audit log", message=f"{path} not found; usage not collected")
            )
            return None
        try:
            batch = read_audit_log(path, self.start_positions.get(str(path)))
        except OSError as exc:
            result.errors.append(
                ItemError(where="audit log", message=f"cannot read {path}: {exc.strerror}")
            )
            return None
        if batch.position is not None:
            result.positions.append(batch.position)
        if batch.malformed:
            result.errors.append(
                ItemError(
                    where="audit log",
                    message=f"{batch.malformed} malformed lines skipped in {path}",
                )
            )
        if batch.gap:
            result.errors.append(ItemError(where="audit log", message=batch.gap))
        return batch

    def _usage(
        self,
        client: VaultClient,
        batch: AuditBatch,
        found: list[_Secret],
        creds: dict[str, Credential],
        result: CollectResult,
    ) -> None:
        """KV reads from the audit log become use (its tokens' use is matched once the tokens
        are listed: ``_token_usage``)."""
        reads = batch.reads
        own = self._own_token_hmac(client)
        by_api_path = {s.data_path: self._cred_id(s) for s in found}
        role_agents: dict[str, list[str]] = {}
        for agent, ident in self._agent_roles():
            role_agents.setdefault(ident.role, []).append(agent)
        last: dict[str, tuple[datetime, str]] = {}
        used: set[tuple[str, str]] = set()
        for read in reads:
            cid = by_api_path.get(read.path)
            if cid is None:
                continue
            if read.token_hmac in own or (not own and "root" in read.policies):
                continue  # keyshift's own fingerprint reads
            if read.seeded:
                continue  # the sandbox seed reading as the agent: not the agent's use
            entity = self._entities.get(read.entity_id or "")
            identity = (
                f"approle:{read.role}" if read.role
                else f"entity:{entity[0]}" if entity
                else read.display_name
            )
            result.usage.append(
                UsageEvent(
                    credential_id=cid,
                    at=read.at,
                    identity=identity,
                    remote=read.remote,
                    operation="read",
                    evidence="vault:audit",
                )
            )
            if cid not in last or read.at > last[cid][0]:
                last[cid] = (read.at, "vault:audit")
            for agent in [*role_agents.get(read.role or "", []), *(entity[1] if entity else [])]:
                used.add((agent, cid))
        for cid, (at, evidence) in last.items():
            creds[cid] = creds[cid].model_copy(
                update={"last_used_at": at, "last_used_evidence": evidence}
            )
        for i, grant in enumerate(result.grants):
            if (grant.agent, grant.credential_id) in used:
                result.grants[i] = grant.model_copy(update={"used": True})

    def _token_usage(
        self,
        client: VaultClient,
        pool: ThreadPoolExecutor,
        batch: AuditBatch,
        listed: CollectResult,
        result: CollectResult,
    ) -> None:
        """Each token row listed in this collect whose accessor made a successful request in
        the lines just read gets that request's time as its last use, a UsageEvent, and its
        holders' grants are marked used; keyshift's own token is matched (so the hashing can
        stop) but gets none of these: its requests are keyshift's. A token with no request
        stays without a use: whether that is ``never`` is the findings' call, from the log's
        coverage; so when some token's use in these lines may have gone unmatched (tokens
        not all listed, accessors not hashed), the coverage restarts after them
        (``_restart_coverage``)."""
        from console.sources.vault_auth import TOKEN_KIND

        if any(e.where == "auth/token/accessors" or e.where.startswith("token ")
               for e in listed.errors):
            self._restart_coverage(batch, result)  # an unlisted token's use is lost
        rows = {c.native_id: i for i, c in enumerate(listed.credentials) if c.kind == TOKEN_KIND}
        if not rows:
            return
        matched: dict[str, TokenUse] = {}
        hashed: dict[str, TokenUse] = {}
        for logged, use in batch.tokens.items():
            if logged.startswith(_HMAC):
                hashed[logged] = use
            elif logged in rows:
                matched[logged] = use
        if hashed:
            for accessor, use in self._match_hashed(client, pool, batch, hashed, listed, rows,
                                                    result).items():
                if accessor not in matched or use.at > matched[accessor].at:
                    matched[accessor] = use
        cids: set[str] = set()
        for accessor, use in matched.items():
            i = rows[accessor]
            cred = listed.credentials[i]
            if "keyshift" in cred.tags:
                # keyshift's own requests (this sync's among them): no agent's use, and a
                # last use that moved at every sync would make every resync a change
                continue
            listed.credentials[i] = cred.model_copy(
                update={"last_used_at": use.at, "last_used_evidence": "vault:audit"}
            )
            cids.add(cred.id)
            entity = self._entities.get(use.entity_id or "")
            result.usage.append(
                UsageEvent(
                    credential_id=cred.id,
                    at=use.at,
                    identity=(
                        f"approle:{use.role}" if use.role
                        else f"entity:{entity[0]}" if entity
                        else use.display_name
                    ),
                    remote=use.remote,
                    operation=use.operation,
                    evidence="vault:audit",
                )
            )
        for i, grant in enumerate(listed.grants):
            if grant.credential_id in cids:
                listed.grants[i] = grant.model_copy(update={"used": True})

    def _hash_caches(
        self,
        client: VaultClient,
        pool: ThreadPoolExecutor,
        devices: list[str],
        candidates: list[tuple[bool, float, str]],
        rows: dict[str, int],
    ) -> dict[str, tuple[tuple[str, str], dict[str, str], int]]:
        """Each device's remembered hashes (``_HASHES``) for the tokens still listed, with its
        key and generation. One remembered, still listed accessor (keyshift's own first) is
        hashed afresh: an answer that differs (the device enabled again, under a new salt) or
        none drops what was remembered, and a new generation keeps a sync that asked before
        the drop from putting back hashes of the old salt."""
        base = f"{client.address}|{client.namespace or ''}"
        witness: dict[str, str | None] = {}
        with _HASHES_LOCK:
            for device in devices:
                known = _HASHES.get((base, device), {})
                witness[device] = next(
                    (a for _own, _created, a in candidates if a in known), None
                )

        def fresh(device: str) -> tuple[str, str | None]:
            accessor = witness[device]
            if accessor is None:
                return device, None
            status, body = client.json("POST", f"sys/audit-hash/{device}",
                                       json={"input": accessor})
            value = (body.get("data") or body).get("hash") if status == 200 else None
            return device, value if isinstance(value, str) else None

        answers = dict(pool.map(fresh, devices))
        out: dict[str, tuple[tuple[str, str], dict[str, str], int]] = {}
        with _HASHES_LOCK:
            for device in devices:
                key = (base, device)
                known = _HASHES.setdefault(key, {})
                accessor = witness[device]
                if known and (accessor is None or known.get(accessor) != answers[device]):
                    known.clear()  # nothing still listed to check it by, or a new salt
                    _HASH_GENERATION[key] = _HASH_GENERATION.get(key, 0) + 1
                for gone in [a for a in known if a not in rows]:
                    del known[gone]  # the token is gone: nobody asks for it again
                out[device] = (key, known, _HASH_GENERATION.get(key, 0))
        return out

    def _hash_devices(self, client: VaultClient, result: CollectResult) -> list[str]:
        """The audit devices whose HMAC names the accessors in the file keyshift reads: the
        file devices writing to that path, else (the server's path is not ours to compare)
        every file device."""
        devices = self._audit_devices(client)
        if devices is None:
            result.errors.append(
                ItemError(
                    where="audit log",
                    message="sys/audit not readable (it needs sudo): the log's HMAC'd token "
                    "accessors cannot be matched, so tokens' use is not known",
                )
            )
            return []
        ours = self._audit_path()
        files: list[str] = []
        same: list[str] = []
        for device_path, device in devices.items():
            if not isinstance(device, dict) or device.get("type") != "file":
                continue
            files.append(device_path.strip("/"))
            written = str((device.get("options") or {}).get("file_path") or "")
            if ours is not None and written and _same_file(Path(written), ours):
                same.append(device_path.strip("/"))
        return same or files

    def _restart_coverage(self, batch: AuditBatch, result: CollectResult) -> None:
        """The log's lines just read may hold a listed token's use keyshift could not match:
        its evidence (of no use) restarts after them, as after a gap in the log."""
        if batch.position is None or not batch.tokens:
            return
        after = max(use.at for use in batch.tokens.values())
        since = batch.position.covers_since
        if since is not None and since >= after:
            return
        moved = batch.position.model_copy(update={"covers_since": after})
        result.positions = [moved if p is batch.position else p for p in result.positions]
        batch.position = moved

    def _match_hashed(
        self,
        client: VaultClient,
        pool: ThreadPoolExecutor,
        batch: AuditBatch,
        hashed: dict[str, TokenUse],
        listed: CollectResult,
        rows: dict[str, int],
        result: CollectResult,
    ) -> dict[str, TokenUse]:
        """Listed accessor -> its use, for the HMAC'd accessors of the log: the server hashes
        listed accessors (``sys/audit-hash``) in rounds on the pool, keyshift's own and the
        youngest first, until every logged one is found or the list is done. A token made
        after the last unmatched request cannot have made it and is not hashed."""
        devices = self._hash_devices(client, result)
        if not devices:
            self._restart_coverage(batch, result)
            return {}
        latest = max(use.at for use in hashed.values())
        candidates: list[tuple[bool, float, str]] = []
        for accessor, i in rows.items():
            cred = listed.credentials[i]
            if cred.created_at is not None and cred.created_at > latest:
                continue
            own = "keyshift" in cred.tags
            created = cred.created_at.timestamp() if cred.created_at else float("inf")
            candidates.append((not own, -created, accessor))
        candidates.sort()
        remaining = dict(hashed)
        found: dict[str, TokenUse] = {}
        failed: dict[int, int] = {}

        def one(item: tuple[str, str]) -> tuple[str, str, int, str | None]:
            device, accessor = item
            status, body = client.json(
                "POST", f"sys/audit-hash/{device}", json={"input": accessor}
            )
            value = (body.get("data") or body).get("hash") if status == 200 else None
            return device, accessor, status, value if isinstance(value, str) else None

        def take(accessor: str, value: str) -> None:
            if value in remaining:
                use = remaining.pop(value)
                if accessor not in found or use.at > found[accessor].at:
                    found[accessor] = use

        caches = self._hash_caches(client, pool, devices, candidates, rows)
        work: list[tuple[str, str]] = []
        for _own, _created, accessor in candidates:
            for device in devices:
                known = caches[device][1].get(accessor)
                if known is None:
                    work.append((device, accessor))
                else:
                    take(accessor, known)
        for start in range(0, len(work), _HASH_ROUND):
            if not remaining:
                break
            for device, accessor, status, value in pool.map(one,
                                                            work[start:start + _HASH_ROUND]):
                if value is None:
                    failed[status] = failed.get(status, 0) + 1
                    continue
                key, remembered, generation = caches[device]
                with _HASHES_LOCK:
                    if _HASH_GENERATION.get(key, 0) == generation:  # not dropped meanwhile
                        remembered[accessor] = value
                take(accessor, value)
        if failed:
            codes = ", ".join(f"HTTP {code}: {n}" for code, n in sorted(failed.items()))
            result.errors.append(
                ItemError(
                    where="audit log",
                    message=f"sys/audit-hash refused some token accessors ({codes}); "
                    "those tokens' use is not known",
                )
            )
            self._restart_coverage(batch, result)
        return found
