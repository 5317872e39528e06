"""Bench: keyshift's Vault sync against a competent hvac script and the raw-HTTP floor.

A fresh OpenBao holds ``--secrets`` KV v2 secrets (folders of ``--folder-size``) with custom
metadata, ``--tokens`` tokens and ``--secret-ids`` AppRole secret-ids over ``--roles`` roles.
The sides answer the same question (every secret's path and owner, every token accessor and
secret-id accessor with its TTL, every lease but the tokens'), each with ``--workers`` threads:

- keyshift: ``VaultSource.collect()``, the source's sync as a user runs it (sign-in, the KV
  listing, tokens and secret-ids through ``vault_auth``, leases), fingerprints off: reading
  every value is not part of the question (a default sync also reads each value to
  fingerprint it, one GET per secret);
- baseline: what a competent user writes with hvac: LIST each folder and read each key's
  metadata, ``list_accessors`` and ``lookup_accessor`` per token, ``list_roles``,
  ``list_secret_id_accessors`` per role and ``read_secret_id_accessor`` per secret-id,
  ``list_leases``, all on a ThreadPoolExecutor, one hvac Client per thread;
- floor: only the HTTP requests keyshift's fast path needs, on a requests.Session as wide as
  keyshift's connection pool: ``lookup-self``, the mount's version, one ``SCAN`` of
  ``detailed-metadata``, ``LIST`` the token accessors, the roles and their secret-ids, a
  lookup for each, the leases' top level. Only the lists are parsed; every body is read whole.
  The floor runs the SCAN on a thread of its own beside the rest, as nothing waits for it;
  the same requests in keyshift's order (KV first, then auth) are timed too, and shown, and
  so are the same requests on a bare urllib3 pool (keyshift's own calls skip requests'
  per-request layers, so a floor on requests.Session is not quite a floor for them).

Each side gets one untimed warm-up and then ``--rounds`` timed rounds, interleaved; the figure is
each side's best round. The sides' answers must equal each other and what was seeded (the
server's own root token is listed by both), or the bench exits non-zero.

Peak RSS is measured in child processes (each reads its own ``VmHWM``): keyshift's collect and
the hvac script, each once, at ``--rss-secrets`` (default: the bench's own size; the
target is for 100,000, which seeds the extra secrets first and takes a few minutes more).

    .venv/bin/python bench/sync_vault.py [--secrets 20000] [--folder-size 100]
        [--tokens 1000] [--secret-ids 1000] [--roles 10] [--rounds 3] [--workers 8]
        [--rss-secrets 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hvac.exceptions
import requests
import requests.adapters
import urllib3
from _bench import timed_rounds
from _openbao import (
    MOUNT,
    Raw,
    hvac_clients,
    hvac_kv,
    keyshift_loaded,
    kv_paths,
    running_bao,
    seed_kv,
    seeded_kv,
)
from _openbao import disagreement as kv_disagreement

TARGET_RATIO, TARGET_FLOOR, TARGET_RSS_MB, TARGET_RSS_AT = 10.0, 1.5, 300, 100_000


@dataclass
class Answer:
    """What a side found: {path: owner}, {token accessor: TTL}, {"<role>/<secret-id
    accessor>": TTL}, and lease ids (the bench seeds none but token leases, which both sides
    skip: the tokens are listed by accessor)."""

    kv: dict[str, str | None] = field(default_factory=dict)
    tokens: dict[str, int | None] = field(default_factory=dict)
    secret_ids: dict[str, int | None] = field(default_factory=dict)
    leases: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.kv) + len(self.tokens) + len(self.secret_ids) + len(self.leases)


@dataclass
class Seeded:
    kv: list[str]
    tokens: set[str]
    secret_ids: set[str]  # "<role>/<accessor>"


# -- seeding --------------------------------------------------------------------------------


def seed_auth(raw: Raw, tokens: int, secret_ids: int, roles: int) -> tuple[set[str], set[str]]:
    """AppRole roles and their secret-ids (some with a TTL, uses or metadata), and tokens (some
    orphans, various TTLs, some with limited uses). Keeps only accessors, never a value."""
    raw.call("POST", "sys/auth/approle", {"type": "approle"})
    names = [f"agent-{r:02d}" for r in range(roles)]
    for name in names:
        raw.call("POST", f"auth/approle/role/{name}", {"token_policies": ["default"]})

    def secret_id(i: int) -> str:
        role = names[i % roles]
        body: dict[str, Any] = {"metadata": json.dumps({"seq": str(i)})}
        if i % 3:
            body["ttl"] = f"{24 * (1 + i % 30)}h"
        if i % 5 == 0:
            body["num_uses"] = 10
        made = raw.call("POST", f"auth/approle/role/{role}/secret-id", body)
        return f"{role}/{made['data']['secret_id_accessor']}"

    def token(i: int) -> str:
        body: dict[str, Any] = {
            "policies": ["default"],
            "ttl": f"{1 + i % 720}h",
            "display_name": f"agent-{i % roles:02d}",
            "meta": {"seq": str(i)},
        }
        if i % 7 == 0:
            body["num_uses"] = 100
        path = "auth/token/create-orphan" if i % 4 == 0 else "auth/token/create"
        return raw.call("POST", path, body)["auth"]["accessor"]

    with ThreadPoolExecutor(16) as pool:
        made_ids = set(pool.map(secret_id, range(secret_ids)))
        made_tokens = set(pool.map(token, range(tokens)))
    return made_tokens, made_ids


# -- the sides ------------------------------------------------------------------------------


def keyshift_side(address: str):  # type: ignore[no-untyped-def]
    """keyshift's collect as a function returning its Answer."""
    from console.sources.vault import VaultSource
    from console.sources.vault_auth import SECRET_ID_KIND, TOKEN_KIND
    from console.sources.vault_leases import LEASE_KIND

    loaded = keyshift_loaded(address, auth=True)
    source = VaultSource(loaded.source("bench"), loaded)
    prefix = f"{loaded.source('bench').approle_mount.strip('/')}/"

    def collect() -> Answer:
        result = source.collect()
        if not result.complete:
            sys.exit(f"bench: keyshift's sync was partial: {result.errors[:3]}")
        if source.listing_methods.get(MOUNT) != "scan":
            sys.exit(f"bench: keyshift listed with {source.listing_methods}, not SCAN")
        out = Answer()
        for c in result.credentials:
            if c.kind == "kv":
                out.kv[c.name] = c.owner
            elif c.kind == TOKEN_KIND:
                out.tokens[c.native_id] = c.ttl_seconds
            elif c.kind == SECRET_ID_KIND:
                out.secret_ids[c.native_id.removeprefix(prefix)] = c.ttl_seconds
            elif c.kind == LEASE_KIND:
                out.leases.add(c.native_id)
            else:
                sys.exit(f"bench: keyshift listed a {c.kind} the bench did not seed")
        return out

    return collect


