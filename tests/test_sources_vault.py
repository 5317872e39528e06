"""The Vault / OpenBao collector against the real sandbox OpenBao (no mocks).

The session sandbox is seeded once (tests/conftest.py); tests here only add to it: their own
KV mounts, policies, roles and tokens, named with a random suffix.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BUILTIN_INVENTORY

from console import secret_refs
from console.callers import agents_by_caller, caller_agents
from console.config import LoadedInventory, loads_inventory
from console.errors import SourceError
from console.fingerprint import fingerprint
from console.sources.vault import VaultSource, canonical_value
from console.sources.vault_audit import parse_vault_time
from console.sources.vault_policy import Acl, matches, parse_policy
from rotators.values import generate

VAULT = "sandbox-vault"


def loaded_from(inv: dict[str, Any], base_dir: Path) -> LoadedInventory:
    return loads_inventory(yaml.safe_dump(inv), file="inventory.yaml", base_dir=base_dir)


def base_inventory() -> dict[str, Any]:
    inv = copy.deepcopy(BUILTIN_INVENTORY)
    inv["policies"] = {"by_sensitivity": {"high": {"max_age_days": 90}}}
    return inv


def only_sources(*sources: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "sources": list(sources),
        "policies": {"by_sensitivity": {"high": {"max_age_days": 90}}},
    }


def vault_cfg(loaded: LoadedInventory, name: str = VAULT) -> Any:
    return loaded.source(name)


def hvac_listing(client: Any, mount: str, folder: str = "") -> list[str]:
    """The baseline: hvac's classic recursive LIST, for comparison."""
    out = []
    keys = client.secrets.kv.v2.list_secrets(path=folder, mount_point=mount)["data"]["keys"]
    for key in keys:
        if key.endswith("/"):
            out += hvac_listing(client, mount, folder + key)
        else:
            out.append(folder + key)
    return out


@pytest.fixture
def mount(vault: Any) -> str:
    """A private KV v2 mount with a small tree of secrets."""
    name = f"kst-{uuid.uuid4().hex[:8]}"
    vault.sys.enable_secrets_engine("kv", path=name, options={"version": "2"})
    for path in ["top", "a/one", "a/two", "a/b/deep", "c/d/e/f/leaf", "multi"]:
        data = {"value": generate(24).reveal()}
        if path == "multi":
            data = {"username": "svc-user", "password": generate(24).reveal()}
        vault.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=name)
        vault.secrets.kv.v2.update_metadata(
            path=path,
            mount_point=name,
            custom_metadata={
                "owner": "team-x",
                "environment": "dev",
                "created": "2024-03-01",
                "generator_length": "24",
            },
        )
    return name


def test_collect_finds_the_seeded_secrets(seeded_sandbox: Any, vault: Any, tmp_path: Path) -> None:
    loaded = loaded_from(base_inventory(), tmp_path)
    source = VaultSource(vault_cfg(loaded), loaded)
    result = source.collect()

    assert result.complete, result.errors
    assert source.listing_methods == {"secret": "scan"}
    by_id = {c.id: c for c in result.credentials}
    # exactly what the server holds (the baseline's classic listing), nothing more or less
    expected = {f"{VAULT}:kv:secret/{p}" for p in hvac_listing(vault, "secret")}
    assert {i for i in by_id if ":kv:" in i} == expected
    openai = by_id[f"{VAULT}:kv:secret/agents/support/openai"]
    assert openai.kind == "kv"
    assert openai.name == "agents/support/openai"
    assert openai.location == "secret/agents/support/openai"
    assert (openai.owner, openai.environment) == ("team-support", "prod")
    assert (openai.scope, openai.sensitivity) == ("chat completions", "high")
    assert openai.max_age_days == 90
    today = datetime.now(UTC).date()
    # the seed back-dates "created" by age_days; the collector prefers it over created_time
    assert openai.created_at is not None
    assert (today - openai.created_at.date()).days in (200, 201)
    # never rotated in Vault (version 1): its age runs from the declared creation, not the import
    assert openai.rotated_at == openai.created_at
    assert openai.version == "1"
    assert openai.status == "active"
    db = by_id[f"{VAULT}:kv:secret/agents/support/db"]
    assert db.owner == "team-support" and db.sensitivity == "medium"
    assert db.max_age_days is None  # the inventory has no policy for "medium"
    assert db.created_at is not None and db.created_at.date() >= today - timedelta(days=1)
    # reuse: agents/ci/deploy was seeded with agents/support/openai's value
    deploy = by_id[f"{VAULT}:kv:secret/agents/ci/deploy"]
    assert openai.fingerprint and openai.fingerprint == deploy.fingerprint
    assert deploy.environment == "dev" and openai.environment == "prod"
    assert db.fingerprint and db.fingerprint != openai.fingerprint
    # a multi-key secret also carries each key's fingerprint
    assert db.tags["fingerprint:password"].startswith("hmac-sha256:")
    assert db.tags["fingerprint:password"] != db.tags["fingerprint:username"]


def test_fingerprint_is_the_hmac_of_the_value(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path
) -> None:
    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount]})
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(loaded.source("v"), loaded).collect()
    by_path = {c.native_id: c for c in result.credentials}
    top = vault.secrets.kv.v2.read_secret_version(
        path="top", mount_point=mount, raise_on_deleted_version=True
    )["data"]["data"]
    assert by_path[f"{mount}/top"].fingerprint == fingerprint(top["value"])
    multi = vault.secrets.kv.v2.read_secret_version(
        path="multi", mount_point=mount, raise_on_deleted_version=True
    )["data"]["data"]
    assert by_path[f"{mount}/multi"].fingerprint == fingerprint(canonical_value(multi))
    # unknown custom metadata (generator hints) is kept as tags
    assert by_path[f"{mount}/a/b/deep"].tags["generator_length"] == "24"
    assert by_path[f"{mount}/a/b/deep"].created_at == datetime(2024, 3, 1, tzinfo=UTC)


def test_fingerprinting_can_be_turned_off(seeded_sandbox: Any, mount: str, tmp_path: Path) -> None:
    inv = only_sources(
        {
            "name": "v",
            "type": "openbao",
            "sandbox": True,
            "kv_mounts": [mount],
            "fingerprint": False,
            "auth": False, "leases": False,  # KV only: no tokens, secret-ids or leases
        }
    )
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(loaded.source("v"), loaded).collect()
    assert len(result.credentials) == 6
    assert all(c.fingerprint is None for c in result.credentials)


