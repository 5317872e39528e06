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
the dev root token, goes to /dev/null) and stops it at the end (bench/_openbao.py, shared with
sync_vault.py).

    .venv/bin/python bench/vault_list.py [--secrets 5000] [--folder-size 100] [--rounds 3]
        [--workers 8]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from _bench import timed_rounds
from _openbao import (
    disagreement,
    hvac_clients,
    hvac_kv,
    keyshift_loaded,
    running_bao,
    seeded_kv,
)


def baseline(address: str, token: str, workers: int) -> dict[str, str | None]:
    """hvac with a thread pool: LIST each folder and read each key's metadata concurrently,
    one hvac Client per worker thread. Returns {path: owner from custom_metadata}."""
    with ThreadPoolExecutor(workers) as pool:
        return hvac_kv(pool, hvac_clients(address, token))


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

    with running_bao() as (address, token):
        seeded = seeded_kv(address, token, args.secrets, args.folder_size)
        loaded = keyshift_loaded(address, auth=False)
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
        _, times = timed_rounds(sides, args.rounds, lambda a: disagreement(a, seeded))
        method = "/".join(sorted(str(m) for m in methods))
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
