"""Deliver to an agent's env file (``VAR=value`` lines), replaced atomically.

The file is rewritten through a temporary file in the same directory and renamed over it,
so a reader sees the old file or the new one, never half of either; its mode (and owner) are
kept, and every other line is left as it was. Rotations of different variables of one file
(an agent's secret-id, token and key, rotated in parallel by a playbook) each read, change and
rename the whole file, so each holds an exclusive lock on the file's directory while it does:
without it, the last rename would drop the others' new values. An env file keeps no history:
consumers read the new value as soon as it is delivered, and the old one lives on only in the
run's memory, for a rollback in the same process.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from dotenv import dotenv_values

from rotators.base import CredentialInfo, Handle, PartPlan, RotatorError, RunContext, Value
from rotators.targets.common import matches

_LINE = r"^(?:export\s+)?{var}\s*=.*$"
_PLAIN = re.compile(r"^[A-Za-z0-9_\-.:/+=@~%^!,]*$")


def quote(value: str) -> str:
    """The value as it is written after ``VAR=``: bare when safe, else single-quoted."""
    if "\n" in value or "\r" in value:
        raise RotatorError("a value with a line break cannot go in an env file")
    if _PLAIN.match(value):
        return value
    if "'" in value:
        raise RotatorError("a value with both special characters and ' cannot go in an env file")
    return f"'{value}'"


def read_vars(path: Path) -> dict[str, str | None]:
    return dict(dotenv_values(path)) if path.is_file() else {}


@contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory itself: the file is replaced by rename, so a lock on
    the file would be on an inode the next writer no longer opens, and a lock file of its own
    would leave litter in the agent's workspace."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_vars(path: Path, values: Mapping[str, str | None]) -> None:
    """Set (or, for None, remove) variables in ``path``, leaving every other line alone.
    A new file is created 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _directory_locked(path.parent):
        _write_vars(path, values)


def _write_vars(path: Path, values: Mapping[str, str | None]) -> None:
    try:
        lines = path.read_text().splitlines()
        st = path.stat()
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        lines, mode, owner = [], 0o600, None
    for var, value in values.items():
        pattern = re.compile(_LINE.format(var=re.escape(var)))
        found = [i for i, line in enumerate(lines) if pattern.match(line)]
        if value is None:
            lines = [line for i, line in enumerate(lines) if i not in found]
        elif found:
            lines[found[0]] = f"{var}={quote(value)}"
            lines = [line for i, line in enumerate(lines) if i not in found[1:]]
        else:
            lines.append(f"{var}={quote(value)}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n" if lines else "")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner is not None and os.geteuid() == 0:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EnvFileTarget:
    role: ClassVar[str] = "target"
    name: ClassVar[str] = "env-file"
    stages: ClassVar[bool] = False

    def __init__(self, spec: Mapping[str, Any], fields: Mapping[str, str], ctx: RunContext):
        self.ctx = ctx
        self.relative = str(spec["path"])
        self.file = ctx.path(self.relative)
        self.fields = dict(fields)  # part -> variable

    def where(self) -> str:
        return f"{self.relative} ({', '.join(self.fields.values())})"

    def plan(self, cred: CredentialInfo) -> PartPlan:
        if self.file.exists() and not self.file.is_file():
            return PartPlan(refused=f"{self.relative} is not a regular file")
        if not self.file.parent.is_dir():
            return PartPlan(refused=f"the directory of {self.relative} does not exist")
        steps = [
            f"deliver: rewrite {self.where()} atomically (mode kept, other lines untouched); "
            "consumers that read the file get the new value from then on"
        ]
        return PartPlan(steps=steps, needs=[f"write access to {self.file.parent}"])

    def read(self) -> Value | None:
        try:
            current = read_vars(self.file)
        except OSError as exc:
            raise RotatorError(f"read {self.relative}: {exc.strerror}") from None
        value = {p: self.ctx.keep(current[v]) for p, v in self.fields.items() if current.get(v)}
        return value or None

    def deliver(self, value: Value) -> Handle:
        missing = set(self.fields) - set(value)
        if missing:
            raise RotatorError(f"deliver {self.relative}: no value for {', '.join(missing)}")
        try:
            write_vars(self.file, {v: value[p].reveal() for p, v in self.fields.items()})
        except OSError as exc:
            raise RotatorError(f"deliver {self.relative}: {exc.strerror}") from None
        return {}

    def read_delivered(self, handle: Handle) -> Value | None:
        return self.read()

    def find_delivered(self, expected: Mapping[str, str]) -> tuple[Handle, Value] | None:
        current = self.read()
        return ({}, current) if current and matches(self.ctx, current, expected) else None

    def read_previous(self, handle: Handle) -> Value | None:
        return None  # an env file keeps no history

    def promote(self, handle: Handle) -> None:
        return None  # live since deliver

    def retire(self, handle: Handle) -> None:
        return None  # the old value was overwritten at deliver

    def rollback(self, handle: Handle | None, old: Value | None) -> None:
        if old is None:
            raise RotatorError(
                f"cannot put the old value back in {self.relative}: it was not kept "
                "(the run that read it ended)"
            )
        try:
            write_vars(
                self.file,
                {v: (old[p].reveal() if p in old else None) for p, v in self.fields.items()},
            )
        except OSError as exc:
            raise RotatorError(f"rollback {self.relative}: {exc.strerror}") from None