def test_three_listing_methods_agree(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path
) -> None:
    """SCAN, the detailed-metadata walk and the classic Vault walk list the same metadata."""
    from concurrent.futures import ThreadPoolExecutor

    from console.connections import vault_connection
    from console.sources.vault import MountLister, VaultClient

    inv = base_inventory()
    loaded = loaded_from(inv, tmp_path)
    conn = vault_connection(loaded.source(VAULT))
    client = VaultClient("v", conn.address, conn.token, None)
    with ThreadPoolExecutor(4) as pool:
        scan = MountLister(client, mount, pool).list()
        detailed = MountLister(client, mount, pool)._walk(detailed=True)
        classic = MountLister(client, mount, pool)._walk(detailed=False)
    client.close()

    def key(found: list) -> dict[str, tuple]:
        return {
            s.path: (
                s.meta["current_version"],
                s.meta["custom_metadata"]["owner"],
                s.meta["created_time"],
            )
            for s in found
        }

    assert set(key(scan)) == set(hvac_listing(vault, mount))
    assert key(scan) == key(detailed) == key(classic)
    assert "c/d/e/f/leaf" in key(scan)


def test_scan_body_read_in_small_chunks_lists_every_key_once(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SCAN body is parsed as a stream (OpenBao's SCAN has no pages): with chunks far
    smaller than one key's metadata, every key still comes once, with the metadata the
    folder walk reads, and the collect builds the same credentials as from whole chunks."""
    from concurrent.futures import ThreadPoolExecutor

    from console.connections import vault_connection
    from console.sources import vault as vault_module
    from console.sources.vault import MountLister, VaultClient

    # a value beyond ASCII, so a chunk boundary falls inside a multi-byte character
    vault.secrets.kv.v2.update_metadata(
        path="a/two", mount_point=mount, custom_metadata={"owner": "équipe-ü-✓"}
    )
    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount],
                        "fingerprint": False, "auth": False, "leases": False})
    loaded = loaded_from(inv, tmp_path)
    whole = VaultSource(loaded.source("v"), loaded).collect()
    monkeypatch.setattr(vault_module, "_SCAN_CHUNK", 7)
    conn = vault_connection(loaded.source("v"))
    client = VaultClient("v", conn.address, conn.token, None)
    with ThreadPoolExecutor(2) as pool:
        lister = MountLister(client, mount, pool)
        scan = lister.list()
        walk = MountLister(client, mount, pool)._walk(detailed=True)
    client.close()
    assert lister.method == "scan"
    paths = [s.path for s in scan]
    assert sorted(paths) == sorted(set(paths)) == sorted(hvac_listing(vault, mount))
    assert {s.path: s.meta for s in scan} == {s.path: s.meta for s in walk}
    assert {s.path: s.meta["custom_metadata"]["owner"] for s in scan}["a/two"] == "équipe-ü-✓"

    source = VaultSource(loaded.source("v"), loaded)
    chunked = source.collect()
    assert source.listing_methods == {mount: "scan"}
    assert chunked.complete, chunked.errors
    assert [c.model_dump() for c in chunked.credentials] == [
        c.model_dump() for c in whole.credentials
    ]
    assert len(chunked.credentials) == 6


def test_collects_side_by_side_put_the_collector_s_setting_back(
    seeded_sandbox: Any, mount: str, tmp_path: Path
) -> None:
    """A collect raises the garbage collector's threshold while it builds; several at once
    (sync runs sources in parallel) leave it as it was, whichever finishes last."""
    import gc
    from concurrent.futures import ThreadPoolExecutor

    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount],
                        "fingerprint": False, "auth": False, "leases": False})
    loaded = loaded_from(inv, tmp_path)
    before = gc.get_threshold()
    gc.set_threshold(1234, 11, 12)
    try:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(
                lambda _: VaultSource(loaded.source("v"), loaded).collect(), range(6)
            ))
        assert gc.get_threshold() == (1234, 11, 12)
    finally:
        gc.set_threshold(*before)
    assert all(len(r.credentials) == 6 and r.complete for r in results)


def test_scan_entries_match_json_loads_and_a_bad_body_is_bad_json() -> None:
    """The SCAN body fed to the parser in chunks of every size (a multi-byte character cut
    across chunks too) yields exactly ``data.key_info``'s entries, numbers as ``json`` reads
    them; a body cut short, with trailing bytes, not UTF-8 or not an object is _BadJson,
    which is what sends the lister to the folder walk. The C parser is the one in use."""
    from console.sources.vault import _BadJson, _ijson, _scan_entries

    assert _ijson.backend == "yajl2_c"
    info = {
        "a/b": {"current_version": 12, "custom_metadata": {"owner": "x\"y\\z", "n": "é✓"},
                "versions": {"12": {"destroyed": False, "deletion_time": ""}}, "f": 1.5e3},
        "c/": {},
        "d": {"current_version": 0, "custom_metadata": None, "list": [1, [2, {"3": 4}]]},
    }
    doc = {"request_id": "r", "lease_duration": 1234567, "data": {"keys": ["a/b", "c/", "d"],
           "key_info": info, "zzz": [None, True]}, "warnings": None}
    for text in (json.dumps(doc), json.dumps(doc, indent=3, ensure_ascii=False)):
        raw = text.encode()
        for size in (1, 2, 3, 5, 13, 64, len(raw)):
            chunks = [raw[i:i + size] for i in range(0, len(raw), size)]
            assert list(_scan_entries(iter(chunks))) == list(info.items()), size
    whole = json.dumps(doc).encode()
    for broken in (whole[:-1], whole[: len(whole) // 2], whole + b"{}", b"", b"  \n",
                   b'{"data": [}', b'["a"]', b"<html>502 Bad Gateway</html>",
                   b'{"data": {"key_info": {"a": {"x": 1} "b": {}}}}',
                   b'{"data": {"key_info": {"a": {"x": "\xff\xfe"}}}}'):
        with pytest.raises(_BadJson):
            list(_scan_entries(iter([broken[:4], broken[4:]])))


class _ScanProxy:
    """A real HTTP proxy in front of the sandbox OpenBao that passes every request on, but
    answers SCAN as ``mode`` says: ``cut`` (a whole response whose JSON body stops halfway),
    ``html`` (200 with a page that is not JSON), ``drop`` (the real body's first half, then the
    connection closes before the length it announced); or, with ``redirect``, sends every
    request back to the server itself with a 307 (as a standby node does)."""

    def __init__(self, upstream: str, mode: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        session = requests.Session()
        session.trust_env = False

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def relay(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                if mode == "redirect":
                    self.rfile.read(size)
                    self.send_response(307)
                    self.send_header("Location", upstream + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                got = session.request(
                    self.command, upstream + self.path, data=self.rfile.read(size) or None,
                    headers={k: v for k, v in self.headers.items()
                             if k.lower() in ("x-vault-token", "content-type")},
                )
                body, length = got.content, len(got.content)
                if self.command == "SCAN" and mode == "cut":
                    body = body[: len(body) // 2]
                    length = len(body)
                elif self.command == "SCAN" and mode == "html":
                    body = b"<html><body>502 Bad Gateway</body></html>"
                    length = len(body)
                elif self.command == "SCAN" and mode == "drop":
                    body = body[: len(body) // 2]
                self.send_response(got.status_code)
                self.send_header("Content-Type", got.headers.get("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                if len(body) < length:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_LIST = do_SCAN = do_DELETE = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode", ["cut", "html"])
def test_a_scan_body_that_is_not_the_expected_json_falls_back_to_the_walk(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path, mode: str
) -> None:
    """A SCAN answered 200 with a body that is not the JSON it should be (cut short, or a
    proxy's page) is not an empty mount and not an error: the listing is the folder walk's,
    every key once, and the collect builds the same credentials as through SCAN."""
    from concurrent.futures import ThreadPoolExecutor

    from console.connections import vault_connection
    from console.sources.vault import MountLister, VaultClient

    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount],
                        "fingerprint": False, "auth": False, "leases": False})
    loaded = loaded_from(inv, tmp_path)
    conn = vault_connection(loaded.source("v"))
    proxy = _ScanProxy(conn.address, mode)
    try:
        client = VaultClient("v", proxy.address, conn.token, None)
        with ThreadPoolExecutor(2) as pool:
            lister = MountLister(client, mount, pool)
            found = lister.list()
        client.close()
    finally:
        proxy.close()
    assert lister.method == "detailed-metadata"
    paths = [s.path for s in found]
    assert sorted(paths) == sorted(set(paths)) == sorted(hvac_listing(vault, mount))
    assert all(s.meta["custom_metadata"]["owner"] == "team-x" for s in found)
    assert not lister.errors


def test_a_scan_connection_dropped_mid_body_is_a_source_error(
    seeded_sandbox: Any, mount: str, tmp_path: Path
) -> None:
    """The connection closing before the SCAN body's announced length is requests' error,
    said as one line naming the mount (not taken for a bad body, so no walk is tried)."""
    from concurrent.futures import ThreadPoolExecutor

    from console.connections import vault_connection
    from console.sources.vault import MountLister, VaultClient

    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount],
                        "fingerprint": False, "auth": False, "leases": False})
    conn = vault_connection(loaded_from(inv, tmp_path).source("v"))
    proxy = _ScanProxy(conn.address, "drop")
    try:
        client = VaultClient("v", proxy.address, conn.token, None)
        with ThreadPoolExecutor(2) as pool, pytest.raises(SourceError) as raised:
            MountLister(client, mount, pool).list()
        client.close()
    finally:
        proxy.close()
    assert f"the listing of {mount}" in raised.value.message
    assert "broke off" in raised.value.message


def test_a_refused_secret_id_lookup_is_an_item_error_and_the_rest_is_synced(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    """A token that may look up one role's secret-ids and not another's: each refused lookup
    is one ItemError naming the role and the accessor's start, the allowed role's secret-ids
    and every token are still listed, and the sync says it is partial."""
    suffix = uuid.uuid4().hex[:6]
    allowed, denied = f"open-{suffix}", f"shut-{suffix}"
    made: dict[str, list[str]] = {}
    for role in (allowed, denied):
        vault.auth.approle.create_or_update_approle(role, token_policies=["default"])
        made[role] = [vault.auth.approle.generate_secret_id(role_name=role)["data"][
            "secret_id_accessor"] for _ in range(2)]
    name = f"lookups-{suffix}"
    vault.sys.create_or_update_policy(
        name,
        'path "auth/token/accessors" { capabilities = ["list", "sudo"] }\n'
        'path "auth/token/lookup-accessor" { capabilities = ["update"] }\n'
        'path "auth/approle/role" { capabilities = ["list"] }\n'
        'path "auth/approle/role/+/secret-id" { capabilities = ["list"] }\n'
        f'path "auth/approle/role/{allowed}/secret-id-accessor/lookup" '
        '{ capabilities = ["update"] }\n',
    )
    token = vault.auth.token.create(policies=[name], ttl="10m")["auth"]
    ref = f"vault-lookups-{suffix}"
    secret_refs.put("keyshift-test", ref, token["client_token"])
    try:
        inv = only_sources({
            "name": "v", "type": "openbao", "token": f"keyring:keyshift-test/{ref}",
            "address": seeded_sandbox.state.vault.address, "kv_mounts": [], "leases": False,
        })
        loaded = loaded_from(inv, tmp_path)
        result = VaultSource(loaded.source("v"), loaded).collect()
    finally:
        secret_refs.delete("keyshift-test", ref)
    ids = {c.native_id for c in result.credentials if c.kind == "approle-secret-id"}
    assert {f"approle/{allowed}/{a}" for a in made[allowed]} <= ids
    assert not [i for i in ids if i.startswith(f"approle/{denied}/")]
    refused = {e.where for e in result.errors if e.message == "lookup permission denied"}
    # the sandbox's own roles are refused alike; these two roles are the test's
    assert {f"auth/approle/role/{denied} secret-id {a[:8]}" for a in made[denied]} <= refused
    assert not [w for w in refused if w.startswith(f"auth/approle/role/{allowed} ")]
    tokens = {c.native_id for c in result.credentials if c.kind == "vault-token"}
    assert token["accessor"] in tokens and len(tokens) > 1
    assert not result.complete


def test_the_direct_path_answers_as_requests_does(
    seeded_sandbox: Any, mount: str, tmp_path: Path
) -> None:
    """``VaultClient.json`` skips requests' per-request layers; it must answer what the
    ordinary path answers, successes and refusals alike, follow a redirect as requests does,
    and say an unreachable server the same way."""
    from console.connections import vault_connection
    from console.sources.vault import VaultClient

    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount]})
    conn = vault_connection(loaded_from(inv, tmp_path).source("v"))
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "auth/token/lookup-self", None),
        ("LIST", f"{mount}/metadata/a", None),
        ("LIST", f"{mount}/metadata/no-such-folder", None),
        ("GET", f"{mount}/metadata/a/one", None),
        ("GET", f"{mount}//metadata//a/two", None),  # Vault reads // as /
        ("POST", "auth/token/lookup-accessor", {"accessor": "not-an-accessor"}),
        ("GET", "sys/no-such-endpoint", None),
    ]
    from console.sources.vault import _Direct

    direct = VaultClient("v", conn.address, conn.token, None)
    plain = VaultClient("v", conn.address, conn.token, None)
    assert direct._direct is not None
    plain._direct = None  # the ordinary path, through requests and hvac
    # an hvac whose adapter lacks the private settings the direct path reads: the ordinary
    # path serves, nothing raises
    del plain.hvac.adapter._kwargs
    assert _Direct.of(plain.hvac.adapter) is None
    try:
        for method, path, payload in calls:
            got = direct.json(method, path, json=payload)
            want = plain.json(method, path, json=payload)
            for _status, body in (got, want):  # what differs from one call to the next
                body.pop("request_id", None)
                (body.get("data") or {}).pop("ttl", None)
            assert got == want, (method, path)
        assert {status for status, _ in (direct.json(m, p, json=b) for m, p, b in calls)} >= {
            200, 404, 400
        }
    finally:
        direct.close()
        plain.close()

    proxy = _ScanProxy(conn.address, "redirect")
    try:
        moved = VaultClient("v", proxy.address, conn.token, None)
        status, body = moved.json("GET", f"{mount}/metadata/a/one")
        moved.close()
    finally:
        proxy.close()
    assert status == 200 and body["data"]["custom_metadata"]["owner"] == "team-x"


    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    said = []
    for ordinary in (False, True):
        client = VaultClient("v", closed, conn.token, None)
        if ordinary:
            client._direct = None
        with pytest.raises(SourceError) as raised:
            client.json("GET", "sys/health")
        client.close()
        said.append((raised.value.message, raised.value.hint))
    assert said[0] == said[1]
    assert said[0][0] == f"v: cannot reach {closed} (connection refused)"


def test_deleted_current_version_is_inactive(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path
) -> None:
    vault.secrets.kv.v2.delete_latest_version_of_secret(path="a/one", mount_point=mount)
    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount]})
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(loaded.source("v"), loaded).collect()
    by_path = {c.native_id: c for c in result.credentials}
    assert by_path[f"{mount}/a/one"].status == "inactive"
    assert by_path[f"{mount}/a/one"].tags["deleted"] == "soft-deleted"
    assert by_path[f"{mount}/a/one"].fingerprint is None
    assert by_path[f"{mount}/a/two"].status == "active"
    assert result.complete


def test_a_versions_scheduled_deletion_is_its_expiry_and_the_mounts_maximum_counts(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path
) -> None:
    """KV v2 stamps a version written under a delete_version_after with its deletion_time:
    the secret's own, or the mount's when shorter (a maximum the secret's metadata does not
    show: it says "0s"). A deletion still to come is the secret's expiry, and it stays
    active; one gone by is a deletion (inactive)."""
    vault.secrets.kv.v2.configure(delete_version_after="1h", mount_point=mount)
    vault.secrets.kv.v2.create_or_update_secret(path="ttl/mount", secret={"v": "1"},
                                                mount_point=mount)
    vault.secrets.kv.v2.update_metadata(path="ttl/own", mount_point=mount,
                                        delete_version_after="30m")
    vault.secrets.kv.v2.create_or_update_secret(path="ttl/own", secret={"v": "1"},
                                                mount_point=mount)
    vault.secrets.kv.v2.update_metadata(path="ttl/longer", mount_point=mount,
                                        delete_version_after="5h")
    vault.secrets.kv.v2.create_or_update_secret(path="ttl/longer", secret={"v": "1"},
                                                mount_point=mount)
    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount]})
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(loaded.source("v"), loaded).collect()
    by_path = {c.native_id: c for c in result.credentials}
    for path, seconds in (("ttl/mount", 3600), ("ttl/own", 1800), ("ttl/longer", 3600)):
        cred = by_path[f"{mount}/{path}"]
        meta = vault.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"]
        version = meta["versions"][str(meta["current_version"])]
        assert cred.status == "active" and "deleted" not in cred.tags, path
        assert cred.ttl_seconds == seconds, path
        assert cred.expires_at == parse_vault_time(version["deletion_time"]), path
        assert cred.expires_at == cred.rotated_at + timedelta(seconds=seconds), path
    # written before the mount had a maximum: no deletion scheduled, no expiry
    assert by_path[f"{mount}/top"].expires_at is None
    assert by_path[f"{mount}/top"].status == "active"
    assert result.complete


def test_grants_follow_the_seeded_policies(seeded_sandbox: Any, tmp_path: Path) -> None:
    loaded = loaded_from(base_inventory(), tmp_path)
    result = VaultSource(vault_cfg(loaded), loaded).collect()
    grants = {
        (g.agent, g.credential_id.split(":kv:")[1]): g
        for g in result.grants
        if ":kv:" in g.credential_id
    }
    seeded = {k for k in grants if k[1].startswith("secret/agents/")}
    assert seeded == {
        ("support-bot", "secret/agents/support/openai"),
        ("support-bot", "secret/agents/support/db"),
        ("ci-runner", "secret/agents/ci/deploy"),
        ("ci-runner", "secret/agents/ci/unused"),
    }
    g = grants[("support-bot", "secret/agents/support/openai")]
    assert g.capabilities == ["read", "metadata:read", "metadata:list"]  # the server's order
    assert g.chain == [
        "agent:support-bot",
        "approle:support-bot",
        "policy:support-read",
        "rule:secret/data/agents/support/*",
    ]
    assert grants[("ci-runner", "secret/agents/ci/deploy")].capabilities == ["read"]


def agent_read(seeded_sandbox: Any, vault: Any, role: str, path: str) -> None:
    """A real agent's read: an AppRole login as ``role``, then a KV v2 read of secret/``path``
    (what the audit log records as that agent's use)."""
    import hvac

    role_id = vault.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    secret_id = vault.auth.approle.generate_secret_id(role_name=role)["data"]["secret_id"]
    agent = hvac.Client(url=seeded_sandbox.state.vault_addr, timeout=30)
    agent.auth.approle.login(role_id=role_id, secret_id=secret_id)
    agent.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )


def test_usage_from_the_audit_log(seeded_sandbox: Any, vault: Any, tmp_path: Path) -> None:
    """An agent's real login and read become its use of that secret; the sandbox seed's own
    reads as the agents (marked on their secret-ids) and keyshift's reads do not."""
    began = datetime.now(UTC)  # other tests may have read it before (same clock as the server)
    agent_read(seeded_sandbox, vault, "support-bot", "agents/support/openai")
    loaded = loaded_from(base_inventory(), tmp_path)
    for _ in range(2):  # keyshift's own fingerprint reads of the first pass must not count
        result = VaultSource(vault_cfg(loaded), loaded).collect()
    used = {
        (g.agent, g.credential_id.split(":kv:")[1])
        for g in result.grants
        if g.used and ":kv:" in g.credential_id
    }
    assert ("support-bot", "secret/agents/support/openai") in used
    # the seed read these as the agents: seen in the audit log, not counted as their use
    assert ("support-bot", "secret/agents/support/db") not in used
    assert ("ci-runner", "secret/agents/ci/deploy") not in used
    by_id = {c.id: c for c in result.credentials}
    assert by_id[f"{VAULT}:kv:secret/agents/ci/deploy"].last_used_at is None
    assert by_id[f"{VAULT}:kv:secret/agents/ci/unused"].last_used_at is None
    openai = by_id[f"{VAULT}:kv:secret/agents/support/openai"]
    assert openai.last_used_evidence == "vault:audit" and openai.last_used_at is not None
    events = [u for u in result.usage if u.credential_id == openai.id and u.at >= began]
    assert len(events) == 1 and events[0].identity == "approle:support-bot"
    assert events[0].evidence == "vault:audit" and events[0].operation == "read"
    assert events[0].remote == "127.0.0.1"
    # the caller it names is the agent that runs as that role (what `show` and the console
    # say of the last use)
    by_caller = agents_by_caller(loaded.inventory.agents)
    assert caller_agents(events[0].identity, by_caller) == ["support-bot"]


def test_over_broad_policy_and_missing_role(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    vault.sys.create_or_update_policy(
        f"greedy-{suffix}", 'path "secret/*" {\n  capabilities = ["read", "list"]\n}\n'
    )
    vault.auth.approle.create_or_update_approle(
        f"greedy-{suffix}", token_policies=[f"greedy-{suffix}"]
    )
    inv = base_inventory()
    inv["agents"] += [
        {
            "name": "greedy",
            "environment": "dev",
            "identities": [{"type": "vault-approle", "source": VAULT, "role": f"greedy-{suffix}"}],
        },
        {
            "name": "ghost",
            "environment": "dev",
            "identities": [
                {"type": "vault-approle", "source": VAULT, "role": f"no-such-role-{suffix}"}
            ],
        },
    ]
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(vault_cfg(loaded), loaded).collect()
    every = {c.id for c in result.credentials if c.kind == "kv"}
    greedy = {g.credential_id: g for g in result.grants if g.agent == "greedy"}
    assert set(greedy) == every
    assert all(
        g.chain[-1] == "rule:secret/*" and g.chain[2] == f"policy:greedy-{suffix}"
        for g in greedy.values()
    )
    assert not result.complete
    assert [e.where for e in result.errors] == ["agent ghost"]
    assert "not found" in result.errors[0].message


def test_entity_identities_templated_rules_and_unreadable_policies_are_never_dropped(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    """An entity reaches through its own and its groups' policies; a templated rule keyshift
    cannot fill makes the grant ``unknown``; a policy keyshift cannot read makes every grant
    of that identity ``unknown`` and says so."""
    suffix = uuid.uuid4().hex[:6]
    own, team, tmpl = f"ent-own-{suffix}", f"ent-team-{suffix}", f"ent-tmpl-{suffix}"
    vault.sys.create_or_update_policy(
        own, 'path "secret/data/agents/support/openai" { capabilities = ["read"] }\n'
    )
    vault.sys.create_or_update_policy(
        team, 'path "secret/data/agents/ci/*" { capabilities = ["read", "list"] }\n'
    )
    vault.sys.create_or_update_policy(
        tmpl,
        'path "secret/data/agents/{{identity.entity.name}}/*" { capabilities = ["read"] }\n',
    )
    entity = f"ent-{suffix}"
    entity_id = vault.secrets.identity.create_or_update_entity_by_name(
        name=entity, policies=[own]
    )["data"]["id"]
    vault.secrets.identity.create_or_update_group_by_name(
        name=f"grp-{suffix}", policies=[team], member_entity_ids=[entity_id]
    )
    vault.auth.approle.create_or_update_approle(f"tmpl-{suffix}", token_policies=[tmpl])
    inv = base_inventory()
    inv["agents"] += [
        {
            "name": "entity-agent",
            "environment": "dev",
            "identities": [{"type": "vault-entity", "source": VAULT, "role": entity}],
        },
        {
            "name": "templated-agent",
            "environment": "dev",
            "identities": [{"type": "vault-approle", "source": VAULT, "role": f"tmpl-{suffix}"}],
        },
    ]
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(vault_cfg(loaded), loaded).collect()

    by_agent: dict[str, dict[str, Any]] = {}
    for g in result.grants:
        if ":kv:" in g.credential_id:
            by_agent.setdefault(g.agent, {})[g.credential_id.split(":kv:")[1]] = g
    reach = by_agent["entity-agent"]
    assert set(reach) == {
        "secret/agents/support/openai", "secret/agents/ci/deploy", "secret/agents/ci/unused"
    }
    assert reach["secret/agents/support/openai"].chain[:3] == [
        "agent:entity-agent", f"entity:{entity}", f"policy:{own}"
    ]
    assert reach["secret/agents/ci/deploy"].chain[2] == f"policy:{team}"

    templated = by_agent["templated-agent"]
    agents_paths = {
        c.location for c in result.credentials if c.kind == "kv" and "/agents/" in c.location
    }
    assert set(templated) == agents_paths  # every path the template could fill in
    assert all(g.capabilities == ["unknown"] for g in templated.values())
    assert all("identity.entity.name" in g.chain[-1] for g in templated.values())

    # a policy the server accepts and keyshift cannot read (HCL1's comma after an attribute,
    # which the HCL2 parser refuses) leaves every grant of that identity unknown
    broken = f"ent-broken-{suffix}"
    vault.sys.create_or_update_policy(
        broken, 'path "secret/*" {\n  capabilities = ["read"],\n}\n'
    )
    vault.auth.approle.create_or_update_approle(f"broken-{suffix}", token_policies=[broken])
    inv["agents"].append(
        {
            "name": "broken-agent",
            "environment": "dev",
            "identities": [{"type": "vault-approle", "source": VAULT, "role": f"broken-{suffix}"}],
        }
    )
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(vault_cfg(loaded), loaded).collect()
    broken_grants = [g for g in result.grants if g.agent == "broken-agent"]
    assert len(broken_grants) == sum(c.kind == "kv" for c in result.credentials)
    assert all(g.capabilities == ["unknown"] for g in broken_grants)
    assert any(
        e.where == f"policy {broken}" and "grants through it are unknown" in e.message
        for e in result.errors
    )


def test_tokens_and_secret_ids_are_listed_by_accessor_with_ttl_and_holder(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    """What was made on the server is what the inventory shows: each secret-id (TTL, uses
    left, metadata, its role's agent) and each token (policies, TTL, expiry, role, orphan);
    never a token or secret-id value."""
    suffix = uuid.uuid4().hex[:6]
    role = f"auth-bot-{suffix}"
    vault.auth.approle.create_or_update_approle(role, token_policies=["default"], token_ttl="1h")
    made = vault.adapter.post(
        f"/v1/auth/approle/role/{role}/secret-id",
        json={"metadata": json.dumps({"team": "ops"}), "ttl": "2h", "num_uses": 5},
    )["data"]
    plain = vault.auth.approle.generate_secret_id(role_name=role)["data"]
    role_id = vault.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    login = vault.adapter.post(
        "/v1/auth/approle/login", json={"role_id": role_id, "secret_id": plain["secret_id"]}
    )["auth"]
    orphan = vault.auth.token.create(
        policies=["default"], ttl="30m", no_parent=True, num_uses=3,
        meta={"purpose": "test"},
    )["auth"]
    inv = base_inventory()
    inv["agents"].append(
        {"name": "auth-bot", "owner": "team-auth", "environment": "staging",
         "identities": [{"type": "vault-approle", "source": VAULT, "role": role}]}
    )
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(vault_cfg(loaded), loaded).collect()
    by_id = {c.id: c for c in result.credentials}

    with_ttl = by_id[f"{VAULT}:approle-secret-id:approle/{role}/{made['secret_id_accessor']}"]
    assert with_ttl.ttl_seconds == 7200 and with_ttl.expires_at is not None
    assert abs((with_ttl.expires_at - with_ttl.created_at).total_seconds() - 7200) < 5
    assert with_ttl.tags["uses_left"] == "5" and with_ttl.tags["meta.team"] == "ops"
    assert (with_ttl.owner, with_ttl.environment) == ("team-auth", "staging")
    no_ttl = by_id[f"{VAULT}:approle-secret-id:approle/{role}/{plain['secret_id_accessor']}"]
    assert no_ttl.expires_at is None and no_ttl.ttl_seconds is None  # never expires: said so

    issued = by_id[f"{VAULT}:vault-token:{login['accessor']}"]
    assert issued.tags["role"] == role and issued.ttl_seconds == 3600
    assert issued.expires_at is not None and issued.scope == "policies: default"
    own = by_id[f"{VAULT}:vault-token:{orphan['accessor']}"]
    assert own.tags["orphan"] == "True" and own.tags["uses_left"] == "3"
    assert own.ttl_seconds == 1800 and own.owner is None  # no agent is known to hold it

    holders = {(g.agent, g.credential_id) for g in result.grants if g.agent == "auth-bot"}
    assert holders == {
        ("auth-bot", with_ttl.id), ("auth-bot", no_ttl.id), ("auth-bot", issued.id)
    }
    # the values themselves are nowhere in what keyshift keeps
    kept = repr(result.credentials) + repr(result.grants) + repr(result.errors)
    for value in (made["secret_id"], plain["secret_id"], login["client_token"],
                  orphan["client_token"]):
        assert value not in kept


def test_a_token_without_sudo_cannot_list_tokens_and_the_rest_still_syncs(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    name = f"reader-{suffix}"
    vault.sys.create_or_update_policy(
        name,
        'path "secret/*" { capabilities = ["read", "list", "scan"] }\n'
        'path "sys/policies/acl/*" { capabilities = ["read"] }\n'
        'path "auth/approle/role/*" { capabilities = ["read", "list"] }\n',
    )
    token = vault.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
    ref = f"vault-reader-{suffix}"
    secret_refs.put("keyshift-test", ref, token)
    try:
        inv = only_sources(
            {
                "name": "v", "type": "openbao", "token": f"keyring:keyshift-test/{ref}",
                "address": seeded_sandbox.state.vault.address, "fingerprint": False,
            }
        )
        loaded = loaded_from(inv, tmp_path)
        result = VaultSource(loaded.source("v"), loaded).collect()
    finally:
        secret_refs.delete("keyshift-test", ref)
    assert any(c.kind == "kv" for c in result.credentials)
    assert not any(c.kind == "vault-token" for c in result.credentials)
    assert any(
        e.where == "auth/token/accessors" and "permission denied" in e.message
        for e in result.errors
    )
    assert [e.message for e in result.errors if e.where == "sys/leases/lookup"] == [
        "cannot list leases (permission denied)"
    ]
    assert not result.complete  # unseen token rows go stale, not gone


def test_every_kv_mount_is_listed_v1_too_with_its_reach_and_use(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path
) -> None:
    """No kv_mounts: every KV mount the token sees. A KV v1 mount's secrets are listed (a
    kind of their own: no versions, no times, nothing keyshift may rotate), fingerprinted,
    reached through the policy on their v1 path, and used when an agent reads them."""
    import hvac

    suffix = uuid.uuid4().hex[:8]
    old_style = f"kst-v1-{suffix}"
    vault.sys.enable_secrets_engine("kv", path=old_style, options={"version": "1"})
    values = {"top": generate(20).reveal(), "team/a/deep": generate(20).reveal()}
    try:
        for path, value in values.items():
            vault.secrets.kv.v1.create_or_update_secret(
                path=path, secret={"value": value}, mount_point=old_style
            )
        vault.sys.create_or_update_policy(
            f"v1-{suffix}", f'path "{old_style}/team/*" {{\n  capabilities = ["read"]\n}}\n'
        )
        vault.auth.approle.create_or_update_approle(f"v1-{suffix}", token_policies=[f"v1-{suffix}"])
        role_id = vault.auth.approle.read_role_id(role_name=f"v1-{suffix}")["data"]["role_id"]
        secret_id = vault.auth.approle.generate_secret_id(role_name=f"v1-{suffix}")["data"][
            "secret_id"
        ]
        agent = hvac.Client(url=seeded_sandbox.state.vault_addr, timeout=30)
        agent.auth.approle.login(role_id=role_id, secret_id=secret_id)
        agent.secrets.kv.v1.read_secret(path="team/a/deep", mount_point=old_style)
        inv = only_sources(
            {"name": "v", "type": "openbao", "sandbox": True, "auth": False, "leases": False}
        )
        inv["agents"] = [{
            "name": "old-timer", "environment": "dev",
            "identities": [{"type": "vault-approle", "source": "v", "role": f"v1-{suffix}"}],
        }]
        loaded = loaded_from(inv, tmp_path)
        result = VaultSource(loaded.source("v"), loaded).collect()
        named = loaded_from(
            only_sources({"name": "v", "type": "openbao", "sandbox": True, "auth": False,
                          "leases": False, "kv_mounts": [old_style]}),
            tmp_path,
        )
        only_v1 = VaultSource(named.source("v"), named).collect()
    finally:
        vault.sys.disable_secrets_engine(old_style)
    mounts = {c.native_id.split("/", 1)[0] for c in result.credentials}
    assert {"secret", mount, old_style} <= mounts  # no kv_mounts given: every KV mount
    v1 = {c.native_id: c for c in result.credentials if c.native_id.startswith(old_style)}
    assert set(v1) == {f"{old_style}/{p}" for p in values}
    for path, value in values.items():
        cred = v1[f"{old_style}/{path}"]
        assert cred.kind == "kv-v1" and cred.id == f"v:kv-v1:{old_style}/{path}"
        assert cred.fingerprint == fingerprint(value)
        assert cred.version is None and cred.rotated_at is None and cred.created_at is None
        assert cred.status == "active" and cred.tags.get("kv") == "1"
    assert {c.native_id for c in only_v1.credentials} == set(v1)
    deep = f"v:kv-v1:{old_style}/team/a/deep"
    grants = {(g.agent, g.credential_id): g for g in result.grants}
    assert grants[("old-timer", deep)].capabilities == ["read"]
    assert grants[("old-timer", deep)].chain[-1] == f"rule:{old_style}/team/*"
    assert ("old-timer", f"v:kv-v1:{old_style}/top") not in grants
    assert grants[("old-timer", deep)].used
    assert [u.identity for u in result.usage if u.credential_id == deep] == [
        f"approle:v1-{suffix}"
    ]
    assert not [e for e in result.errors if old_style in e.where]


def test_unreachable_server_is_a_source_error(seeded_sandbox: Any, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        inv = only_sources(
            {
                "name": "v",
                "type": "openbao",
                "address": f"http://127.0.0.1:{port}",
                "token": "keyring:keyshift-sandbox/vault-token",
            }
        )
        loaded = loaded_from(inv, tmp_path)
        with pytest.raises(SourceError) as err:
            VaultSource(loaded.source("v"), loaded).collect()
    assert err.value.one_line().startswith(f"v: cannot reach http://127.0.0.1:{port}")
    assert "\n" not in err.value.one_line()


def test_refused_token_is_a_source_error(seeded_sandbox: Any, tmp_path: Path) -> None:
    secret_refs.put("keyshift-test", "bad-vault-token", "hvs.not-a-real-token-" + uuid.uuid4().hex)
    inv = only_sources(
        {
            "name": "v",
            "type": "openbao",
            "address": seeded_sandbox.state.vault_addr,
            "token": "keyring:keyshift-test/bad-vault-token",
        }
    )
    loaded = loaded_from(inv, tmp_path)
    with pytest.raises(SourceError) as err:
        VaultSource(loaded.source("v"), loaded).collect()
    assert "refused keyshift's token" in err.value.message
    assert "not-a-real-token" not in err.value.one_line()


# --- policy matching (pure) --------------------------------------------------------------


def test_policy_parser_reads_hcl_and_json() -> None:
    hcl = """
    # comment
    path "secret/data/a/*" {
      capabilities = ["read", "list"]
    }
    path "secret/data/+/b" { capabilities = ["deny"] }
    """
    rules = parse_policy("p", hcl)
    assert [(r.path, r.capabilities) for r in rules] == [
        ("secret/data/a/*", ("read", "list")),
        ("secret/data/+/b", ("deny",)),
    ]
    js = '{"path": {"secret/data/x": {"capabilities": ["update"]}}}'
    assert [(r.path, r.capabilities) for r in parse_policy("j", js)] == [
        ("secret/data/x", ("update",))
    ]


def test_policy_matching_follows_vault_priority() -> None:
    assert matches("secret/data/*", "secret/data/a/b")
    assert matches("secret/data/+/b", "secret/data/a/b")
    assert not matches("secret/data/+/b", "secret/data/a/c/b")
    assert not matches("secret/data/a", "secret/data/a/b")
    assert matches("secret/+/a*", "secret/data/abc")
    acl = Acl(
        parse_policy("wide", 'path "secret/*" { capabilities = ["read"] }')
        + parse_policy("deny", 'path "secret/data/private/*" { capabilities = ["deny"] }')
        + parse_policy("exact", 'path "secret/data/private/ok" { capabilities = ["read"] }')
        + parse_policy("wide2", 'path "secret/*" { capabilities = ["update"] }')
    )
    assert acl.governing("secret/data/public/x").effective == ["read", "update"]
    assert acl.governing("secret/data/public/x").policies == ["wide", "wide2"]
    assert acl.governing("secret/data/private/x").effective == []  # longer glob wins, denies
    assert acl.governing("secret/data/private/ok").effective == ["read"]  # exact beats glob
    assert acl.governing("other/x") is None
    # a later first wildcard is more specific than an earlier one
    acl2 = Acl(
        parse_policy("a", 'path "secret/+/x/*" { capabilities = ["list"] }')
        + parse_policy("b", 'path "secret/data/*" { capabilities = ["read"] }')
    )
    assert acl2.governing("secret/data/x/y").effective == ["read"]


def test_leases_an_engine_issued_are_listed_with_ttl_and_expiry(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    """Two PKI certificates issued with leases become two rows with their TTL and expiry, a
    holder said to be unknown, and no fingerprint (the value is not readable again); token
    leases are not listed twice; a revoked lease is gone at the next sync."""
    pki = f"kst-pki-{uuid.uuid4().hex[:8]}"
    vault.sys.enable_secrets_engine("pki", path=pki, config={"max_lease_ttl": "24h"})
    try:
        vault.write(f"{pki}/root/generate/internal", common_name="kst.test", ttl="24h")
        vault.write(f"{pki}/roles/agents", allowed_domains="kst.test", allow_subdomains=True,
                    generate_lease=True, max_ttl="24h")
        issued = {
            ttl: vault.write(f"{pki}/issue/agents", common_name=f"a{ttl}.kst.test", ttl=f"{ttl}s")
            for ttl in (3600, 7200)
        }
        inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [],
                            "fingerprint": False, "auth": False})
        loaded = loaded_from(inv, tmp_path)
        first = VaultSource(loaded.source("v"), loaded).collect()
        vault.sys.revoke_lease(issued[7200]["lease_id"])
        second = VaultSource(loaded.source("v"), loaded).collect()
    finally:
        vault.sys.disable_secrets_engine(pki)
    leases = {c.native_id: c for c in first.credentials if c.native_id.startswith(pki)}
    assert set(leases) == {issued[t]["lease_id"] for t in issued}
    for ttl, response in issued.items():
        lease = leases[response["lease_id"]]
        assert lease.kind == "vault-lease" and lease.id == f"v:vault-lease:{lease.native_id}"
        assert lease.location == f"{pki}/issue/agents"
        assert lease.ttl_seconds is not None and ttl - 120 < lease.ttl_seconds <= ttl
        assert lease.created_at is not None and lease.expires_at is not None
        assert abs((lease.expires_at - lease.created_at).total_seconds() - ttl) < 5
        assert lease.tags["holder"] == "unknown" and lease.fingerprint is None
    assert not [c for c in first.credentials if c.kind == "vault-lease"
                and c.native_id.startswith("auth/")]
    assert not first.errors
    assert {c.native_id for c in second.credentials if c.native_id.startswith(pki)} == {
        issued[3600]["lease_id"]
    }


def test_a_read_by_an_entity_s_token_is_that_entity_agent_s_use(
    seeded_sandbox: Any, vault: Any, mount: str, tmp_path: Path
) -> None:
    """An agent known by its entity: its AppRole login is an alias of the entity, so the
    audit log names the entity's id, and the read is the agent's use of that grant."""
    import hvac

    suffix = uuid.uuid4().hex[:6]
    policy, role, entity = f"ent-use-{suffix}", f"ent-login-{suffix}", f"ent-user-{suffix}"
    vault.sys.create_or_update_policy(
        policy, f'path "{mount}/data/a/*" {{ capabilities = ["read"] }}\n'
    )
    entity_id = vault.secrets.identity.create_or_update_entity_by_name(
        name=entity, policies=[policy]
    )["data"]["id"]
    vault.auth.approle.create_or_update_approle(role, token_policies=[])
    role_id = vault.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    accessor = vault.sys.list_auth_methods()["approle/"]["accessor"]
    vault.secrets.identity.create_or_update_entity_alias(
        name=role_id, canonical_id=entity_id, mount_accessor=accessor
    )
    secret_id = vault.auth.approle.generate_secret_id(role_name=role)["data"]["secret_id"]
    agent = hvac.Client(url=seeded_sandbox.state.vault_addr, timeout=30)
    agent.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert agent.lookup_token()["data"]["entity_id"] == entity_id
    agent.secrets.kv.v2.read_secret_version(
        path="a/one", mount_point=mount, raise_on_deleted_version=True
    )
    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount],
                        "auth": False, "leases": False})
    inv["agents"] = [{
        "name": "entity-user", "environment": "dev",
        "identities": [{"type": "vault-entity", "source": "v", "role": entity}],
    }]
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(loaded.source("v"), loaded).collect()
    cid = f"v:kv:{mount}/a/one"
    (grant,) = [g for g in result.grants if g.agent == "entity-user" and g.credential_id == cid]
    assert grant.used and grant.chain[:3] == ["agent:entity-user", f"entity:{entity}",
                                              f"policy:{policy}"]
    assert [u.identity for u in result.usage if u.credential_id == cid] == [f"approle:{role}"]
    # its other grant, not read, is not used
    (other,) = [g for g in result.grants if g.credential_id == f"v:kv:{mount}/a/two"]
    assert other.agent == "entity-user" and not other.used


def test_a_token_role_s_tokens_are_held_by_the_agents_of_that_role(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    """Tokens made by auth/token/create/<role> belong to the agents with that token-role
    identity: owner and environment from the agent, a `use` grant with the role in its
    chain. A token of a role nobody holds has no holder."""
    suffix = uuid.uuid4().hex[:6]
    held, loose = f"runner-{suffix}", f"loose-{suffix}"
    for role in (held, loose):
        vault.write(f"auth/token/roles/{role}", allowed_policies=["default"], orphan=True)
    tokens = {role: vault.write(f"auth/token/create/{role}", ttl="1h")["auth"]["accessor"]
              for role in (held, loose)}
    inv = only_sources({"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [],
                        "fingerprint": False, "leases": False})
    inv["agents"] = [{
        "name": "runner", "owner": "team-run", "environment": "staging",
        "identities": [{"type": "vault-token-role", "source": "v", "role": held}],
    }]
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(loaded.source("v"), loaded).collect()
    rows = {c.native_id: c for c in result.credentials if c.kind == "vault-token"}
    mine, other = rows[tokens[held]], rows[tokens[loose]]
    assert (mine.owner, mine.environment) == ("team-run", "staging")
    assert other.owner is None
    (grant,) = [g for g in result.grants if g.credential_id == mine.id]
    assert grant.agent == "runner" and grant.capabilities == ["use"]
    assert f"token-role:{held}" in grant.chain
    assert not [g for g in result.grants if g.credential_id == other.id]