def positive(value: Any) -> int | None:
    return int(value) if value and int(value) > 0 else None


def baseline(address: str, token: str, workers: int) -> Answer:
    """The competent hvac script (see the module's docstring)."""
    client = hvac_clients(address, token)

    def lookup_token(accessor: str) -> tuple[str, dict]:
        return accessor, client().auth.token.lookup_accessor(accessor)["data"]

    def list_ids(role: str) -> list[tuple[str, str]]:
        keys = client().auth.approle.list_secret_id_accessors(role)["data"]["keys"]
        return [(role, a) for a in keys]

    def lookup_id(item: tuple[str, str]) -> tuple[str, dict]:
        role, accessor = item
        found = client().auth.approle.read_secret_id_accessor(role, accessor)
        return f"{role}/{accessor}", found["data"]

    def list_leases(prefix: str) -> list[str]:
        try:
            return [prefix + k for k in client().sys.list_leases(prefix)["data"]["keys"]]
        except hvac.exceptions.InvalidPath:
            return []  # no leases (left) under it

    out = Answer()
    with ThreadPoolExecutor(workers) as pool:
        out.kv = hvac_kv(pool, client)
        accessors = client().auth.token.list_accessors()["data"]["keys"]
        for accessor, data in pool.map(lookup_token, accessors):
            out.tokens[accessor] = positive(data.get("creation_ttl")) or positive(data.get("ttl"))
        roles = client().auth.approle.list_roles()["data"]["keys"]
        ids = [item for items in pool.map(list_ids, roles) for item in items]
        for accessor, data in pool.map(lookup_id, ids):
            out.secret_ids[accessor] = positive(data.get("secret_id_ttl"))
        # leases, one level at a time; token leases (auth/) are the tokens already listed
        prefixes = [p for p in list_leases("") if p != "auth/"]
        while prefixes:
            deeper: list[str] = []
            for keys in pool.map(list_leases, prefixes):
                for key in keys:
                    if key.endswith("/"):
                        deeper.append(key)
                    else:
                        out.leases.add(key)
            prefixes = deeper
    return out


