"""Load and check the inventory file: ``load_inventory(path) -> LoadedInventory``.

Phases, each stopping at its first failing phase (so the messages of a later phase never talk
about data an earlier phase already found broken):

1. read: missing file, directory, unreadable, too large, not UTF-8;
2. YAML (console/yamlsafe.py): syntax, tags, duplicate keys, alias bombs, cycles, depth;
3. literal secrets anywhere in the file, comments included (DESIGN.md invariant 3);
4. schema (console/inventory.py, pydantic): unknown keys, wrong types, missing fields;
5. references: names that must point at something declared elsewhere in the file.

Every problem is a ConfigError whose ``one_line()`` reads
``file:line:col: field.path: message (hint: ...)``. Within a phase all problems are collected
(up to MAX_PROBLEMS) and sorted by position; the raised error *is* the first one (its fields and
one_line), and ``InventoryError.problems`` holds them all for a caller that wants the full list.
No message ever contains a secret value: secret problems name only the field and position.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from console import secretlike, yamlsafe
from console.errors import ConfigError, NotFoundError
from console.inventory import (
    REF_FORMS,
    Agent,
    AwsIdentity,
    DeclaredCredential,
    Inventory,
    KeyringIdentity,
    Source,
    VaultIdentity,
    issuer_parts,
    target_fields,
)
from console.yamlsafe import Path_, format_path

DEFAULT_INVENTORY = "sample_inventory.yaml"
MAX_PROBLEMS = 20

VAULT_TYPES = ("vault", "openbao")
_SECRET_HINT = (
    "store it with `keyshift secret set <service>/<name>` and write keyring:<service>/<name> "
    "here (on a server: env:<NAME>, file:<path> or credential:<NAME>); sandbox values are "
    "generated at seed time"
)
# Vault policies that exist without being written (so identities may name them freely).
BUILTIN_VAULT_POLICIES = frozenset({"default", "root"})


class InventoryError(ConfigError):
    """A ConfigError for the first problem found, carrying every problem of its phase in order."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(
            first.message,
            file=first.file,
            line=first.line,
            column=first.column,
            field=first.field,
            hint=first.hint,
        )
        self.problems: tuple[ConfigError, ...] = tuple(problems)

    def report(self) -> str:
        """Every problem, one per line, in file order."""
        return "\n".join(p.one_line() for p in self.problems)


# --- value keys ---------------------------------------------------------------------------
# ``same_value_as`` (and the right-hand side of ``sandbox.declared_values``) names another seeded
# value by its key; the scheme is the seeder's (console/sandbox/seeding.py):
#   vault:<mount>/<path>        a KV v2 secret's primary value (its first ``keys`` entry)
#   vault:<mount>/<path>#<key>  another key of that secret
#   aws:<name>                  sandbox.aws_secrets
#   ssm:<name>                  sandbox.aws_parameters
#   keyring:<service>/<name>    sandbox.keyring_entries
#   declared:<name>             a declared credential listed in sandbox.declared_values
# In declared_values a bare declared name means declared:<name>.
VALUE_KEY_FORMATS = (
    "vault:<mount>/<path>[#key]",
    "aws:<name>",
    "ssm:<name>",
    "keyring:<service>/<name>",
    "declared:<name>",
)


def vault_value_key(mount: str, path: str, key: str | None = None, primary: str = "value") -> str:
    base = f"vault:{mount}/{path}"
    return base if key is None or key == primary else f"{base}#{key}"


def value_keys(inventory: Inventory) -> dict[str, tuple[Path_, str | None]]:
    """Every seeded value's key -> (field path of its entry, the key it shares a value with)."""
    out: dict[str, tuple[Path_, str | None]] = {}
    sb = inventory.sandbox
    if sb is None:
        return out
    for i, v in enumerate(sb.vault_secrets):
        path: Path_ = ("sandbox", "vault_secrets", i)
        primary = v.keys[0] if v.keys else "value"
        out.setdefault(vault_value_key(v.mount, v.path), (path, v.same_value_as))
        for extra in v.keys[1:]:
            out.setdefault(vault_value_key(v.mount, v.path, extra, primary), (path, None))
    for i, a in enumerate(sb.aws_secrets):
        out.setdefault(f"aws:{a.name}", (("sandbox", "aws_secrets", i), a.same_value_as))
    for i, p in enumerate(sb.aws_parameters):
        out.setdefault(f"ssm:{p.name}", (("sandbox", "aws_parameters", i), p.same_value_as))
    for i, k in enumerate(sb.keyring_entries):
        out.setdefault(
            f"keyring:{k.service}/{k.name}", (("sandbox", "keyring_entries", i), k.same_value_as)
        )
    for name, shares in sb.declared_values.items():
        target = None if shares is None else shares if ":" in shares else f"declared:{shares}"
        out.setdefault(f"declared:{name}", (("sandbox", "declared_values", name), target))
    return out


