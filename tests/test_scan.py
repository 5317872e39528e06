"""The workspace scanner (console/workspace_scan.py) and `keyshift scan`.

Unknown secrets must come out exactly as detect-secrets' own ``scan_file`` reports them (the
prefilter may skip work, never a find); known credentials are named by fingerprint; the walk
survives what real workspaces hold (ignore files, binaries, huge files, link loops, FIFOs,
unreadable files); and no value ever reaches output, logs or the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import string
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console import workspace_scan as ws
from console.workspace_scan import KNOWN_DETECTOR, Hit, scan

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
KEY = b"k" * 32  # a test key: these tests fingerprint with it instead of the keyring's
B62 = string.ascii_letters + string.digits


def fp(value: str, key: bytes = KEY) -> str:
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def rand(rnd: random.Random, n: int, alphabet: str = B62) -> str:
    return "".join(rnd.choices(alphabet, k=n))


def hits_of(result: ws.ScanResult, root: Path) -> set[tuple[str, int, str]]:
    return {(str(Path(h.file).relative_to(root)), h.line, h.detector) for h in result.hits}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- unknown secrets: the right file, line and detector --------------------------------------


def test_planted_unknown_secrets_found_at_their_file_line_and_detector(tmp_path: Path) -> None:
    rnd = random.Random(1)
    aws = "AKIA" + rand(rnd, 16, string.ascii_uppercase + string.digits)
    ghp = "ghp_" + rand(rnd, 36)
    entropic = rand(rnd, 40, B62 + "+/")
    write(tmp_path / "app/settings.py", f'import os\n\nKEY_ID = "{aws}"\n')
    write(tmp_path / "app/deploy.sh", f"#!/bin/sh\necho start\nexport GH={ghp}\n")
    write(tmp_path / "notes.md", f'# notes\n\nthe blob is "{entropic}" for now\n')
    write(tmp_path / "clean.py", "def f(x):\n    return x + 1\n")

    result = scan([tmp_path], {}, workers=1)

    assert hits_of(result, tmp_path) == {
        ("app/settings.py", 3, "AWS Access Key"),
        ("app/deploy.sh", 3, "GitHub Token"),
        ("notes.md", 3, "Base64 High Entropy String"),
    }
    assert all(not h.known and h.credential_id is None for h in result.hits)
    assert result.scanned == 4 and result.skipped == ()


def _fragment(rnd: random.Random) -> str:
    """A line that may or may not hold something detect-secrets reports; every random value
    is fresh, so no value repeats in a file (detect-secrets reports a value once per file)."""
    up = string.ascii_uppercase + string.digits
    choices = [
        lambda: f"x = compute({rnd.randint(0, 99)})",
        lambda: f'aws_key = "AKIA{rand(rnd, 16, up)}"',
        lambda: f"token: ghp_{rand(rnd, 36)}",
        lambda: f'secret = "{rand(rnd, 32, B62 + "+/")}"',
        lambda: f"password = '{rand(rnd, 12)}'",
        lambda: f"password: {rand(rnd, 14)}",
        lambda: f'api_key = "{rand(rnd, 24)}"  # pragma: allowlist secret',
        lambda: "secret = get_secret_value(name)",
        lambda: 'password = "${DB_PASSWORD}"',
        lambda: f'"id": "{uuid.UUID(int=rnd.getrandbits(128))}"',
        lambda: f'"sha": "{rand(rnd, 40, "0123456789abcdef")}"',
        lambda: f"sha={rand(rnd, 40, '0123456789abcdef')}",
        lambda: f"from {rnd.randint(11, 99)}.{rnd.randint(0, 255)}.7.{rnd.randint(1, 254)} ok",
        lambda: f"from 10.0.{rnd.randint(0, 255)}.1 ok",
        lambda: f"url = https://user:{rand(rnd, 10)}@example.com/x",
        lambda: "-----BEGIN OPENSSH PRIVATE KEY-----",
        lambda: f"stripe: sk_live_{rand(rnd, 24)}",
        lambda: f"slack = 'xoxb-{rnd.randint(10**9, 10**10)}-{rand(rnd, 24).lower()}'",
        lambda: f"jwt eyJhbGciOiJIUzI1NiJ9.{rand(rnd, 30)}.{rand(rnd, 20)}",
        # non-ASCII (a long s): IGNORECASE folds it to "s", str.lower() does not
        lambda: f"pa\u017f\u017fword = '{rand(rnd, 16)}'",
        lambda: f"id_key = '{rand(rnd, 30)}'",
        lambda: f"mailchimp {rand(rnd, 32, string.ascii_lowercase + string.digits)}-us12",
        lambda: f"bot {rnd.randint(10**8, 10**9)}:{rand(rnd, 35)}",
        lambda: f"# {rand(rnd, 8)} {rand(rnd, 5)} words only",
        lambda: "",
    ]
    return rnd.choice(choices)()


def test_unknown_hits_equal_detect_secrets_scan_file(tmp_path: Path) -> None:
    """The prefilter, the lazy line filters and the pool change nothing: over files of every
    type detect-secrets treats apart (YAML and INI transformers, the eager config parser for
    unknown types, CRLF line ends, non-ASCII), the (file, line, type) set equals what its own
    scan_file yields."""
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    rnd = random.Random(20261203)
    names = ["a.py", "b.yaml", "c.json", "d.ini", "e.txt", "f", "g.env", "h.md", "i.cfg"]
    for n in range(60):
        name = names[n % len(names)]
        lines = [_fragment(rnd) for _ in range(rnd.randint(5, 40))]
        if name == "d.ini":
            lines.insert(0, "[section]")
        text = ("\r\n" if n % 7 == 0 else "\n").join(lines) + "\n"
        (tmp_path / f"d{n % 5}").mkdir(exist_ok=True)
        (tmp_path / f"d{n % 5}" / f"{n:02d}{name}").write_bytes(text.encode())

    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    reference: set[tuple[str, int, str]] = set()
    old = os.getcwd()
    os.chdir(tmp_path)  # detect-secrets' is_invalid_file checks the name from here
    try:
        with default_settings():
            # scan_file yields every find with its line; a baseline (SecretsCollection) then
            # keeps one per value and file, which keyshift does not: it reports every line
            for f in files:
                name = str(f.relative_to(tmp_path))
                reference |= {(name, s.line_number, s.type) for s in scan_file(name)}
    finally:
        os.chdir(old)

    in_process = scan([tmp_path], {}, workers=1)
    pooled = scan([tmp_path], {}, workers=2)  # 60 files: the process pool

    assert len(reference) > 100  # the fragments do exercise most plugins
    assert len({t for _, _, t in reference}) >= 10
    got = {(n, line, t) for n, line, t in hits_of(in_process, tmp_path)}
    assert got == reference
    assert pooled.hits == in_process.hits


# the plugins whose cheap markers stand in for their own patterns: any string a plugin's
# pattern finds, the marker must find too (else the prefilter would hide a find)
def _marked_plugins() -> list[tuple[str, object]]:
    from detect_secrets.settings import default_settings, get_plugins

    with default_settings():
        return [(type(p).__name__, p) for p in get_plugins()]


@pytest.mark.parametrize(
    "name", sorted({name for name, _ in ws._MARKERS}), ids=lambda n: n
)
def test_each_marker_is_found_wherever_its_plugin_finds(name: str) -> None:
    plugin = dict(_marked_plugins())[name]
    table = ws._MARKERS.get((name, ws.patterns_digest(plugin)))
    assert table is not None, "detect-secrets changed this plugin: re-derive its marker"
    markers = [ws._Marker.of(p, i) for p, i in table]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data: st.DataObject) -> None:
        pattern = data.draw(st.sampled_from(list(plugin.denylist)))
        text = data.draw(st.from_regex(pattern))
        line = text.splitlines()[0] if text.splitlines() else text
        if not list(plugin.analyze_string(line)):
            return
        lowered = line.lower() if line.isascii() else None
        assert any(
            (m.lowered.search(lowered) if m.lowered is not None and lowered is not None
             else m.exact.search(line))
            for m in markers
        ), (pattern.pattern, line)

    check()


def test_keyword_markers_cover_every_keyword() -> None:
    from detect_secrets.plugins.keyword import DENYLIST

    for keyword in DENYLIST:
        plain = keyword.replace("_?", "")
        assert any(m in plain for m, _ in ws._KEYWORD_MARKERS), keyword


def test_entropy_marker_keeps_every_string_above_the_limit() -> None:
    """A quoted string shorter than 2**limit cannot pass the entropy limit; one at the
    boundary with every character distinct is still looked at."""
    from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

    plugin = Base64HighEntropyString()
    pre = ws._Prefilter([plugin])
    shortest = int(2**plugin.entropy_limit)
    distinct = (B62 * 2)[:shortest]
    assert pre.marked([f'x = "{distinct}"']) == {0: [0]}
    assert pre.marked([f'x = "{distinct[:-1]}"']) == {}
    assert plugin.calculate_shannon_entropy(distinct[:-1]) <= plugin.entropy_limit


# --- known credentials --------------------------------------------------------------------


def test_known_values_are_named_once_per_line_whatever_their_shape(tmp_path: Path) -> None:
    rnd = random.Random(2)
    odd = f"prov.{rand(rnd, 10)}:{rand(rnd, 20)}-x"  # no plugin knows this shape
    ghp = "ghp_" + rand(rnd, 36)  # a shape a plugin knows, and the value is known too
    short = rand(rnd, 9)  # too short for a word or token: only as an assignment's value
    write(tmp_path / ".env", f"A=1\nPROVIDER_KEY={odd}\nPASS='{short}'\n")
    write(tmp_path / "logs/run.log", f"t=1 start\nt=2 auth with {odd}, ok\nt=3 push {ghp}\n")
    write(tmp_path / "cfg.json", f'{{\n  "k": "{odd}",\n  "gh": "{ghp}"\n}}\n')
    known = {fp(odd): "declared:api-key:odd", fp(ghp): ("gh:token:a", "gh:token:b"),
             fp(short): "declared:password:short"}

    result = scan([tmp_path], known, key=KEY, workers=1)

    found = {(str(Path(h.file).relative_to(tmp_path)), h.line, h.credential_id, h.detector)
             for h in result.hits if h.known}
    assert found == {
        (".env", 2, "declared:api-key:odd", KNOWN_DETECTOR),
        (".env", 3, "declared:password:short", KNOWN_DETECTOR),
        ("logs/run.log", 2, "declared:api-key:odd", KNOWN_DETECTOR),
        ("logs/run.log", 3, "gh:token:a", "GitHub Token"),
        ("logs/run.log", 3, "gh:token:b", "GitHub Token"),
        ("cfg.json", 2, "declared:api-key:odd", KNOWN_DETECTOR),
        ("cfg.json", 3, "gh:token:a", "Base64 High Entropy String"),
        ("cfg.json", 3, "gh:token:b", "Base64 High Entropy String"),
    }
    # the known GitHub token is not reported again as an unknown one: the plugin's find
    # ("ghp", its pattern's group) is part of the known value, so it is that hit's
    assert not [h for h in result.hits if not h.known and h.line == 3]
    # a known hit keeps every detect-secrets type that flagged it (the bench compares these)
    gh = next(h for h in result.hits if h.credential_id == "gh:token:a" and h.line == 3
              and h.file.endswith("cfg.json"))
    assert gh.detectors == ("Base64 High Entropy String", "GitHub Token")


def test_scanner_fingerprint_is_keyshifts(keyshift_home: Path) -> None:
    from console.fingerprint import fingerprint, installation_key

    scanner = ws._Scanner(installation_key(), {})
    value = "sk-" + uuid.uuid4().hex
    assert scanner._fingerprint(value) == fingerprint(value)


# --- the walk -----------------------------------------------------------------------------


def test_ignore_files_are_respected_but_gitignore_never_hides_env_files(tmp_path: Path) -> None:
    rnd = random.Random(3)
    secret = lambda: f"ghp_{rand(rnd, 36)}\n"  # noqa: E731
    write(tmp_path / ".gitignore", "build/\n*.log\n.env\n.env.*\n")
    write(tmp_path / ".keyshiftignore", "vendor/\n.env.test\n")
    for rel in ("build/out.txt", "app.log", "vendor/lib.py", ".env.test",  # ignored
                ".env", ".env.local", "src/main.py", "src/debug.log.txt"):  # scanned
        write(tmp_path / rel, secret())

    result = scan([tmp_path], {}, workers=1)

    files = {str(Path(h.file).relative_to(tmp_path)) for h in result.hits}
    assert files == {".env", ".env.local", "src/main.py", "src/debug.log.txt"}
    assert result.ignored == 4  # build/, app.log, vendor/, .env.test
    # a file named on the command line is scanned whatever the ignore files say
    named = scan([tmp_path / "app.log"], {}, workers=1)
    assert [h.line for h in named.hits] == [1]


def test_binaries_big_files_and_non_utf8_are_skipped_with_a_reason(tmp_path: Path) -> None:
    token = "ghp_" + "a1B2" * 9
    write(tmp_path / "small.txt", token + "\n")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\0\0" + token.encode() + b"\n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 " + token.encode() + b"\n")
    write(tmp_path / "big.txt", "x" * 5000 + "\n" + token + "\n")

    result = scan([tmp_path], {}, max_file_bytes=4096, workers=1)

    assert {str(Path(h.file).relative_to(tmp_path)) for h in result.hits} == {"small.txt"}
    reasons = {Path(s.file).name: s.reason for s in result.skipped}
    assert reasons == {"image.bin": ws.BINARY, "latin1.txt": ws.NOT_UTF8, "big.txt": ws.TOO_LARGE}
    assert result.scanned == 1


def test_symlink_loops_and_broken_links_end_and_are_reported(tmp_path: Path) -> None:
    token = "ghp_" + "Zz9y" * 9
    write(tmp_path / "a/b/file.py", f"T = '{token}'\n")
    (tmp_path / "a/b/up").symlink_to(tmp_path / "a")  # a -> b -> up -> a ...
    (tmp_path / "a/self").symlink_to(tmp_path / "a/self")  # ELOOP
    (tmp_path / "a/dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "a/again.py").symlink_to(tmp_path / "a/b/file.py")  # same file, another name

    result = scan([tmp_path], {}, workers=1)

    assert [(Path(h.file).name, h.line) for h in result.hits] == [("file.py", 1)]
    reasons = {str(Path(s.file).relative_to(tmp_path)): s.reason for s in result.skipped}
    assert reasons == {
        "a/b/up": ws.SYMLINK_LOOP,
        "a/self": ws.SYMLINK_LOOP,
        "a/dangling": ws.BROKEN_LINK,
    }
    assert result.scanned == 1


def test_fifos_and_unreadable_files_are_skipped_never_a_traceback(tmp_path: Path) -> None:
    token = "ghp_" + "Qq7w" * 9
    write(tmp_path / "ok.txt", token + "\n")
    os.mkfifo(tmp_path / "pipe")  # opening it for reading would block forever
    # unreadable, even for root: /proc/self/mem is a regular file whose read fails (EIO)
    (tmp_path / "mem").symlink_to("/proc/self/mem")
    closed = write(tmp_path / "closed.txt", token + "\n")
    closed.chmod(0)
    try:
        result = scan([tmp_path], {}, workers=1)
    finally:
        closed.chmod(0o600)

    reasons = {Path(s.file).name: (s.reason, s.detail) for s in result.skipped}
    assert reasons["pipe"] == (ws.NOT_A_FILE, "")
    assert reasons["mem"] == (ws.UNREADABLE, "EIO")
    if os.geteuid() != 0:  # root reads a 000 file; anyone else is refused
        assert reasons["closed.txt"] == (ws.UNREADABLE, "EACCES")
    assert ("ok.txt", 1) in {(Path(h.file).name, h.line) for h in result.hits}


def test_process_pool_gives_the_same_answer_as_one_process(tmp_path: Path) -> None:
    rnd = random.Random(4)
    odd = f"prov.{rand(rnd, 10)}:{rand(rnd, 20)}"
    for n in range(80):
        lines = [_fragment(rnd) for _ in range(10)]
        if n % 9 == 0:
            lines.append(f"KEY={odd}")
        write(tmp_path / f"d{n % 4}/f{n}.py", "\n".join(lines) + "\n")
    os.mkfifo(tmp_path / "d0/pipe")
    known = {fp(odd): "declared:api-key:odd"}

    one = scan([tmp_path], known, key=KEY, workers=1)
    two = scan([tmp_path], known, key=KEY, workers=2)

    assert one == two
    assert sum(1 for h in two.hits if h.known) == 9
    assert [s.reason for s in two.skipped] == [ws.NOT_A_FILE]


def test_agent_of_picks_the_deepest_workspace(tmp_path: Path) -> None:
    spaces = [ws.Workspace("outer", tmp_path), ws.Workspace("inner", tmp_path / "sub"),
              ws.Workspace("envs", tmp_path / "elsewhere/.env")]
    assert ws.agent_of(str(tmp_path / "sub/x.py"), spaces) == "inner"
    assert ws.agent_of(str(tmp_path / "y.py"), spaces) == "outer"
    assert ws.agent_of(str(tmp_path / "elsewhere/.env"), spaces) == "envs"
    assert ws.agent_of("/somewhere/else", spaces) is None


# --- the store ----------------------------------------------------------------------------


def test_store_known_fingerprints_include_key_tags_and_leave_gone_out(tmp_path: Path) -> None:
    from console.model import Credential
    from console.store import Store

    store = Store(tmp_path / "ks.db")
    try:
        def cred(n: int, **kw: object) -> Credential:
            return Credential(id=f"s:kv:p{n}", source="s", kind="kv", native_id=f"p{n}",
                              name=f"p{n}", **kw)  # type: ignore[arg-type]

        store.bulk_insert_credentials([
            cred(1, fingerprint="hmac-sha256:one"),
            cred(2, fingerprint="hmac-sha256:one"),  # the same value: both named
            cred(3, tags={"fingerprint:password": "hmac-sha256:pw", "owner": "x"}),
            cred(4, fingerprint="hmac-sha256:gone", status="gone",
                 gone_at=__import__("datetime").datetime(2026, 1, 1,
                                                         tzinfo=__import__("datetime").UTC)),
        ])
        assert store.known_fingerprints() == {
            "hmac-sha256:one": ("s:kv:p1", "s:kv:p2"),
            "hmac-sha256:pw": ("s:kv:p3",),
        }
    finally:
        store.close()


# --- the CLI: exit codes, formats, inventory workspaces, and no value anywhere ---------------

INVENTORY = """\
version: 1
agents:
  - name: support-bot
    owner: team-support
    environment: prod
    identities:
      - {type: workspace, path: ws/support, env_files: [.env, ../../shared/support.env]}
  - name: billing-agent
    owner: team-billing
    environment: dev
    identities:
      - {type: workspace, path: ws/billing}