def floor(address: str, token: str, workers: int, *, overlap: bool, bare: bool = False) -> int:
    """The raw requests of keyshift's fast path on a requests.Session as wide as keyshift's
    connection pool, each body read whole, only the lists parsed: sign-in (``lookup-self``),
    the mount's version, one SCAN, the token accessors, the roles and their secret-ids, a
    lookup for each, and the leases' top level. With ``overlap`` the SCAN runs on a thread of
    its own alongside the rest (nothing else waits for it): the least those requests take;
    without, in keyshift's order (KV, then auth). With ``bare``, the same requests on a
    urllib3 pool of that width instead (no requests layers: what keyshift's own lookups go
    through since it skips them). Returns how many credentials were named."""
    from console.connections import POOL_SIZE

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE))
    session.headers["X-Vault-Token"] = token
    base = f"{address}/v1/"
    manager = urllib3.PoolManager(maxsize=POOL_SIZE, headers={"X-Vault-Token": token})

    def call(method: str, path: str, body: dict | None = None) -> Any:
        if bare:
            got = manager.request(method, base + path, json=body)
            status, response = got.status, SimpleNamespace(
                status_code=got.status, content=got.data, json=lambda: json.loads(got.data)
            )
        else:
            response = session.request(method, base + path, json=body)
            status = response.status_code
        if status != 200 and not (method == "LIST" and status == 404):
            sys.exit(f"bench: floor {method} {path}: HTTP {status}")
        return response

    def keys(path: str) -> list[str]:
        response = call("LIST", path)
        return response.json()["data"]["keys"] if response.status_code == 200 else []

    def lookup(item: tuple[str, dict]) -> int:
        return len(call("POST", *item).content)

    def scan() -> int:
        return call("SCAN", f"{MOUNT}/detailed-metadata/").content.count(b'"custom_metadata":')

    try:
        with ThreadPoolExecutor(workers) as pool, ThreadPoolExecutor(1) as side:
            call("GET", "auth/token/lookup-self")
            call("GET", f"sys/internal/ui/mounts/{MOUNT}")
            kv = side.submit(scan) if overlap else None
            found = 0 if kv else scan()
            accessors = pool.submit(keys, "auth/token/accessors")
            roles = pool.submit(keys, "auth/approle/role")
            leases = pool.submit(keys, "sys/leases/lookup/")
            lookups = [("auth/token/lookup-accessor", {"accessor": a}) for a in accessors.result()]
            names = roles.result()
            for role, ids in zip(
                names, pool.map(lambda r: keys(f"auth/approle/role/{r}/secret-id"), names),
                strict=True,
            ):
                lookups += [
                    (f"auth/approle/role/{role}/secret-id-accessor/lookup",
                     {"secret_id_accessor": a})
                    for a in ids
                ]
            list(pool.map(lookup, lookups))
            if set(leases.result()) - {"auth/"}:
                sys.exit("bench: the server holds leases the floor does not walk")
            found += kv.result() if kv else 0
    finally:
        session.close()
        manager.clear()
    return found + len(lookups)


def check(answers: dict[str, Any], seeded: Seeded) -> str | None:
    """keyshift and the script found what was seeded, alike; the floors named as many."""
    problem = disagreement({k: answers[k] for k in ("keyshift", "baseline")}, seeded)
    if problem:
        return problem
    n = answers["keyshift"].count
    for name in ("floor", "floor-ordered", "floor-bare"):
        if answers[name] != n:
            return f"the {name}'s requests named {answers[name]} credentials, not {n}"
    return None


