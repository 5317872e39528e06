"""Bench: scan a 10,000-file tree (about 200 MB) for secrets in plain text.

keyshift: ``console.workspace_scan.scan()`` (the function behind ``keyshift scan``): the walk,
detect-secrets' default plugins and filters behind keyshift's per-plugin prefilter, a process
pool as wide as the CPUs, and the known-credential fingerprinting (20 known values planted).
baseline: detect-secrets' own CLI as a competent user runs it over a directory that is not a
git checkout: ``detect-secrets scan --all-files --no-verify`` (``--no-verify``: keyshift never
sends a find to a provider, and checking finds over the network is not the work measured; the
CLI already spreads files over a process pool of every CPU).

The tree is generated deterministically (``--seed``) into a temp dir: code, JSON, YAML,
Markdown, logs, CSV, shell and env files, with AWS key ids, GitHub, Stripe, Slack and JWT
tokens, private key headers, basic-auth URLs, passwords and high-entropy strings planted in
about one file in twenty, public and private IPs and git hashes where logs have them, and the
known values in env files and log lines.

Both sides get the same untimed warm-up (one pass over one workspace, a fiftieth of the tree)
and then the same number of timed passes over the whole tree (``--rounds``, default 1,
interleaved); the figure is each side's best pass. (A whole-tree warm-up would double the
baseline's several minutes; the tree was just written, so it is in the page cache.)

The bench checks that both report the same set of (file, line, type) for detect-secrets'
types, and that keyshift names every planted known value's credential at its file and line;
it exits non-zero when not.

    .venv/bin/python bench/scan.py [--files 10000] [--mb 200] [--rounds 1] [--seed 7]
        [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

B62 = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
_WORDS_TEXT = (
    "agent request token queue worker vault rotate policy config handler event record stream "
    "retry backoff timeout session client server cache index table schema migrate deploy "
    "build release tenant account region bucket object message channel webhook payload "
    "invoice ledger payout refund customer order status result error warning info debug "
    "metric latency window budget limit owner team review branch commit merge pipeline"
)
WORDS = _WORDS_TEXT.split()


def _r(rnd: random.Random, alphabet: str, n: int) -> str:
    return "".join(rnd.choices(alphabet, k=n))


def _ident(rnd: random.Random) -> str:
    return "_".join(rnd.choices(WORDS, k=rnd.randint(1, 3)))


def _sentence(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choices(WORDS, k=n))


def _ip(rnd: random.Random) -> str:
    if rnd.random() < 0.7:
        return f"10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
    a, b, c, d = rnd.randint(11, 99), rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254)
    return f"{a}.{b}.{c}.{d}"


def _py(rnd: random.Random) -> str:
    k = rnd.random()
    if k < 0.22:
        return f"    {_ident(rnd)} = {_ident(rnd)}({_ident(rnd)}, {rnd.randint(0, 9999)})"
    if k < 0.38:
        return f'    log.info("{_sentence(rnd, rnd.randint(3, 9))}: %s", {_ident(rnd)})'
    if k < 0.46:
        return f"def {_ident(rnd)}(self, {_ident(rnd)}: str, {_ident(rnd)}: int = 0) -> None:"
    if k < 0.52:
        return f'    url = f"https://api.example.com/v1/{rnd.choice(WORDS)}/{{{_ident(rnd)}}}"'
    if k < 0.58:
        return f'    {_ident(rnd)}_key = self.settings["{_ident(rnd)}"]'
    if k < 0.64:
        return f"    return {{'{rnd.choice(WORDS)}': {_ident(rnd)}, '{rnd.choice(WORDS)}': None}}"
    if k < 0.72:
        return ""
    return f"    # {_sentence(rnd, rnd.randint(4, 12))}"


def _js(rnd: random.Random) -> str:
    k = rnd.random()
    if k < 0.3:
        call = f"{_ident(rnd)}.{rnd.choice(WORDS)}({rnd.randint(0, 99)})"
        return f"  const {_ident(rnd)} = await {call};"
    if k < 0.5:
        return f"  console.log('{_sentence(rnd, rnd.randint(3, 8))}', {_ident(rnd)});"
    if k < 0.6:
        return f"  import {{ {_ident(rnd)} }} from './{rnd.choice(WORDS)}/{rnd.choice(WORDS)}';"
    if k < 0.7:
        return "  });"
    return f"  // {_sentence(rnd, rnd.randint(4, 12))}"


def _json(rnd: random.Random) -> str:
    k = rnd.random()
    if k < 0.4:
        return f'    "{_ident(rnd)}": "{_sentence(rnd, rnd.randint(1, 5))}",'
    if k < 0.6:
        return f'    "{_ident(rnd)}": {rnd.randint(0, 10**6)},'
    if k < 0.8:
        return (
            f'    "id": "{_r(rnd, HEX, 8)}-{_r(rnd, HEX, 4)}-{_r(rnd, HEX, 4)}-'
            f'{_r(rnd, HEX, 4)}-{_r(rnd, HEX, 12)}",'
        )
    return f'    "{rnd.choice(WORDS)}": {{"enabled": true, "limit": {rnd.randint(1, 500)}}},'


def _yaml(rnd: random.Random) -> str:
    k = rnd.random()
    if k < 0.5:
        return f"{'  ' * rnd.randint(0, 3)}{_ident(rnd)}: {_sentence(rnd, rnd.randint(1, 4))}"
    if k < 0.7:
        return f"{'  ' * rnd.randint(0, 3)}{_ident(rnd)}: {rnd.randint(0, 9999)}"
    if k < 0.8:
        return f"{'  ' * rnd.randint(1, 3)}- {rnd.choice(WORDS)}"
    return f"# {_sentence(rnd, rnd.randint(3, 10))}"


def _md(rnd: random.Random) -> str:
    k = rnd.random()
    if k < 0.1:
        return f"## {_sentence(rnd, rnd.randint(2, 5)).title()}"
    if k < 0.2:
        return ""
    if k < 0.3:
        return f"- `{_ident(rnd)}`: {_sentence(rnd, rnd.randint(5, 12))}"
    return _sentence(rnd, rnd.randint(8, 16)) + "."


def _log(rnd: random.Random) -> str:
    ts = f"2026-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:" \
         f"{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}Z"
    k = rnd.random()
    if k < 0.5:
        return f"{ts} INFO {rnd.choice(WORDS)}: {_sentence(rnd, rnd.randint(4, 10))}"
    if k < 0.7:
        return f"{ts} DEBUG request took {rnd.randint(1, 900)}ms id={_r(rnd, HEX, 16)}"
    if k < 0.85:
        return f"{ts} WARN {rnd.choice(WORDS)} retry {rnd.randint(1, 5)} in {rnd.randint(1, 60)}s"
    return f"{ts} ERROR {_ident(rnd)} failed: {_sentence(rnd, rnd.randint(3, 8))}"


def _csv(rnd: random.Random) -> str:
    return ",".join(
        [str(rnd.randint(1, 10**6)), rnd.choice(WORDS), _sentence(rnd, 3), f"{rnd.random():.4f}"]
    )


def _sh(rnd: random.Random) -> str:
    k = rnd.random()
    if k < 0.4:
        return f'{_ident(rnd).upper()}="${{{_ident(rnd).upper()}:-{rnd.choice(WORDS)}}}"'
    if k < 0.7:
        verb = rnd.choice(["echo", "test", "mkdir -p", "cd"])
        return f"{verb} {rnd.choice(WORDS)}/{rnd.choice(WORDS)}"
    return f"# {_sentence(rnd, rnd.randint(3, 9))}"


def _json_fresh(rnd: random.Random) -> str:
    # a git hash in quotes: detect-secrets' hex entropy plugin reports these
    return f'    "commit": "{_r(rnd, HEX, 40)}",'


def _log_fresh(rnd: random.Random) -> str:
    # a public IP is reported by detect-secrets' IPPublicDetector, a private one is not
    return f"2026-11-{rnd.randint(1, 28):02d}T08:00:00Z DEBUG request from {_ip(rnd)} ok"


# Lines with something detect-secrets reports are made fresh each time, never drawn from the
# pools: detect-secrets reports a value once per file (at its first line), keyshift at every
# line it is on, so a value repeated in a file would make the two sides' lines differ.
FRESH = {".json": (_json_fresh, 0.1), ".log": (_log_fresh, 0.15)}

KINDS = [  # (extension, line maker, weight)
    (".py", _py, 25),
    (".js", _js, 10),
    (".json", _json, 10),
    (".yaml", _yaml, 8),
    (".md", _md, 12),
    (".log", _log, 20),
    (".csv", _csv, 5),
    (".sh", _sh, 5),
    (".txt", _md, 5),
]


def _planted(rnd: random.Random, k: int) -> str:
    """A line with a secret of shape ``k`` (0-9), one detect-secrets knows."""
    if k == 0:
        return f'aws_access_key_id = "AKIA{_r(rnd, string.ascii_uppercase + string.digits, 16)}"'
    if k == 1:
        return f"GITHUB_TOKEN=ghp_{_r(rnd, B62, 36)}"
    if k == 2:
        return f"stripe.api_key = 'sk_live_{_r(rnd, B62, 24)}'"
    if k == 3:
        team, bot = rnd.randint(10**9, 10**10), rnd.randint(10**9, 10**10)
        return f"slack: xoxb-{team}-{bot}-{_r(rnd, B62.lower(), 24)}"
    if k == 4:
        return "-----BEGIN RSA PRIVATE KEY-----"
    if k == 5:
        return f'    signing_material = "{_r(rnd, B62 + "+/", 48)}"'
    if k == 6:
        return f'db_password = "{_r(rnd, B62, 20)}"'
    if k == 7:
        head = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
        return f"Authorization: Bearer {head}.{_r(rnd, B62, 40)}.{_r(rnd, B62, 43)}"
    if k == 8:
        return f"DATABASE_URL=postgres://app:{_r(rnd, B62, 16)}@db.internal:5432/app"
    hook = f"T{_r(rnd, B62, 8)}/B{_r(rnd, B62, 8)}/{_r(rnd, B62, 24)}"
    return f"deploy hook https://hooks.slack.com/services/{hook}"


def known_values(seed: int, n: int = 20) -> list[str]:
    """Provider keys of shapes no plugin knows (dots, colons and dashes inside)."""
    rnd = random.Random(seed * 7919)
    return [f"prov.{_r(rnd, B62, 10)}:{_r(rnd, B62, 22)}-{i:02d}" for i in range(n)]


def generate(root: Path, files: int, total_bytes: int, seed: int) -> dict[tuple[str, int], int]:
    """Write the tree; returns where each known value was planted: (file, line) -> index."""
    rnd = random.Random(seed)
    makers = [ext for ext, _, weight in KINDS for _ in range(weight)]
    # pools of lines, so 200 MB is written in seconds; the planted lines are all fresh
    pools = {ext: [maker(rnd) for _ in range(4000)] for ext, maker, _ in KINDS}
    known = known_values(seed)
    planted_known: dict[tuple[str, int], int] = {}
    avg = total_bytes / files
    for i in range(files):
        ws = f"ws{i % 50:02d}"
        sub = ("src", "logs", "config", "docs", "data")[i % 5]
        if i % 200 == 0:  # an env file per workspace (then more under config/)
            n_env = i // 200
            ext = ".env"
            rel = f"ws{n_env:02d}/.env" if n_env < 50 else f"{ws}/config/f{i:05d}.env"
            count = rnd.randint(5, 20)
            lines = [f"{_ident(rnd).upper()}={rnd.choice(WORDS)}" for _ in range(count)]
        else:
            ext = rnd.choice(makers)
            rel = f"{ws}/{sub}/d{i % 37:02d}/f{i:05d}{ext}"
            size = max(200, int(rnd.lognormvariate(0, 0.6) * avg * 0.85))
            pool = pools[ext]
            lines = []
            n = 0
            fresh = FRESH.get(ext)
            while n < size:
                line = fresh[0](rnd) if fresh and rnd.random() < fresh[1] else rnd.choice(pool)
                lines.append(line)
                n += len(line) + 1
        if ext == ".env" or rnd.random() < 0.05:
            # distinct shapes: detect-secrets' baseline keeps one find per value and file, and
            # some plugins report a constant (a private key's header; "ghp" for any GitHub
            # token), so two of one shape in a file would be one line on its side
            for shape in rnd.sample(range(10), rnd.randint(1, 3)):
                lines.insert(rnd.randrange(len(lines) + 1), _planted(rnd, shape))
        if ext in (".env", ".log") and rnd.random() < (0.5 if ext == ".env" else 0.004):
            k = rnd.randrange(len(known))
            at = rnd.randrange(len(lines) + 1)
            lines.insert(
                at,
                f"PROVIDER_KEY={known[k]}" if ext == ".env" else f"auth with key {known[k]} ok",
            )
            planted_known[(rel, at + 1)] = k
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # a few binaries, which both sides leave alone
    for j in range(20):
        blob = root / f"ws{j:02d}" / "data" / f"blob{j}.png"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(
            b"\x89PNG\r\n\x1a\n\0\0" + rnd.randbytes(4096)
        )
    return planted_known


def _fingerprint(key: bytes, value: str) -> str:
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def run_keyshift(root: Path, known: dict[str, str], key: bytes, workers: int | None):
    from console.workspace_scan import scan

    return scan([root], known, key=key, workers=workers)


def run_detect_secrets(root: Path) -> set[tuple[str, int, str]]:
    exe = ROOT / ".venv" / "bin" / "detect-secrets"
    proc = subprocess.run(
        [str(exe if exe.exists() else "detect-secrets"), "scan", "--all-files", "--no-verify", "."],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"bench: detect-secrets failed ({proc.returncode}): {proc.stderr[-500:]}")
    out = json.loads(proc.stdout)
    return {
        (str(root / name), item["line_number"], item["type"])
        for name, items in out["results"].items()
        for item in items
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mb", type=float, default=200.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="generate here and keep it")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="keyshift-bench-scan-")) if args.keep is None else None
    root = args.keep or tmp
    assert root is not None
    try:
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        planted = generate(root, args.files, int(args.mb * 1e6), args.seed)
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        count = sum(1 for p in root.rglob("*") if p.is_file())
        print(
            f"tree: {count} files, {size / 1e6:.1f} MB, {len(planted)} known values planted "
            f"(generated in {time.perf_counter() - t0:.1f} s)"
        )
        # a bench key, not the installation key: the bench never touches the keyring
        key = os.urandom(32)
        values = known_values(args.seed)
        known = {_fingerprint(key, v): f"bench:api-key:known-{i:02d}" for i, v in enumerate(values)}

        times: dict[str, list[float]] = {"keyshift": [], "detect-secrets": []}
        ks_result = None
        ds_result: set[tuple[str, int, str]] = set()
        # warm-up: both sides once over one workspace (imports, the page cache, the pools)
        t = time.perf_counter()
        run_keyshift(root / "ws00", known, key, args.workers)
        ks_t = time.perf_counter() - t
        t = time.perf_counter()
        run_detect_secrets(root / "ws00")
        print(f"warm-up (ws00): keyshift {ks_t:.2f} s, detect-secrets "
              f"{time.perf_counter() - t:.2f} s")
        for r in range(1, args.rounds + 1):
            t = time.perf_counter()
            ks_result = run_keyshift(root, known, key, args.workers)
            ks_t = time.perf_counter() - t
            t = time.perf_counter()
            ds_result = run_detect_secrets(root)
            ds_t = time.perf_counter() - t
            print(f"round {r}: keyshift {ks_t:.2f} s, detect-secrets {ds_t:.2f} s")
            times["keyshift"].append(ks_t)
            times["detect-secrets"].append(ds_t)
        assert ks_result is not None

        ks_set = {(h.file, h.line, d) for h in ks_result.hits for d in h.detectors}
        if ks_set != ds_result:
            only_ks = sorted(ks_set - ds_result)[:10]
            only_ds = sorted(ds_result - ks_set)[:10]
            sys.exit(
                f"bench: FINDINGS DIFFER: {len(ks_set - ds_result)} only keyshift "
                f"{only_ks}, {len(ds_result - ks_set)} only detect-secrets {only_ds}"
            )
        found_known = {
            (str(Path(h.file).relative_to(root)), h.line): h.credential_id
            for h in ks_result.hits
            if h.known
        }
        want_known = {where: f"bench:api-key:known-{k:02d}" for where, k in planted.items()}
        if found_known != want_known:
            missed = sorted(set(want_known.items()) - set(found_known.items()))[:5]
            extra = sorted(set(found_known.items()) - set(want_known.items()))[:5]
            sys.exit(f"bench: KNOWN VALUES DIFFER: missed {missed}, extra {extra}")
        by_type: dict[str, int] = {}
        for _, _, kind in ds_result:
            by_type[kind] = by_type.get(kind, 0) + 1
        print(
            f"findings equal: {len(ds_result)} (file, line, type) "
            + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items()))
        )
        print(
            f"known: {len(found_known)} planted values named at their file and line; "
            f"keyshift scanned {ks_result.scanned} files, skipped {len(ks_result.skipped)} "
            f"({', '.join(sorted({s.reason for s in ks_result.skipped})) or 'none'})"
        )
        ks_best = min(times["keyshift"])
        ds_best = min(times["detect-secrets"])
        print(f"keyshift scan:        {ks_best:.2f} s  ({count / ks_best:,.0f} files/s)")
        print(f"detect-secrets scan:  {ds_best:.2f} s  ({count / ds_best:,.0f} files/s)")
        print(f"ratio: {ds_best / ks_best:.1f}x")
        print(
            f"RESULT scan keyshift={ks_best:.2f} baseline={ds_best:.2f} "
            f"ratio={ds_best / ks_best:.1f} unit=s"
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