# --- the loaded inventory -----------------------------------------------------------------


@dataclass
class LoadedInventory:
    """A validated inventory, where it came from, and lookups by name."""

    inventory: Inventory
    path: Path  # resolved path of the file
    base_dir: Path  # its directory: relative workspace and env-file paths start here
    display: str = ""  # the path as the user gave it, used in messages
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict, repr=False)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict, repr=False)
    agents_by_name: dict[str, Agent] = field(init=False, repr=False)
    sources_by_name: dict[str, Source] = field(init=False, repr=False)
    credentials_by_name: dict[str, DeclaredCredential] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        inv = self.inventory
        self.agents_by_name = {a.name: a for a in inv.agents}
        self.sources_by_name = {s.name: s for s in inv.sources}
        self.credentials_by_name = {c.name: c for c in inv.credentials}
        if not self.display:
            self.display = str(self.path)

    # lookups -- NotFoundError (exit 3) names what exists
    def agent(self, name: str) -> Agent:
        return _lookup(self.agents_by_name, name, "agent")

    def source(self, name: str) -> Source:
        return _lookup(self.sources_by_name, name, "source")

    def credential(self, name: str) -> DeclaredCredential:
        """A declared credential (the top-level ``credentials:`` list) by name."""
        return _lookup(self.credentials_by_name, name, "declared credential")

    def sources_of_type(self, *types_: str) -> list[Source]:
        return [s for s in self.inventory.sources if s.type in types_]

    def credentials_of_agent(self, agent: str) -> list[DeclaredCredential]:
        return [c for c in self.inventory.credentials if agent in c.agents]

    @property
    def environments(self) -> list[str]:
        return sorted({str(a.environment) for a in self.inventory.agents})

    def resolve_path(self, relative: str | Path) -> Path:
        """A workspace or env-file path from the inventory, relative to the inventory's dir."""
        return (self.base_dir / Path(relative)).resolve()

    def value_root(self, key: str) -> str:
        """Follow ``same_value_as`` from a value key (VALUE_KEY_FORMATS) to the one it shares."""
        keys = value_keys(self.inventory)
        seen = {key}
        while (entry := keys.get(key)) is not None and entry[1] is not None:
            key = entry[1]
            if key in seen:  # cannot happen after validation; kept so this never loops
                break
            seen.add(key)
        return key

    # positions, for other modules that want to report a problem in the file
    def position(self, path: Path_) -> tuple[int, int] | None:
        return _nearest(self.values, path)

    def location(self, path: Path_) -> str:
        pos = self.position(path)
        return f"{self.display}:{pos[0]}:{pos[1]}" if pos else self.display

    def error(self, path: Path_, message: str, hint: str | None = None) -> ConfigError:
        """A ConfigError pointing at ``path`` in this file."""
        pos = self.position(path)
        return ConfigError(
            message,
            file=self.display,
            line=pos[0] if pos else None,
            column=pos[1] if pos else None,
            field=format_path(path) or None,
            hint=hint,
        )


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else (
                f"known: {', '.join(sorted(table))}" if table else f"the inventory has no {what}s"
            )
        )
        raise NotFoundError(f"unknown {what} {name!r}", hint=hint) from None


def _nearest(table: dict[Path_, tuple[int, int]], path: Path_) -> tuple[int, int] | None:
    for n in range(len(path), -1, -1):
        if path[:n] in table:
            return table[path[:n]]
    return None


# --- loading ------------------------------------------------------------------------------


def load_inventory(path: str | Path | None = None) -> LoadedInventory:
    """Read, parse and check an inventory file (default: ./sample_inventory.yaml).

    Raises ConfigError (exit code 2) for anything wrong, never another exception type.
    """
    display = str(path) if path is not None else DEFAULT_INVENTORY
    file = Path(display)
    text = yamlsafe.read_text(file, display)
    try:
        resolved = file.resolve()
    except (ValueError, OSError):  # a symlink loop, ...: the file was readable, so keep going
        resolved = file.absolute()
    return _load(text, display, resolved)