def disagreement(answers: dict[str, Answer], seeded: Seeded) -> str | None:
    """Why the sides differ from each other or from what was seeded."""
    problem = kv_disagreement({name: a.kv for name, a in answers.items()}, seeded.kv)
    if problem:
        return problem
    for name, found in answers.items():
        if set(found.secret_ids) != seeded.secret_ids:
            got, want = set(found.secret_ids), seeded.secret_ids
            return (
                f"{name} found {len(got)} secret-ids, not the {len(want)} seeded "
                f"(missing {sorted(want - got)[:3]}, unexpected {sorted(got - want)[:3]})"
            )
        extra = set(found.tokens) - seeded.tokens
        if not seeded.tokens <= set(found.tokens) or len(extra) != 1:  # +1: the root token
            return f"{name} found {len(found.tokens)} tokens, not the {len(seeded.tokens)} seeded"
        if found.leases:
            return f"{name} found leases the bench did not make: {sorted(found.leases)[:3]}"
    first_name, first = next(iter(answers.items()))
    for name, other in answers.items():
        for what, a, b in (
            ("token TTLs", first.tokens, other.tokens),
            ("secret-id TTLs", first.secret_ids, other.secret_ids),
        ):
            if a != b:
                differ = sorted(k for k in a if a[k] != b.get(k))[:3]
                return f"{first_name} and {name} read different {what}, e.g. for {differ}"
    return None


# -- peak RSS in a child ----------------------------------------------------------------------


def child_main(side: str, address: str, workers: int) -> None:
    """Run one side once in this (child) process; print how many credentials it found and its
    peak RSS (``VmHWM``: this process's own, since its exec; ``ru_maxrss`` would count the
    bench process's size at the fork)."""
    token = os.environ["BAO_TOKEN"]
    answer = keyshift_side(address)() if side == "keyshift" else baseline(address, token, workers)
    status = Path("/proc/self/status").read_text()
    peak_kb = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmHWM:"))
    print(answer.count, peak_kb)