sources:
  - {name: declared, type: declared}
credentials:
  - name: openai-support-prod
    source: declared
    kind: api-key
    provider: openai
    owner: team-support
    environment: prod
    sensitivity: high
    agents: [support-bot]
    delivered_to:
      - {type: env-file, path: ws/support/.env, var: OPENAI_API_KEY}
"""


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    environ = dict(os.environ, KEYSHIFT_HOME=str(tmp_path / "home"), KEYSHIFT_ACTOR="tester")
    environ.pop("KEYSHIFT_READ_ONLY", None)
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    return environ


def ks(tmp_path: Path, environ: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cmd = [KEYSHIFT, "--inventory", str(tmp_path / "inventory.yaml"), "--db",
           str(tmp_path / "ks.db"), *args]
    return subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


def test_cli_canary_known_and_unknown_never_printed_or_stored(tmp_path: Path, cli_env) -> None:
    canary = "sk-canary-" + uuid.uuid4().hex
    stranger = "ghp_" + uuid.uuid4().hex + "abcd"
    write(tmp_path / "ws/support/.env", f"OPENAI_API_KEY={canary}\n")
    # the known value copied where it should not be, and an unknown token beside it
    write(tmp_path / "ws/support/logs/agent.log", f"boot\nusing key {canary} now\n")
    write(tmp_path / "shared/support.env", f"GH_TOKEN={stranger}\n")
    write(tmp_path / "ws/billing/job.py", "print('nothing here')\n")

    sync = ks(tmp_path, cli_env, "sync")
    assert sync.returncode == 0, sync.stderr
    as_json = ks(tmp_path, cli_env, "scan", "--format", "json")
    table = ks(tmp_path, cli_env, "-vv", "scan")

    assert as_json.returncode == 1 and table.returncode == 1, as_json.stderr
    body = json.loads(as_json.stdout)
    hits = {(str(Path(h["file"]).relative_to(tmp_path)), h["line"], h["credential"],
             h["agent"]) for h in body["hits"]}
    cid = "declared:api-key:openai-support-prod"
    assert ("ws/support/logs/agent.log", 2, cid, "support-bot") in hits
    assert ("ws/support/.env", 1, cid, "support-bot") in hits
    assert ("shared/support.env", 1, None, "support-bot") in hits
    assert body["scanned"] == 4 and body["skipped"] == []
    assert "ws/support/logs/agent.log:2" in table.stdout and cid in table.stdout

    for proc in (sync, as_json, table):
        for stream in (proc.stdout, proc.stderr):
            assert canary not in stream and stranger not in stream
            assert "Traceback" not in stream
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert canary.encode() not in data and stranger.encode() not in data, path
    for suffix in ("", "-wal", "-shm"):
        db = tmp_path / f"ks.db{suffix}"
        if db.exists():
            assert canary.encode() not in db.read_bytes(), db


def test_cli_exit_codes_paths_and_no_store(tmp_path: Path, cli_env) -> None:
    write(tmp_path / "clean/a.py", "x = 1\n")
    write(tmp_path / "dirty/b.py", f"T = 'ghp_{uuid.uuid4().hex}abcd'\n")

    clean = ks(tmp_path, cli_env, "scan", "clean")
    dirty = ks(tmp_path, cli_env, "scan", "dirty", "--format", "json")
    missing = ks(tmp_path, cli_env, "scan", "clean", "no-such-dir")
    bad = ks(tmp_path, cli_env, "scan", "--format", "xml", "clean")

    assert clean.returncode == 0, clean.stderr
    assert "0 hits" in clean.stdout and "1 files scanned" in clean.stdout
    # no store yet: said once on stderr, and unknown secrets are still found
    assert "no store" in clean.stderr and not (tmp_path / "ks.db").exists()
    assert dirty.returncode == 1
    assert [(Path(h["file"]).name, h["line"], h["detector"]) for h in
            json.loads(dirty.stdout)["hits"]] == [("b.py", 1, "GitHub Token")]
    for proc in (missing, bad):
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
    assert "no such file or directory: no-such-dir" in missing.stderr
    assert re.search(r"keyshift: .*xml", bad.stderr)


def test_cli_without_path_or_workspace_is_a_usage_error(tmp_path: Path, cli_env) -> None:
    (tmp_path / "inventory.yaml").write_text("version: 1\nagents: []\n")
    proc = ks(tmp_path, cli_env, "scan")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("keyshift: no PATH given")


def test_hit_records_are_frozen_and_carry_no_value() -> None:
    hit = Hit("f", 1, "GitHub Token", detectors=("GitHub Token",))
    with pytest.raises(AttributeError):
        hit.line = 2  # type: ignore[misc]
    assert set(hit.as_json()) == {"file", "line", "detector", "known", "credential", "detectors"}