def loads_inventory(
    text: str | bytes, *, file: str = "<inventory>", base_dir: str | Path | None = None
) -> LoadedInventory:
    """Like load_inventory, from text in memory; relative paths resolve against ``base_dir``."""
    if isinstance(text, bytes):
        text = yamlsafe.decode(text, file)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _load(text, file, (base / Path(file).name).resolve())


def _load(text: str, display: str, resolved: Path) -> LoadedInventory:
    doc = yamlsafe.parse(text, display)
    if doc.data is None:
        raise ConfigError(
            "the inventory is empty",
            file=display,
            line=1,
            column=1,
            hint="start from sample_inventory.yaml: it has agents:, sources:, policies:",
        )
    if not isinstance(doc.data, dict):
        line, column = doc.values.get((), (1, 1))
        raise ConfigError(
            f"the top level must be a mapping (agents:, sources:, ...), not {_describe(doc.data)}",
            file=display,
            line=line,
            column=column,
            hint="start from sample_inventory.yaml",
        )
    _raise(_secret_problems(doc, display))
    # Raised outside the except block, so the ValidationError (whose text quotes input values)
    # is not chained onto the error a person sees.
    inventory: Inventory | None = None
    try:
        inventory = Inventory.model_validate(doc.data)
    except ValidationError as exc:
        problems = _schema_problems(doc, exc, display) or [
            ConfigError("invalid inventory", file=display, line=1, column=1)
        ]
    else:
        problems = []
    _raise(problems)
    assert inventory is not None
    loaded = LoadedInventory(
        inventory=inventory,
        path=resolved,
        base_dir=resolved.parent,
        display=display,
        values=doc.values,
        keys=doc.keys,
    )
    _raise(_reference_problems(loaded))
    return loaded


def _raise(problems: list[ConfigError]) -> None:
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise InventoryError(problems[:MAX_PROBLEMS])


def _problem(
    display: str,
    pos: tuple[int, int] | None,
    path: Path_ | None,
    message: str,
    hint: str | None = None,
) -> ConfigError:
    return ConfigError(
        message,
        file=display,
        line=pos[0] if pos else None,
        column=pos[1] if pos else None,
        field=format_path(path) if path else None,
        hint=hint,
    )


# --- phase 3: literal secrets -------------------------------------------------------------


FIELD_MAPS = ("vars", "keys", "json_keys", "refs")
TARGET_FIELDS = ("key", "json_key", "var", "secret")
HOOK_FIELDS = ("header", "format")


def _secret_problems(doc: yamlsafe.Document, display: str) -> list[ConfigError]:
    problems: list[ConfigError] = []
    for s in doc.scalars:
        pos = (s.line, s.column)
        if s.is_key:
            hit = secretlike.looks_like_secret(s.text)
            if hit:
                problems.append(
                    _problem(
                        display,
                        pos,
                        s.path,
                        f"a key here looks like a literal secret ({hit.kind}); "
                        "secrets never go in the inventory",
                        _SECRET_HINT,
                    )
                )
            continue
        if s.is_null or secretlike.is_reference(s.text.strip()):
            continue
        hit = secretlike.looks_like_secret(s.text)
        key = next((p for p in reversed(s.path) if isinstance(p, str)), "")
        if hit:
            problems.append(
                _problem(
                    display,
                    pos,
                    s.path,
                    f"looks like a literal secret ({hit.kind}); secrets never go in the inventory",
                    _SECRET_HINT,
                )
            )
        elif (
            s.path
            and isinstance(s.path[-1], str)
            and secretlike.is_secret_key_name(key)
            and s.text.strip()
            # part -> field maps (vars, keys, json_keys) and a target's field (key, json_key,
            # var) name where a value goes, not the value itself
            and not (len(s.path) > 1 and s.path[-2] in FIELD_MAPS)
            and not (key in TARGET_FIELDS and {"targets", "delivered_to"} & set(map(str, s.path)))
            and not (key in HOOK_FIELDS and "verify" in map(str, s.path))
        ):
            problems.append(
                _problem(
                    display,
                    pos,
                    s.path,
                    "a field named like a secret holds a literal value; "
                    f"use a reference: {REF_FORMS}",
                    _SECRET_HINT,
                )
            )
        if len(problems) >= MAX_PROBLEMS:
            break
    # comments (text outside every scalar on a line with a '#')
    offset = 0
    for number, line in enumerate(doc.text.splitlines(keepends=True), start=1):
        if "#" not in line:  # everything but comments was scanned above, as scalars
            offset += len(line)
            continue
        for hit in secretlike.scan_text(line):
            if not doc.inside_scalar(offset + hit.offset):
                problems.append(
                    _problem(
                        display,
                        (number, hit.offset + 1),
                        None,
                        f"a comment looks like it holds a literal secret ({hit.kind})",
                        "remove it from the file (and rotate it: it may be in version control)",
                    )
                )
                break
        offset += len(line)
    return problems