def peak_rss(side: str, address: str, workers: int) -> tuple[float, int, float]:
    """(peak RSS in MB, credentials found, seconds) of one run of ``side`` in a child."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", side, "--address", address,
         "--workers", str(workers)],
        stdout=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"bench: the {side} child failed (exit {done.returncode})")
    found, peak_kb = (int(x) for x in done.stdout.split()[-2:])
    return peak_kb / 1024, found, time.perf_counter() - t0


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=20_000)
    parser.add_argument("--folder-size", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=1_000)
    parser.add_argument("--secret-ids", type=int, default=1_000)
    parser.add_argument("--roles", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, each side (best)")
    parser.add_argument("--workers", type=int, default=8, help="every side's thread pool")
    parser.add_argument("--rss-secrets", type=int, default=0,
                        help="measure peak RSS with this many secrets (default: --secrets)")
    parser.add_argument("--child", choices=["keyshift", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.address, args.workers)
        return
    if min(args.rounds, args.workers, args.secrets, args.roles) < 1:
        parser.error("--rounds, --workers, --secrets and --roles must be at least 1")
    rss_at = max(args.rss_secrets, args.secrets)

    with running_bao() as (address, token):
        kv = seeded_kv(address, token, args.secrets, args.folder_size)
        t0 = time.perf_counter()
        tokens, ids = seed_auth(Raw(address, token), args.tokens, args.secret_ids, args.roles)
        print(f"seeded {len(tokens)} tokens and {len(ids)} secret-ids over {args.roles} roles "
              f"in {time.perf_counter() - t0:.1f} s")
        seeded = Seeded(kv, tokens, ids)
        sides: dict[str, Callable[[], Any]] = {
            "keyshift": keyshift_side(address),
            "floor": lambda: floor(address, token, args.workers, overlap=True),
            "floor-ordered": lambda: floor(address, token, args.workers, overlap=False),
            "floor-bare": lambda: floor(address, token, args.workers, overlap=True, bare=True),
            "baseline": lambda: baseline(address, token, args.workers),
        }
        answers, times = timed_rounds(sides, args.rounds, lambda a: check(a, seeded))
        if rss_at > args.secrets:
            t0 = time.perf_counter()
            seed_kv(address, token, kv_paths(args.secrets, rss_at, args.folder_size))
            print(f"seeded {rss_at - args.secrets} more secrets for the RSS runs in "
                  f"{time.perf_counter() - t0:.1f} s")
        n = answers["keyshift"].count
        rss = {side: peak_rss(side, address, args.workers) for side in ("keyshift", "baseline")}
        for side, (_, found, _) in rss.items():
            if found != n + rss_at - args.secrets:
                sys.exit(f"bench: the {side} child found {found} credentials, not "
                         f"{n + rss_at - args.secrets}")
    report(args, answers["keyshift"], times, rss, rss_at)


def report(
    args: argparse.Namespace,
    found: Answer,
    times: dict[str, list[float]],
    rss: dict[str, tuple[float, int, float]],
    rss_at: int,
) -> None:
    n = found.count
    best = {name: min(values) for name, values in times.items()}
    rate = {name: n / t for name, t in best.items()}
    auth = n - len(found.kv)
    print(
        f"{args.rounds} timed rounds each after 1 warm-up, {args.workers} threads each, best "
        f"round shown. keyshift and the hvac script found the same {len(found.kv)} secrets "
        f"(paths, owners), {len(found.tokens)} token accessors (the seeded and the root token) "
        f"and {len(found.secret_ids)} secret-id accessors (TTLs), no other leases; the floors' "
        f"lists named as many"
    )
    for name, label in (
        ("keyshift", "keyshift collect (SCAN, tokens, secret-ids, leases; no fingerprints)"),
        ("floor", "floor: the raw requests alone, the SCAN alongside the auth requests"),
        ("floor-ordered", "  the same requests in keyshift's order (KV, then auth)"),
        ("floor-bare", "  the same requests on a bare urllib3 pool, the SCAN alongside"),
        ("baseline", "baseline: hvac LIST + metadata read per key, auth lookups"),
    ):
        rounds = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{label}: {n:,} ({len(found.kv):,} secrets + {auth:,} auth) in "
              f"{best[name]:.3f} s = {rate[name]:,.0f}/s  [rounds {rounds} s]")
    ratio = rate["keyshift"] / rate["baseline"]
    of_floor = best["keyshift"] / best["floor"]
    ks_mb, base_mb = rss["keyshift"][0], rss["baseline"][0]
    print(f"keyshift vs the hvac script: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x: "
          f"{'met' if ratio >= TARGET_RATIO else 'MISSED'})")
    ordered = best["keyshift"] / best["floor-ordered"]
    bare = best["keyshift"] / best["floor-bare"]
    print(f"keyshift vs the floor: {of_floor:.2f}x its time, {ordered:.2f}x in keyshift's "
          f"order, {bare:.2f}x the bare urllib3 one (target <= {TARGET_FLOOR}x: "
          f"{'met' if of_floor <= TARGET_FLOOR else 'MISSED'})")
    print(f"peak RSS, {rss_at:,} secrets + {auth:,} auth, each side once in a child process: "
          f"keyshift collect {ks_mb:.0f} MB ({rss['keyshift'][2]:.1f} s), hvac script "
          f"{base_mb:.0f} MB ({rss['baseline'][2]:.1f} s)")
    if rss_at >= TARGET_RSS_AT:
        verdict = "met" if ks_mb < TARGET_RSS_MB else "MISSED"
        print(f"  (target < {TARGET_RSS_MB} MB at {TARGET_RSS_AT:,}: {verdict})")
    else:
        print(f"  (the target, < {TARGET_RSS_MB} MB, is for {TARGET_RSS_AT:,} secrets: "
              f"--rss-secrets {TARGET_RSS_AT} measures it, a few minutes more)")
    print(f"RESULT sync-vault keyshift={rate['keyshift']:.0f} baseline={rate['baseline']:.0f} "
          f"ratio={ratio:.1f} unit=credentials/s")
    print(f"RESULT sync-vault-floor keyshift={rate['keyshift']:.0f} baseline={rate['floor']:.0f} "
          f"ratio={rate['keyshift'] / rate['floor']:.2f} unit=credentials/s")
    print(f"RESULT sync-vault-rss-{rss_at} keyshift={ks_mb:.0f} baseline={base_mb:.0f} "
          f"ratio={base_mb / ks_mb:.2f} unit=MB")


if __name__ == "__main__":
    main()
