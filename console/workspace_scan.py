"""Workspace scanning: secrets left in plain text in agents' workspaces.

Two questions are asked of every text file under the scanned paths:

- **Unknown secrets**: detect-secrets' default plugins and default filters (its heuristic
  filters: ``is_likely_id_string``, ``is_templated_secret``, ...), with exactly the results
  ``detect-secrets scan --all-files --no-verify`` gives for the same file (bench/scan.py checks
  this over 10,000 files). Nothing is sent anywhere to verify a find.
- **Known credentials**: every candidate string is fingerprinted (HMAC under the installation
  key, ``console.fingerprint``) and looked up in ``known`` (fingerprint -> credential ids). The
  candidates: what any detect-secrets plugin proposes on a line (before its filters, so a
  known key an "is an id" heuristic would drop is still recognised), the value of every
  ``KEY=VALUE`` / ``key: value`` line (env files, shell, YAML), every whitespace-separated
  word of 12 or more characters (quotes and punctuation around it dropped) and every run of 12
  or more characters of the base64/base64url alphabet (a provider key of a format no plugin
  knows, in a log line or a URL). A known credential is reported once per file and line, naming it.

No value leaves the worker that read it: a hit holds file, line, detector and credential id;
an error holds a reason and an errno or exception type name, never an exception's message
(a parser's message may quote the file).

Speed: detect-secrets runs 27 plugins on every line through its dependency injection (about
0.15 ms a line). Here each plugin first runs its own regular expressions (or, for the keyword
and entropy plugins, a condition every find of theirs must meet) once over the whole file; only
lines where something matched go through detect-secrets' own per-line code, and only with the
plugins that matched there. That cannot change a result (see ``_Prefilter``). Files are spread
over a process pool.

Walking: ``.gitignore`` and ``.keyshiftignore`` at each scanned root are honoured, except that
``.gitignore`` never hides env files (``.env``, ``.env.*``, ``*.env``): keeping a file out of git
is why secrets are put there, and the agent reads them in plain text all the same. Only
``.keyshiftignore`` can exclude one. ``.git`` directories are not entered. Symlinked directories
are followed once (a loop is reported, not walked); files above the size limit, binaries (a NUL
byte in the first 8 KiB), text that is not UTF-8, special files, broken links and unreadable
files are reported as skipped with a reason.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import hmac
import io
import multiprocessing
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_FILE_BYTES = 5 * 1024 * 1024
BINARY_SNIFF_BYTES = 8192
IGNORE_FILES = (".gitignore", ".keyshiftignore")
KNOWN_DETECTOR = "Known Credential"  # a known value no detect-secrets plugin reported there
MIN_TOKEN_CHARS = 12
_SEEN_MAX = 200_000  # candidate strings whose answer a worker remembers across files

# why a file was not scanned (the reason vocabulary is part of the CLI's JSON output)
TOO_LARGE = "too-large"
BINARY = "binary"
NOT_UTF8 = "not-utf8"
UNREADABLE = "unreadable"
NOT_A_FILE = "not-a-regular-file"
BROKEN_LINK = "broken-symlink"
SYMLINK_LOOP = "symlink-loop"
MISSING = "missing"
SCAN_ERROR = "scan-error"


@dataclass(frozen=True, slots=True, order=True)
class Hit:
    """A secret in plain text. ``detector`` is detect-secrets' type (``AWS Access Key``, ...) or
    ``Known Credential`` for a known value only keyshift's fingerprint found. ``detectors``
    lists every detect-secrets type that reported this value on this line (for an unknown
    hit, just ``detector``; for a known one, possibly none)."""

    file: str
    line: int
    detector: str
    known: bool = False
    credential_id: str | None = None
    detectors: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "detector": self.detector,
            "known": self.known,
            "credential": self.credential_id,
            "detectors": list(self.detectors),
        }


@dataclass(frozen=True, slots=True, order=True)
class Skipped:
    """A file (or directory) not scanned: ``reason`` is one of the constants above, ``detail``
    says more (an errno name, a size) and never quotes the file."""

    file: str
    reason: str
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ScanResult:
    hits: tuple[Hit, ...]
    scanned: int  # files read and scanned
    skipped: tuple[Skipped, ...]
    ignored: int = 0  # files and directories left out by ignore files (and .git)

    def as_json(self) -> dict[str, Any]:
        return {
            "hits": [h.as_json() for h in self.hits],
            "scanned": self.scanned,
            "skipped": [s.as_json() for s in self.skipped],
            "ignored": self.ignored,
        }


@dataclass(slots=True)
class _Target:
    path: str  # as reported
    ds_name: str  # the name detect-secrets sees: relative to the scanned root (its file type,
    # lock-file and swagger filters read it; an absolute path with "swagger" in a parent
    # directory would otherwise silence every file)


# --- walking --------------------------------------------------------------------------------


def is_env_file(name: str) -> bool:
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _load_specs(root: Path) -> tuple[Any, Any]:
    """(.gitignore spec, .keyshiftignore spec) at ``root``; None where there is no file."""
    import pathspec

    specs: list[Any] = []
    for name in IGNORE_FILES:
        try:
            lines = (root / name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            specs.append(None)
            continue
        specs.append(pathspec.GitIgnoreSpec.from_lines(lines))
    return specs[0], specs[1]


@dataclass
class _Walk:
    targets: list[_Target] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignored: int = 0
    seen_files: set[tuple[int, int]] = field(default_factory=set)
    max_bytes: int = DEFAULT_MAX_FILE_BYTES

    def add_file(self, shown: str, ds_name: str, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            self.skipped.append(Skipped(shown, NOT_A_FILE))
            return
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            return  # the same file under a second name (a link): scanned once
        self.seen_files.add(key)
        if st.st_size > self.max_bytes:
            self.skipped.append(Skipped(shown, TOO_LARGE, f"{st.st_size} bytes"))
            return
        self.targets.append(_Target(shown, ds_name))

    def root(self, root: Path) -> None:
        shown = str(root)
        try:
            st = os.stat(root)
        except OSError as exc:
            self._stat_error(shown, root, exc)
            return
        if not stat.S_ISDIR(st.st_mode):
            # a file named on the command line (or a declared env file) is scanned whatever
            # an ignore file says: it was asked for by name
            self.add_file(shown, root.name, st)
            return
        gitignore, keyshiftignore = _load_specs(root)
        visited = {(st.st_dev, st.st_ino)}
        stack: list[tuple[str, str]] = [(shown, "")]  # (directory as shown, relative path)
        links: list[tuple[str, str, os.stat_result]] = []
        while stack:
            directory, rel_dir = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError as exc:
                self.skipped.append(Skipped(directory, UNREADABLE, _errno_name(exc)))
                continue
            subdirs: list[tuple[str, str]] = []
            for entry in entries:
                rel = f"{rel_dir}{entry.name}"
                try:
                    is_link = entry.is_symlink()
                    est = os.stat(entry.path)  # follows links
                except OSError as exc:
                    self._stat_error(entry.path, Path(entry.path), exc)
                    continue
                is_dir = stat.S_ISDIR(est.st_mode)
                if is_dir and entry.name == ".git":
                    self.ignored += 1
                    continue
                if self._ignored(rel + "/" if is_dir else rel, entry.name, is_dir,
                                 gitignore, keyshiftignore):
                    self.ignored += 1
                    continue
                if is_dir:
                    key = (est.st_dev, est.st_ino)
                    if key in visited:
                        # only a link can lead back to a directory already walked
                        if is_link:
                            self.skipped.append(Skipped(entry.path, SYMLINK_LOOP))
                        continue
                    visited.add(key)
                    subdirs.append((entry.path, rel + "/"))
                elif is_link:
                    links.append((entry.path, rel, est))
                else:
                    self.add_file(entry.path, rel, est)
            stack.extend(reversed(subdirs))  # depth-first, in name order
        # linked files last, so a file inside the tree is reported under its own name
        for shown_link, rel, est in links:
            self.add_file(shown_link, rel, est)

    @staticmethod
    def _ignored(rel: str, name: str, is_dir: bool, gitignore: Any, keyshiftignore: Any) -> bool:
        if keyshiftignore is not None and keyshiftignore.match_file(rel):
            return True
        if gitignore is None or not gitignore.match_file(rel):
            return False
        return is_dir or not is_env_file(name)

    def _stat_error(self, shown: str, path: Path, exc: OSError) -> None:
        if exc.errno == errno.ELOOP:
            self.skipped.append(Skipped(shown, SYMLINK_LOOP))
        elif exc.errno == errno.ENOENT and path.is_symlink():
            self.skipped.append(Skipped(shown, BROKEN_LINK))
        elif exc.errno == errno.ENOENT:
            self.skipped.append(Skipped(shown, MISSING))
        else:
            self.skipped.append(Skipped(shown, UNREADABLE, _errno_name(exc)))


# --- scanning one file (in a worker process) ------------------------------------------------

# base64 / base64url runs (the shapes API keys take), with up to two "=" of padding
# (each starts where a run starts: the lookbehind fails at once inside a short run, where the
# engine would otherwise read ahead again from every character)
_TOKEN_RE = re.compile(rf"(?<![A-Za-z0-9_\-+/])[A-Za-z0-9_\-+/]{{{MIN_TOKEN_CHARS},}}={{0,2}}")
# whitespace-separated words (a key of any shape in a log line), less the punctuation around
_WORD_RE = re.compile(rf"(?<!\S)\S{{{MIN_TOKEN_CHARS},}}")
_WORD_EDGES = "\"'`()[]{}<>,;.:!?"
# KEY=VALUE (env files, shell, Dockerfile ENV) and key: value (YAML), one per line
_ASSIGN_RE = re.compile(
    r"^[ \t]*(?:export[ \t]+)?[\"']?[A-Za-z_][A-Za-z0-9_.\-]*[\"']?[ \t]*(?:=|:)[ \t]*"
    r"(\S.*?)[ \t]*$",
    re.MULTILINE,
)
_NEWLINE_RE = re.compile("\n")
_SEGMENT_RE = re.compile(r"[/+]")


class _NamedText(io.StringIO):
    """The text as the file object detect-secrets' transformers read (they look at .name)."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name = name


# Cheaper conditions for the plugins whose own patterns are slow to run over a whole file
# (a leading lookbehind or character class defeats the regex engine's literal search). Each
# is a substring every match of the plugin's patterns contains, so a line the plugin could
# report on always matches one. ``True``: the plugin's patterns ignore case, so the marker is
# written in lower case and searched in the lowered text (ASCII text), or with IGNORECASE.
# Keyed by the plugin and a digest of its patterns: if detect-secrets changes a plugin, its
# own patterns are used instead (``tests/test_scan.py`` checks each marker against them).
_MARKERS: dict[tuple[str, str], tuple[tuple[str, bool], ...]] = {
    ("ArtifactoryDetector", "cfb568c04ec0d177"): (
        (r"AKC[a-zA-Z0-9]{10}", False),
        (r"AP[\dABCDEF][a-zA-Z0-9]{8}", False),
    ),
    ("AWSKeyDetector", "245c36f991c380ec"): (
        (r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}", False),
        ("aws", True),
    ),
    ("CloudantDetector", "9057445e2aab0e93"): (
        (r"cl(?:oudant|ou|)[_-]?(?:api|)(?:key|pwd|pw|password|pass|token)", True),
        (r"\.cloudant\.com", True),
    ),
    ("DiscordBotTokenDetector", "28bec05e1c98554e"): (
        (r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}", False),
    ),
    # its keyword is one of these, before the 44-character value
    ("IbmCloudIamDetector", "c9d3e38fbf801330"): (
        ("key", True), ("pwd", True), ("pass", True), ("token", True),
    ),
    ("IbmCosHmacDetector", "eb0f24ead7a61f06"): ((r"secret[-_]?(?:access)?[-_]?key", True),),
    ("IPPublicDetector", "863bfb29ec8ce6f0"): ((r"\.[0-9]{1,3}\.[0-9]", False),),
    # its analyze_string keeps only the matches of its pattern that decode as a JWT
    ("JwtTokenDetector", "c9d611f8be77e660"): (("eyJ", False),),
    ("MailchimpDetector", "c705b3472195f549"): ((r"-us[0-9]", False),),
    ("NpmDetector", "f30d2628d1f60b4c"): ((r"/:_authToken=", False),),
    ("OpenAIDetector", "10161b404369d9b7"): ((r"T3BlbkFJ", False),),
    ("PrivateKeyDetector", "3d8b1c1b8254fed6"): ((r"PRIVATE KEY|PuTTY-User-Key-File-2", False),),
    ("PypiTokenDetector", "05e0303268880930"): ((r"pypi-AgE", False),),
    ("SlackDetector", "f786f0964172c123"): (("xox", True), (r"hooks\.slack\.com", True)),
    ("SoftlayerDetector", "8f1dc4ba58f9f914"): (
        (r"(?:softlayer|sl)[_-]?(?:api|)[_-]?(?:key|pwd|password|pass|token)", True),
        ("softlayer", True),
    ),
    ("StripeDetector", "1018992a755b248f"): ((r"k_live_", False),),
    ("TelegramBotTokenDetector", "cfb226b7408549ee"): ((r":[0-9A-Za-z_-]{35}", False),),
}
# every keyword detect-secrets' KeywordDetector knows contains one of these (tests check it)
_KEYWORD_MARKERS = (("key", True), ("pass", True), ("pwd", True), ("secret", True),
                    ("contrase", True))


def patterns_digest(plugin: Any) -> str:
    text = "\0".join(f"{r.pattern}\1{r.flags}" for r in plugin.denylist)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class _Marker:
    exact: re.Pattern[str]  # for the text as it is
    lowered: re.Pattern[str] | None  # for ASCII text lowered (case-insensitive markers)

    @classmethod
    def of(cls, pattern: str, ignore_case: bool, flags: int = 0) -> _Marker:
        if ignore_case:
            return cls(re.compile(pattern, flags | re.IGNORECASE | re.M), re.compile(pattern, re.M))
        return cls(re.compile(pattern, flags | re.M), None)


class _Prefilter:
    """For each plugin, patterns of which one matches somewhere in a line whenever the plugin
    could report anything on it; run once over the file's lines joined by newlines.

    Why this cannot lose a find. A plugin's own pattern, compiled with MULTILINE so ``^``/``$``
    still mean a line's ends: where it matches inside a line at position p, it also matches at
    p in the joined text (the lookarounds and ``\\b`` of the default plugins treat the
    newline next to a line's end as they treat the end itself), so the scan either stops at p
    or passes over p inside an earlier match; every line a match touches is marked. A marker
    from ``_MARKERS`` is a substring of every match, found the same way. The entropy plugins
    report only a quoted string whose Shannon entropy is above their limit, and a string of n
    characters has at most log2(n) bits: so only quoted strings of at least 2**limit
    characters (rounded down) are looked for. The keyword plugin needs a keyword in the line.
    A plugin of another shape (a future detect-secrets) marks every line."""

    def __init__(self, plugins: Sequence[Any]) -> None:
        from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
        from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
        from detect_secrets.plugins.keyword import KeywordDetector

        self.markers: list[tuple[_Marker, ...] | None] = []
        for plugin in plugins:
            kind = type(plugin)
            if kind is KeywordDetector and not plugin.keyword_exclude:
                self.markers.append(tuple(_Marker.of(p, i) for p, i in _KEYWORD_MARKERS))
            elif isinstance(plugin, HighEntropyStringsPlugin) and plugin.regex.pattern.endswith(
                "]+)(\\1)"
            ):
                shortest = max(1, int(2**plugin.entropy_limit))
                pattern = plugin.regex.pattern[: -len("]+)(\\1)")] + f"]{{{shortest},}})(\\1)"
                self.markers.append((_Marker.of(pattern, False, plugin.regex.flags),))
            elif not (
                isinstance(plugin, RegexBasedDetector)
                and kind.analyze_line is BasePlugin.analyze_line
            ):
                self.markers.append(None)
            elif (table := _MARKERS.get((kind.__name__, patterns_digest(plugin)))) is not None:
                self.markers.append(tuple(_Marker.of(p, i) for p, i in table))
            elif kind.analyze_string is RegexBasedDetector.analyze_string:
                self.markers.append(
                    tuple(_Marker(re.compile(r.pattern, r.flags | re.M), None)
                          for r in plugin.denylist)
                )
            else:
                self.markers.append(None)

    def marked(self, stripped: list[str]) -> dict[int, list[int]]:
        """line index -> indexes of the plugins that may report on it."""
        joined = "\n".join(stripped)
        # ASCII text lowered has the same offsets, and ASCII letters fold only to each other
        lowered = joined.lower() if joined.isascii() else None
        starts = [0]
        total = 0
        for line in stripped[:-1]:
            total += len(line) + 1
            starts.append(total)
        out: dict[int, list[int]] = {}
        for index, markers in enumerate(self.markers):
            lines: set[int] = set()
            if markers is None:
                lines.update(range(len(stripped)))
            else:
                for marker in markers:
                    if marker.lowered is not None and lowered is not None:
                        found = marker.lowered.finditer(lowered)
                    else:
                        found = marker.exact.finditer(joined)
                    for m in found:
                        first = bisect.bisect_right(starts, m.start()) - 1
                        last = bisect.bisect_right(starts, max(m.end() - 1, m.start())) - 1
                        lines.update(range(first, last + 1))
            for i in lines:
                out.setdefault(i, []).append(index)
        return out


class _Scanner:
    """One process's scanner: detect-secrets' default settings, the prefilter, the key and the
    known fingerprints."""

    def __init__(self, key: bytes | None, known: Mapping[str, tuple[str, ...]]) -> None:
        from detect_secrets.settings import get_plugins

        self.key = key
        self.known = known
        # the lookup table by the digest's first 16 bytes (what the 32 hex digits say), so a
        # candidate costs one C call and no hex formatting
        self._by_digest: dict[bytes, tuple[str, ...]] = {}
        for fingerprint, ids in known.items():
            prefix, _, hexdigits = fingerprint.partition(":")
            if prefix == "hmac-sha256" and len(hexdigits) == 32:
                with contextlib.suppress(ValueError):
                    self._by_digest[bytes.fromhex(hexdigits)] = ids
        # answers for strings seen in earlier files (identifiers, words and paths repeat across
        # a tree); in this process's memory only, for this scan, bounded
        self._seen: dict[str, tuple[str, ...]] = {}
        self.plugins = list(get_plugins())
        self.prefilter = _Prefilter(self.plugins)

    # fingerprints -------------------------------------------------------------------------

    def _fingerprint(self, value: str) -> str:
        """console.fingerprint.fingerprint (a test pins them equal); the key is handed over
        once, so a worker never opens the keyring."""
        assert self.key is not None
        return "hmac-sha256:" + hmac.digest(self.key, value.encode(), "sha256")[:16].hex()

    def _known_ids(self, value: str, cache: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
        if not self._by_digest or not value:
            return ()
        ids = cache.get(value)
        if ids is None:
            ids = self._seen.get(value)
            if ids is None:
                assert self.key is not None
                digest = hmac.digest(self.key, value.encode(), "sha256")[:16]
                ids = self._by_digest.get(digest, ())
                if len(self._seen) >= _SEEN_MAX:
                    self._seen.clear()
                self._seen[value] = ids
            cache[value] = ids
        return ids

    # one file -----------------------------------------------------------------------------

    def scan_file(self, target: _Target, max_bytes: int) -> tuple[list[Hit], Skipped | None]:
        try:
            fd = os.open(target.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return [], Skipped(target.path, SYMLINK_LOOP)
            if exc.errno == errno.ENOENT:
                return [], Skipped(target.path, MISSING)
            return [], Skipped(target.path, UNREADABLE, _errno_name(exc))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # replaced since the walk (a FIFO would block)
                return [], Skipped(target.path, NOT_A_FILE)
            chunks = []
            left = max_bytes + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
        except OSError as exc:
            return [], Skipped(target.path, UNREADABLE, _errno_name(exc))
        finally:
            os.close(fd)
        if len(data) > max_bytes:
            return [], Skipped(target.path, TOO_LARGE, f"more than {max_bytes} bytes")
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            return [], Skipped(target.path, BINARY)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return [], Skipped(target.path, NOT_UTF8)
        # text mode's universal newlines, as detect-secrets reads the file
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        try:
            return self.scan_text(target.path, target.ds_name, text), None
        except Exception as exc:  # a plugin or a parser failed: say which kind, never its text
            return [], Skipped(target.path, SCAN_ERROR, type(exc).__name__)

    def scan_text(self, shown: str, ds_name: str, text: str) -> list[Hit]:
        from detect_secrets.core.scan import _is_filtered_out

        reported: set[tuple[int, str, str]] = set()  # (line, type, value)
        candidates: set[tuple[int, str]] = set()  # (line, value) for the known check
        if not _is_filtered_out(required_filter_parameters=["filename"], filename=ds_name):
            self._detect(ds_name, text, reported, candidates)
        cache: dict[str, tuple[str, ...]] = {}
        # known values seen, by line: (value, its credential ids)
        seen: dict[int, dict[str, tuple[str, ...]]] = {}

        def note(line: int, value: str) -> None:
            ids = self._known_ids(value, cache)
            if ids:
                seen.setdefault(line, {})[value] = ids

        if self._by_digest:
            for line, value in candidates:
                note(line, value)
            newlines: list[int] | None = None
            for value in _plain_candidates(text):
                if not self._known_ids(value, cache):
                    continue
                # a known value: every line it is on (each is plain text of it)
                if newlines is None:
                    newlines = [m.start() for m in _NEWLINE_RE.finditer(text)]
                at = text.find(value)
                while at != -1:
                    note(bisect.bisect_left(newlines, at) + 1, value)
                    at = text.find(value, at + 1)
        known: dict[tuple[int, str], set[str]] = {
            (line, cid): set() for line, values in seen.items()
            for ids in values.values() for cid in ids
        }
        unknown: set[tuple[int, str]] = set()
        for line, kind, value in reported:
            # a find that is a known value, or part of one (GitHub's plugin reports just the
            # "ghp" of a token), belongs to that credential's hit
            owners = {cid for v, ids in seen.get(line, {}).items() if value in v for cid in ids}
            if not owners:
                unknown.add((line, kind))
            for cid in owners:
                known[(line, cid)].add(kind)
        hits = [Hit(shown, line, kind, detectors=(kind,)) for line, kind in unknown]
        for (line, cid), kinds in known.items():
            ordered = tuple(sorted(kinds))
            hits.append(
                Hit(shown, line, ordered[0] if ordered else KNOWN_DETECTOR, True, cid, ordered)
            )
        return hits

    def _detect(
        self,
        ds_name: str,
        text: str,
        reported: set[tuple[int, str, str]],
        candidates: set[tuple[int, str]],
    ) -> None:
        """detect-secrets' ``scan_file``: the file's lines (a transformer's, for YAML), and
        only when those give nothing, the eager transformers' lines."""
        from detect_secrets.transformers import get_transformed_file

        f = _NamedText(text, ds_name)
        lines = get_transformed_file(f)  # type: ignore[arg-type]
        if not lines:
            lines = f.readlines()
        if self._lines(ds_name, lines, reported, candidates):
            return
        f.seek(0)
        eager = get_transformed_file(f, use_eager_transformers=True)  # type: ignore[arg-type]
        if eager:
            self._lines(ds_name, eager, reported, candidates)

    def _lines(
        self,
        ds_name: str,
        lines: list[str],
        reported: set[tuple[int, str, str]],
        candidates: set[tuple[int, str]],
    ) -> bool:
        """detect-secrets' ``_process_line_based_plugins`` on the lines the prefilter marked,
        with the plugins that marked each; True when something was reported."""
        from detect_secrets.core.scan import _is_filtered_out
        from detect_secrets.util.code_snippet import get_code_snippet
        from detect_secrets.util.inject import call_function_with_arguments

        stripped = [line.rstrip() for line in lines]
        found = False
        for index, plugin_indexes in sorted(self.prefilter.marked(stripped).items()):
            number = index + 1
            line = stripped[index]
            snippet = get_code_snippet(lines=lines, line_number=number)
            # detect-secrets applies its line filters (an allowlist comment, what looks like
            # an indirect reference) before the plugins; they are pure, so asking them only
            # when a plugin found something gives the same answer, and the indirect-reference
            # regex is the slowest thing on a line. A known value on such a line still counts.
            quiet: bool | None = None
            for pi in sorted(plugin_indexes):
                plugin = self.plugins[pi]
                secrets = call_function_with_arguments(
                    plugin.analyze_line,
                    filename=ds_name,
                    line=line,
                    line_number=number,
                    context=snippet,
                )
                for secret in secrets or ():
                    value = secret.secret_value
                    if value is None:
                        continue
                    candidates.add((number, value))
                    if quiet is None:
                        quiet = _is_filtered_out(
                            required_filter_parameters=["line"],
                            filename=ds_name,
                            line=line,
                            context=snippet,
                        )
                    if quiet or _is_filtered_out(
                        required_filter_parameters=["secret"],
                        filename=secret.filename,
                        secret=value,
                        plugin=plugin,
                        line=line,
                    ) or _is_filtered_out(
                        required_filter_parameters=["context"],
                        filename=secret.filename,
                        secret=value,
                        plugin=plugin,
                        line=line,
                        context=snippet,
                    ):
                        continue
                    reported.add((number, secret.type, value))
                    found = True
        return found


def _plain_candidates(text: str) -> set[str]:
    """Candidates where no plugin looks: assignment values, words (and words without the
    punctuation around them), long base64-alphabet tokens (and a path's or URL's segments)."""
    values: set[str] = set()
    for raw in _ASSIGN_RE.findall(text):
        values.update(_assignment_values(raw))
    words = set(_WORD_RE.findall(text))
    values |= words
    values.update(w.strip(_WORD_EDGES) for w in words)
    tokens = set(_TOKEN_RE.findall(text))
    values |= tokens
    for token in tokens:
        if "/" in token or "+" in token:
            values.update(p for p in _SEGMENT_RE.split(token) if len(p) >= MIN_TOKEN_CHARS)
    values.discard("")
    return values


def _assignment_values(raw: str) -> list[str]:
    """The value of ``KEY=raw`` as an env file, a shell or YAML would read it: quotes removed,
    an unquoted trailing ``# comment`` dropped. The raw text is tried too."""
    out = [raw]
    if len(raw) >= 2 and raw[0] in "'\"" and raw[-1] == raw[0]:
        out.append(raw[1:-1])
    elif raw[0] in "'\"":
        end = raw.find(raw[0], 1)
        if end > 0:
            out.append(raw[1:end])
    else:
        cut = raw.find(" #")
        if cut > 0:
            out.append(raw[:cut].rstrip())
    return out


# --- the process pool -----------------------------------------------------------------------

_worker: _Scanner | None = None
_worker_settings = contextlib.ExitStack()


def _init_worker(key: bytes | None, known: Mapping[str, tuple[str, ...]]) -> None:
    global _worker
    from detect_secrets.settings import default_settings

    _quiet_detect_secrets()
    # the worker keeps detect-secrets' default settings for its lifetime
    _worker_settings.enter_context(_settings(default_settings))
    _worker = _Scanner(key, known)


def _scan_batch(batch: list[_Target], max_bytes: int) -> list[tuple[list[Hit], Skipped | None]]:
    assert _worker is not None
    return [_worker.scan_file(t, max_bytes) for t in batch]


@contextlib.contextmanager
def _settings(default_settings: Any) -> Iterator[None]:
    """detect-secrets' default plugins and filters, less ``is_invalid_file``: that filter
    checks the name exists relative to the working directory, and detect-secrets is given the
    name relative to the scanned root (its file-type, lock-file and swagger filters read it);
    the file has been read already."""
    from detect_secrets.settings import get_settings

    with default_settings():
        get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")
        yield


def _quiet_detect_secrets() -> None:
    # detect-secrets logs each file it opens and each find it skips; keyshift's log stays
    # keyshift's (and a future version's message might carry more than a file name)
    import logging

    logging.getLogger("detect-secrets").setLevel(logging.ERROR)
    logging.getLogger("detect_secrets").setLevel(logging.ERROR)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _normalise_known(known: Mapping[str, str | tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {fp: (ids,) if isinstance(ids, str) else tuple(ids) for fp, ids in known.items()}


def scan(
    paths: Iterable[Path | str],
    known: Mapping[str, str | tuple[str, ...]],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    workers: int | None = None,
    key: bytes | None = None,
) -> ScanResult:
    """Scan files and directory trees for secrets in plain text.

    ``known`` maps a fingerprint to the credential id (or ids: equal values) it belongs to.
    ``key`` is the installation key the fingerprints were made with (by default keyshift's
    own, from the keyring; it is not read at all when ``known`` is empty). ``workers``: the
    process pool's width (default: the CPUs this process may use; 1 scans in this process).
    """
    walk = _Walk(max_bytes=max_file_bytes)
    for path in paths:
        walk.root(Path(path))
    known_map = _normalise_known(known)
    if known_map and key is None:
        from console.fingerprint import installation_key

        key = installation_key()
    width = workers if workers is not None else _default_workers()
    outcomes = _run(walk.targets, key, known_map, max_file_bytes, width)
    hits: list[Hit] = []
    skipped = list(walk.skipped)
    scanned = 0
    for file_hits, skip in outcomes:
        if skip is not None:
            skipped.append(skip)
        else:
            scanned += 1
            hits.extend(file_hits)
    return ScanResult(
        hits=tuple(sorted(hits)),
        scanned=scanned,
        skipped=tuple(sorted(skipped)),
        ignored=walk.ignored,
    )


def _run(
    targets: list[_Target],
    key: bytes | None,
    known: dict[str, tuple[str, ...]],
    max_bytes: int,
    width: int,
) -> list[tuple[list[Hit], Skipped | None]]:
    # import detect-secrets here, before a fork, so each worker does not import it again
    from detect_secrets.settings import default_settings

    if width <= 1 or len(targets) < 32:
        _quiet_detect_secrets()
        with _settings(default_settings):
            scanner = _Scanner(key, known)
            return [scanner.scan_file(t, max_bytes) for t in targets]
    # about eight batches per worker: large enough to amortise the pipe, small enough to keep
    # both workers busy to the end
    size = max(1, min(64, len(targets) // (width * 8)))
    batches = [targets[i : i + size] for i in range(0, len(targets), size)]
    methods = multiprocessing.get_all_start_methods()
    # fork: the workers inherit detect-secrets already imported, and the key stays in memory
    # without crossing a pipe
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    out: list[tuple[list[Hit], Skipped | None]] = []
    with ProcessPoolExecutor(
        max_workers=width, mp_context=context, initializer=_init_worker, initargs=(key, known)
    ) as pool:
        for result in pool.map(_scan_batch, batches, [max_bytes] * len(batches)):
            out.extend(result)
    return out


# --- the inventory's workspaces -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workspace:
    """A path to scan for an agent: its workspace directory, or one of its env files (which
    is scanned even where an ignore file would hide it, and may lie outside the directory)."""

    agent: str
    path: Path


def inventory_workspaces(loaded: Any) -> list[Workspace]:
    """Every workspace identity's directory and env files, resolved against the inventory's
    directory, in inventory order, each path once."""
    from console.inventory import WorkspaceIdentity

    out: list[Workspace] = []
    seen: set[Path] = set()
    for agent in loaded.inventory.agents:
        for ident in agent.identities:
            if not isinstance(ident, WorkspaceIdentity):
                continue
            root = loaded.resolve_path(ident.path)
            for path in (root, *((root / f).resolve() for f in ident.env_files)):
                if path not in seen:
                    seen.add(path)
                    out.append(Workspace(agent.name, path))
    return out


def agent_of(file: str, workspaces: Sequence[Workspace]) -> str | None:
    """The agent whose workspace (or env file) holds ``file``: the deepest one that does."""
    path = Path(file).resolve()
    best: tuple[int, str] | None = None
    for ws in workspaces:
        if path == ws.path or path.is_relative_to(ws.path):
            depth = len(ws.path.parts)
            if best is None or depth > best[0]:
                best = (depth, ws.agent)
    return best[1] if best else None