# --- phase 4: schema ----------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, datetime | date):
        return "a date"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _concrete(data: Any, loc: Iterable[Any]) -> tuple[Path_, Any, bool]:
    """Map a pydantic loc onto the data: drop union tags; stop at '[key]' (a bad dict key)."""
    path: list[str | int] = []
    cur = data
    for part in loc:
        if part == "[key]":
            return tuple(path), cur, True
        in_dict = isinstance(cur, dict) and isinstance(part, str) and part in cur
        in_list = (
            isinstance(cur, list)
            and isinstance(part, int)
            and not isinstance(part, bool)
            and 0 <= part < len(cur)
        )
        if in_dict or in_list:
            path.append(part)
            cur = cur[part]
    return tuple(path), cur, False


def _pick_model(tp: Any, datum: Any) -> Any:
    """Unwrap Annotated/Optional/discriminated unions to the model the datum is meant as."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        models = [
            a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        others = [a for a in typing.get_args(tp) if a not in models and a is not type(None)]
        if len(models) == 1:
            return models[0]
        if isinstance(datum, dict):
            for m in models:
                ann = m.model_fields.get("type")
                if ann is not None and datum.get("type") in typing.get_args(ann.annotation):
                    return m
        if len(others) == 1:
            return _pick_model(others[0], datum)
        return None
    return tp


def _fields_at(data: Any, path: Path_) -> list[str] | None:
    tp: Any = Inventory
    cur = data
    for part in path:
        tp = _pick_model(tp, cur)
        if tp is None:
            return None
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            info = tp.model_fields.get(part)
            if info is None:
                return None
            tp = info.annotation
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict and isinstance(part, str):
            tp = typing.get_args(tp)[1]
        else:
            return None
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return None
    tp = _pick_model(tp, cur)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return None


_NAME_RULE = "use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"


def _schema_message(err: dict[str, Any], value: Any) -> tuple[str, str | None]:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = _describe(value)
    quote_hint = (
        "quote it to make it a string" if isinstance(value, bool | int | float | date) else None
    )
    short = (
        value
        if isinstance(value, str | int | float)
        and not isinstance(value, bool)
        and 0 < len(str(value)) <= 40
        else None
    )
    if kind == "string_type":
        return f"expected a string, got {got}", quote_hint
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}", None
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}", None
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}", None
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"expected a list, got {got}", "write '- item' lines, or [a, b]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value lines), got {got}", None
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        return (f"must be {expected}" + (f", not {short!r}" if short else f", got {got}"), None)
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        tag_text = f"{tag!r}" if isinstance(tag, str) and len(tag) <= 40 else "this type"
        return (f"unknown type {tag_text}; expected {ctx.get('expected_tags', '')}", None)
    if kind == "union_tag_not_found":
        return "missing required field 'type'", "say which kind of entry this is with type:"
    if kind == "string_pattern_mismatch":
        return "not a valid name", _NAME_RULE
    if kind == "string_too_short":
        return "must not be empty", None
    if kind == "string_too_long":
        return f"longer than {ctx.get('max_length')} characters", None
    if kind in ("too_short", "too_long"):
        return err.get("msg", "wrong number of items"), None
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}", None
    if kind.startswith("date") or kind.startswith("datetime"):
        return f"expected a date like 2025-01-31, got {got}", "write dates as YYYY-MM-DD"
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx.get("error") or err.get("msg", "invalid value"))
        return re.sub(r"^(Value|Assertion) error,\s*", "", msg), None
    return str(err.get("msg", "invalid value")), None


def _schema_problems(
    doc: yamlsafe.Document, exc: ValidationError, display: str
) -> list[ConfigError]:
    problems: list[ConfigError] = []
    seen: set[tuple[Path_, str]] = set()
    for err in exc.errors(include_url=False, include_input=False):
        path, value, at_key = _concrete(doc.data, err["loc"])
        kind = err["type"]
        hint: str | None = None
        if kind == "missing":
            name = err["loc"][-1] if err["loc"] else "?"
            message = f"missing required field '{name}'"
            pos = _nearest(doc.values, path)
        elif kind == "extra_forbidden":
            key = path[-1] if path else err["loc"][-1]
            message = f"unknown field '{yamlsafe.show_key(str(key))}'"
            allowed = _fields_at(doc.data, path[:-1]) or []
            close = difflib.get_close_matches(str(key), allowed, n=1)
            if close:
                hint = f"did you mean '{close[0]}'?"
            elif allowed:
                hint = "allowed here: " + ", ".join(allowed)
            pos = doc.keys.get(path) or _nearest(doc.values, path)
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            message, hint = _schema_message(err, value)
            if isinstance(value, dict) and "type" in value:
                path = (*path, "type")
            pos = _nearest(doc.values, path)
        elif at_key:
            message, hint = _schema_message(err, path[-1] if path else None)
            message = f"key {message[0].lower()}{message[1:]}" if message else message
            pos = doc.keys.get(path) or _nearest(doc.values, path)
        else:
            message, hint = _schema_message(err, value)
            pos = _nearest(doc.values, path)
        if (path, message) in seen:  # unions can report one mistake once per member
            continue
        seen.add((path, message))
        problems.append(_problem(display, pos, path, message, hint))
    return problems


# --- phase 5: references ------------------------------------------------------------------


def _reference_problems(loaded: LoadedInventory) -> list[ConfigError]:
    inv = loaded.inventory
    problems: list[ConfigError] = []

    def add(path: Path_, message: str, hint: str | None = None, at_key: bool = False) -> None:
        pos = loaded.keys.get(path) if at_key else None
        pos = pos or _nearest(loaded.values, path)
        problems.append(_problem(loaded.display, pos, path, message, hint))

    def unique(items: Iterable[tuple[Path_, str]], what: str) -> None:
        first: dict[str, Path_] = {}
        for path, name in items:
            if name in first:
                add(
                    path,
                    f"duplicate {what} '{name}' (also at {format_path(first[name])})",
                    "give each one its own name",
                )
            else:
                first[name] = path

    unique(((("agents", i, "name"), a.name) for i, a in enumerate(inv.agents)), "agent name")
    unique(((("sources", i, "name"), s.name) for i, s in enumerate(inv.sources)), "source name")
    unique(
        ((("credentials", i, "name"), c.name) for i, c in enumerate(inv.credentials)),
        "credential name",
    )

    sources = loaded.sources_by_name
    agents = loaded.agents_by_name
    source_list = ", ".join(sorted(sources)) or "none declared"

    def check_source(path: Path_, name: str, wanted: tuple[str, ...], needs: str) -> bool:
        src = sources.get(name)
        if src is None:
            close = difflib.get_close_matches(name, list(sources), n=1)
            add(
                path,
                f"unknown source '{name}'",
                f"did you mean '{close[0]}'?" if close else f"sources: {source_list}",
            )
            return False
        if src.type not in wanted:
            add(
                path,
                f"source '{name}' is of type {src.type}; {needs}",
                f"name a source of type {' or '.join(wanted)}",
            )
            return False
        return True

    sb = inv.sandbox
    sandbox_vault = sb.vault_source if sb else None
    sandbox_aws = sb.aws_source if sb else None
    policy_names = {p.name for p in sb.vault_policies} if sb else set()
    iam_user_names = {u.name for u in sb.iam_users} if sb else set()

    for i, agent in enumerate(inv.agents):
        for j, ident in enumerate(agent.identities):
            at: Path_ = ("agents", i, "identities", j)
            if isinstance(ident, VaultIdentity):
                ok = check_source(
                    (*at, "source"),
                    ident.source,
                    VAULT_TYPES,
                    f"a {ident.type} identity needs a vault or openbao source",
                )
                if ok and ident.source == sandbox_vault and policy_names:
                    for k, pol in enumerate(ident.policies):
                        if pol not in policy_names and pol not in BUILTIN_VAULT_POLICIES:
                            add(
                                (*at, "policies", k),
                                f"policy '{pol}' is not in sandbox.vault_policies",
                                "declare it under sandbox.vault_policies, or fix the name",
                            )
            elif isinstance(ident, AwsIdentity):
                # aws-iam-role: the AWS source resolves the role's own policies (a role not in
                # the account is named in the sync's errors, as a missing user is)
                ok = check_source(
                    (*at, "source"),
                    ident.source,
                    ("aws",),
                    f"an {ident.type} identity needs an aws source",
                )
                if (
                    ok
                    and ident.type == "aws-iam-user"
                    and ident.source == sandbox_aws
                    and iam_user_names
                    and ident.name not in iam_user_names
                ):
                    add(
                        (*at, "name"),
                        f"IAM user '{ident.name}' is not in sandbox.iam_users",
                        "declare it under sandbox.iam_users, or fix the name",
                    )
            elif isinstance(ident, KeyringIdentity):
                check_source(
                    (*at, "source"),
                    ident.source,
                    ("keyring",),
                    "a keyring identity needs a keyring source",
                )

    for i, cred in enumerate(inv.credentials):
        check_source(
            ("credentials", i, "source"),
            cred.source,
            ("declared",),
            "a declared credential needs a source of type declared",
        )
        for j, name in enumerate(cred.agents):
            if name not in agents:
                close = difflib.get_close_matches(name, list(agents), n=1)
                add(
                    ("credentials", i, "agents", j),
                    f"unknown agent '{name}'",
                    f"did you mean '{close[0]}'?" if close else "name an agent from agents:",
                )

    _rotation_problems(loaded, add, unique, check_source)
    if sb is not None:
        _sandbox_problems(loaded, add, unique, check_source)
    return problems


_TARGET_SOURCES = {
    "vault-kv": (VAULT_TYPES, "a vault-kv target needs a vault or openbao source"),
    "secretsmanager": (("aws",), "a secretsmanager target needs an aws source"),
    "ssm": (("aws",), "an ssm target needs an aws source"),
}
_ISSUER_SOURCES = {
    "vault-approle": (VAULT_TYPES, "a vault-approle issuer needs a vault or openbao source"),
    "vault-token": (VAULT_TYPES, "a vault-token issuer needs a vault or openbao source"),
    "aws-iam": (("aws",), "an aws-iam issuer needs an aws source"),
}


def target_place(target: Any) -> str:
    """Where a target delivers, as one comparable string (two rotations may not share one)."""
    if target.type == "vault-kv":
        return f"{target.source}:kv:{target.path.strip('/')}"
    if target.type == "secretsmanager":
        return f"{target.source}:secretsmanager:{target.region or ''}:{target.secret}"
    if target.type == "ssm":
        return f"{target.source}:ssm:{target.region or ''}:{target.parameter}"
    if target.type == "env-file":
        names = [target.var] if target.var else sorted((target.vars or {}).values())
        return f"env-file:{target.path}:{','.join(names)}"
    refs = [target.ref] if target.ref else sorted((target.refs or {}).values())
    return f"keyring:{','.join(refs)}"


def _rotation_problems(loaded: LoadedInventory, add: Any, unique: Any, check_source: Any) -> None:
    inv = loaded.inventory
    agents = loaded.agents_by_name
    unique(
        ((("providers", i, "name"), p.name) for i, p in enumerate(inv.providers)),
        "provider name",
    )
    unique(((("rotations", i, "name"), r.name) for i, r in enumerate(inv.rotations)), "rotation")
    places: dict[str, Path_] = {}

    def place(path: Path_, target: Any) -> None:
        where = target_place(target)
        if where in places:
            add(
                path,
                f"this target is also delivered to by {format_path(places[where])}",
                "one value has one issuer: declare it in one place",
            )
        else:
            places[where] = path

    def check_fields(path: Path_, target: Any, parts: tuple[str, ...]) -> None:
        fields = target_fields(target, parts)
        if target.type == "ssm" and len(parts) > 1:
            add(path, f"an SSM parameter holds one value; this issuer has {len(parts)} parts",
                "deliver each part to a store that holds several (vault-kv, secretsmanager "
                "with json_keys, env-file with vars)")
            return
        if not fields:
            plural = {"vault-kv": "keys", "secretsmanager": "json_keys",
                      "env-file": "vars", "keyring": "refs"}.get(target.type, "fields")
            add(path, f"the value has parts {', '.join(parts)}: say where each goes",
                f"give {plural}: {{{parts[0]}: ..., ...}}")
            return
        unknown = sorted(set(fields) - set(parts))
        missing = sorted(set(parts) - set(fields))
        if unknown:
            add(path, f"unknown part(s) {', '.join(unknown)}; the issuer's parts are "
                f"{', '.join(parts)}")
        elif missing and target.type in ("env-file", "keyring", "ssm"):
            add(path, f"part(s) {', '.join(missing)} go nowhere at this target",
                "map every part of the value")
        if len(set(fields.values())) != len(fields):
            add(path, "two parts are written to the same field", "give each part its own field")

    for i, cred in enumerate(inv.credentials):
        for j, target in enumerate(cred.delivered_to):
            at: Path_ = ("credentials", i, "delivered_to", j)
            check_fields(at, target, ("value",))
            place(at, target)

    for i, rot in enumerate(inv.rotations):
        at = ("rotations", i)
        issuer = rot.issuer
        if issuer.type in _ISSUER_SOURCES:
            wanted, needs = _ISSUER_SOURCES[issuer.type]
            check_source((*at, "issuer", "source"), issuer.source, wanted, needs)
        parts = issuer_parts(issuer)
        for j, target in enumerate(rot.targets):
            tat: Path_ = (*at, "targets", j)
            if target.type in _TARGET_SOURCES:
                wanted, needs = _TARGET_SOURCES[target.type]
                check_source((*tat, "source"), target.source, wanted, needs)
            check_fields(tat, target, parts)
            place(tat, target)
        for j, name in enumerate(rot.agents):
            if name not in agents:
                close = difflib.get_close_matches(name, list(agents), n=1)
                add((*at, "agents", j), f"unknown agent '{name}'",
                    f"did you mean '{close[0]}'?" if close else "name an agent from agents:")


def _sandbox_problems(loaded: LoadedInventory, add: Any, unique: Any, check_source: Any) -> None:
    sb = loaded.inventory.sandbox
    assert sb is not None
    for field_name, wanted, label in (
        ("vault_source", VAULT_TYPES, "a vault or openbao"),
        ("aws_source", ("aws",), "an aws"),
    ):
        name = getattr(sb, field_name)
        if name is None:
            continue
        path = ("sandbox", field_name)
        ok = check_source(path, name, wanted, f"sandbox.{field_name} needs {label} source")
        if ok and not getattr(loaded.sources_by_name[name], "sandbox", False):
            add(
                path,
                f"source '{name}' is not a sandbox source; seeding would write to it",
                f"set sandbox: true on source '{name}', or name a sandbox source",
            )

    unique(
        (
            (("sandbox", "vault_policies", i, "name"), p.name)
            for i, p in enumerate(sb.vault_policies)
        ),
        "vault policy name",
    )
    unique(
        (
            (("sandbox", "vault_secrets", i, "path"), vault_value_key(s.mount, s.path))
            for i, s in enumerate(sb.vault_secrets)
        ),
        "vault secret",
    )
    unique(
        ((("sandbox", "aws_secrets", i, "name"), s.name) for i, s in enumerate(sb.aws_secrets)),
        "AWS secret name",
    )
    unique(
        (
            (("sandbox", "aws_parameters", i, "name"), p.name)
            for i, p in enumerate(sb.aws_parameters)
        ),
        "SSM parameter name",
    )
    unique(
        ((("sandbox", "iam_users", i, "name"), u.name) for i, u in enumerate(sb.iam_users)),
        "IAM user name",
    )
    unique(
        (
            (("sandbox", "keyring_entries", i, "name"), f"{k.service}/{k.name}")
            for i, k in enumerate(sb.keyring_entries)
        ),
        "keyring entry",
    )

    _seed_issuer_problems(loaded, add)

    declared = loaded.credentials_by_name
    for name in sb.declared_values:
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            add(
                ("sandbox", "declared_values", name),
                f"unknown declared credential '{name}'",
                f"did you mean '{close[0]}'?" if close else "name one from credentials:",
                at_key=True,
            )

    keys = value_keys(loaded.inventory)
    formats = ", ".join(VALUE_KEY_FORMATS)
    for key, (path, target) in keys.items():
        if target is None:
            continue
        if key.startswith("declared:"):
            where, shown = path, str(sb.declared_values[str(path[-1])])  # as written
        else:
            where, shown = (*path, "same_value_as"), target
        if target == key:
            add(where, "an entry cannot share a value with itself")
        elif target not in keys:
            close = difflib.get_close_matches(target, list(keys), n=1)
            if target.startswith("declared:") and target[9:] in declared:
                add(
                    where,
                    f"'{shown}' gets no value at seed time, so there is none to share",
                    f"add '{target[9:]}: null' to sandbox.declared_values",
                )
            else:
                add(
                    where,
                    f"no seeded value '{shown}'",
                    f"did you mean '{close[0]}'?" if close else f"name one as {formats}",
                )
        elif _has_cycle(key, lambda k: keys[k][1] if k in keys else None):
            add(
                where,
                "values shared with same_value_as / declared_values form a cycle",
                "one entry of each group must get its own value",
            )


def _seed_issuer_problems(loaded: LoadedInventory, add: Any) -> None:
    """A seeded ``issuer`` must parse, and its source must read it (``issuer_tag``)."""
    from console.rotation.specs import parse_issuer_tag

    sb = loaded.inventory.sandbox
    assert sb is not None
    for section, source in (
        ("vault_secrets", sb.vault_source),
        ("aws_secrets", sb.aws_source),
        ("aws_parameters", sb.aws_source),
    ):
        for i, entry in enumerate(getattr(sb, section)):
            if entry.issuer is None:
                continue
            at: Path_ = ("sandbox", section, i, "issuer")
            try:
                parse_issuer_tag(entry.issuer)
            except ValueError as exc:
                add(at, f"{exc}".removeprefix("Value error, "),
                    "e.g. generated, provider:openai, password=provider:db;username=static")
                continue
            src = loaded.sources_by_name.get(source or "")
            if src is not None and not getattr(src, "issuer_tag", None):
                add(at, f"source '{source}' has no issuer_tag, so this would be ignored",
                    f"set issuer_tag: keyshift-issuer on source '{source}'")


def _has_cycle(start: str, step: Any) -> bool:
    seen = {start}
    cur = step(start)
    while cur is not None:
        if cur in seen:
            return True
        seen.add(cur)
        cur = step(cur)
    return False


# --- other YAML documents validated like the inventory (playbooks, drill scenarios) ---------


def raise_problems(problems: list[ConfigError]) -> None:
    """All of a document's problems at once, in file order; nothing when there are none."""
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise InventoryError(problems)


def validate_document(doc: yamlsafe.Document, display: str, model: type[Any], *, what: str,
                      default_name: str | None = None) -> Any:
    """A YAML mapping as ``model``: no literal secret in it, its schema problems with
    file:line:col and the model's own fields as hints; ``name`` from the file name when the
    document gives none."""
    raise_problems(_secret_problems(doc, display))
    data: dict[str, Any] = dict(doc.data)
    if "name" not in data and default_name is not None:
        data["name"] = default_name
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_rehint(p, doc, model) for p in _schema_problems(doc, exc, display)]
        raise_problems(problems or [ConfigError(f"invalid {what}", file=display, line=1,
                                                column=1)])
        raise  # unreachable: raise_problems raised


def _rehint(problem: ConfigError, doc: yamlsafe.Document, root: type[BaseModel]) -> ConfigError:
    """The schema messages suggest the inventory's fields for an unknown key; another
    document's (a playbook, a drill scenario) come from its own model."""
    if not problem.message.startswith("unknown field") or not problem.field:
        return problem
    key = problem.message.split("'")[1] if "'" in problem.message else ""
    parent = _model_fields_at(root, doc.data, _field_parent(problem.field))
    close = difflib.get_close_matches(key, parent, n=1)
    problem.hint = (
        f"did you mean '{close[0]}'?" if close
        else ("allowed here: " + ", ".join(parent) if parent else None)
    )
    return problem


def _field_parent(field: str) -> list[str]:
    # "selection.agnet" -> ["selection"]; list indexes ("manual_steps[0].txt") keep their name
    parts = [p.split("[")[0] for p in field.split(".")]
    return parts[:-1]


def _model_fields_at(root: type[BaseModel], data: Any, path: list[str]) -> list[str]:
    import typing

    tp: Any = root
    for part in path:
        info = tp.model_fields.get(part) if isinstance(tp, type) else None
        if info is None:
            return []
        tp = info.annotation
        for arg in (*typing.get_args(tp), tp):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                tp = arg
                break
            inner = [a for a in typing.get_args(arg) if isinstance(a, type)
                     and issubclass(a, BaseModel)]
            if inner:
                tp = inner[0]
                break
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []
