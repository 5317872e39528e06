"""Safe YAML for the inventory: plain data plus the position of every field, or a ConfigError.

PyYAML's ``safe_load`` loses positions, keeps the last of two duplicate keys silently, and
expands aliases without limit (the "billion laughs"). So we only *compose* (SafeLoader, which
shares an aliased node instead of copying it) and build Python data from the node graph
ourselves, with:

- a budget on nodes visited, so an alias bomb fails after a bounded amount of work;
- a depth limit and cycle detection (an anchor may be aliased inside itself);
- duplicate keys refused, mapping keys taken as their literal text (so ``on:`` stays "on");
- only the standard scalar tags (null, bool, int, float, str, timestamp) and plain lists and
  mappings; any other tag (``!!python/object``, ``!!binary``, ``!custom``) is refused;
- ``<<`` merge keys honoured (explicit keys win, earlier merged mappings win over later ones).

Every problem is a ConfigError with ``file:line:col`` (1-based) and, where known, a field path.
"""

from __future__ import annotations

import bisect
import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from console import secretlike
from console.errors import ConfigError

MAX_BYTES = 4 * 1024 * 1024
NODE_BUDGET = 200_000
MAX_DEPTH = 64

_STD = "tag:yaml.org,2002:"
NULL, BOOL, INT, FLOAT, STR, TIMESTAMP = (
    _STD + t for t in ("null", "bool", "int", "float", "str", "timestamp")
)
SEQ, MAP, MERGE, VALUE = (_STD + t for t in ("seq", "map", "merge", "value"))

Path_ = tuple[str | int, ...]
_INVALID = object()
Pos = tuple[int, int]


@dataclass(frozen=True)
class ScalarAt:
    """One scalar as written (its raw text), where it is, and whether it is a mapping key."""

    path: Path_
    text: str
    line: int
    column: int
    is_key: bool
    is_null: bool


@dataclass
class Document:
    data: Any
    text: str
    values: dict[Path_, Pos] = field(default_factory=dict)  # path -> position of its value
    keys: dict[Path_, Pos] = field(default_factory=dict)  # path -> position of its key
    scalars: list[ScalarAt] = field(default_factory=list)  # each scalar node once
    spans: list[tuple[int, int]] = field(default_factory=list)  # scalar [start, end) indexes

    def inside_scalar(self, index: int) -> bool:
        """Whether a character index of the text falls inside some scalar (key or value)."""
        i = bisect.bisect_right(self.spans, (index, float("inf"))) - 1
        return i >= 0 and self.spans[i][0] <= index < self.spans[i][1]


def show_key(key: str) -> str:
    """A mapping key fit for a message: one that looks like a secret is not repeated."""
    return "<secret-like key>" if secretlike.looks_like_secret(key) else key


def format_path(path: Path_) -> str:
    """``("agents", 3, "identities", 0, "source")`` -> ``agents[3].identities[0].source``."""
    out = ""
    for part in path:
        if isinstance(part, str):
            part = show_key(part)
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(c.isalnum() or c in "_-" for c in part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _pos(node: Node) -> Pos:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


# --- reading ------------------------------------------------------------------------------


def read_text(path: Path, display: str) -> str:
    """The file's text, or a ConfigError for missing, directory, unreadable, huge or non-UTF-8."""
    # Errors are raised outside the except blocks so no low-level exception rides along as
    # __context__ (tracebacks and error reports stay about the inventory).
    hint = "pass --inventory FILE, or run keyshift where sample_inventory.yaml is"
    error: ConfigError | None = None
    data = b""
    try:
        if path.is_dir():
            raise IsADirectoryError(path)
        if path.exists() and not path.is_file():
            # a FIFO, socket or device: reading it could block forever or never end
            error = ConfigError(
                "is not a regular file (a pipe, socket or device)", file=display, hint=hint
            )
            raise error
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        error = ConfigError("no such file", file=display, hint=hint)
    except IsADirectoryError:
        error = ConfigError("is a directory, not an inventory file", file=display, hint=hint)
    except PermissionError:
        error = ConfigError("permission denied", file=display, hint="check the file's mode")
    except ConfigError:
        pass
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL in the name
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        error = ConfigError(f"cannot read the file ({reason})", file=display, hint=hint)
    if error is not None:
        raise error
    return decode(data, display)


def decode(data: bytes, display: str) -> str:
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB",
            file=display,
            hint="an inventory is a hand-written file; is this the right one?",
        )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        off = exc.start
    # raised outside the except block, so the UnicodeDecodeError is not chained
    line_start = data.rfind(b"\n", 0, off) + 1
    line = data.count(b"\n", 0, off) + 1
    column = len(data[line_start:off].decode("utf-8", "replace")) + 1
    raise ConfigError(
        f"not valid UTF-8: byte 0x{data[off]:02x} at byte offset {off}",
        file=display,
        line=line,
        column=column,
        hint="save the file as UTF-8",
    )


# --- composing ----------------------------------------------------------------------------

_SYNTAX_HINTS = [
    (
        "cannot start any token",
        "indent with spaces, not tabs, and quote values that start "
        "with a special character such as @, `, % or |",
    ),
    (
        "mapping values are not allowed",
        "quote a value that contains ': ', or fix the indentation of the line",
    ),
    ("expected <block end>", "check the indentation: items of one list or mapping line up"),
    ("did not find expected '-'", "check the indentation: items of one list line up"),
    ("did not find expected key", "check the indentation: keys of one mapping line up"),
    ("could not find expected ':'", "a key needs a colon after it; check quoting and indentation"),
    ("found unexpected end of stream", "a quote or bracket is not closed"),
    ("expected a single document", "put everything in one document (remove the extra ---)"),
    ("found undefined alias", "define the anchor (&name) before using the alias (*name)"),
]


def _syntax_error(exc: yaml.YAMLError, text: str, display: str) -> ConfigError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.problem.startswith("but "):
            problem = f"{exc.context}, {exc.problem}"  # "expected X, but found Y"
            context = ""
        else:
            context = f" ({exc.context})" if exc.context and exc.problem else ""
        hint = next((h for key, h in _SYNTAX_HINTS if key in problem), None)
        return ConfigError(
            f"YAML syntax error: {problem}{context}",
            file=display,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint=hint,
        )
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml reports a byte offset, PyYAML a character one: find the character ourselves
        found = yaml.reader.Reader.NON_PRINTABLE.search(text)
        pos = found.start() if found else 0
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        what = f"U+{ord(found.group()):04X}" if found else "character"
        return ConfigError(
            f"control character {what} is not allowed in YAML",
            file=display,
            line=line,
            column=column,
            hint="remove it; only printable characters, tabs and newlines are allowed",
        )
    return ConfigError(f"YAML error: {type(exc).__name__}", file=display)


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


# libyaml (C) composes ~5x faster than pure Python; both give the same nodes, tags and marks.
_CLoader = getattr(yaml, "CSafeLoader", None)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses deep nesting before Python's recursion limit does."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_depth(text: str) -> None:
    """Refuse deep nesting from the event stream (libyaml's parser keeps its own stack, so this
    pass cannot overflow), before the recursive composer sees the document."""
    depth = 0
    for event in yaml.parse(text, Loader=_CLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep(event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _compose(text: str) -> Node | None:
    if _CLoader is not None:
        _check_depth(text)
        return yaml.compose(text, Loader=_CLoader)
    loader = _Loader(text)  # the reader checks for control characters right here
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def compose(text: str, display: str) -> Node | None:
    error: ConfigError
    try:
        return _compose(text)
    except yaml.YAMLError as exc:
        error = _syntax_error(exc, text, display)
    except _TooDeep as exc:
        error = ConfigError(
            f"nested more than {MAX_DEPTH} levels deep",
            file=display,
            line=exc.mark.line + 1,
            column=exc.mark.column + 1,
            hint="an inventory needs only a few levels of nesting",
        )
    raise error  # outside the except blocks: PyYAML's exception is not chained


# --- building data from nodes -------------------------------------------------------------


class _Builder:
    def __init__(self, display: str, doc: Document, budget: int, max_depth: int) -> None:
        self.display = display
        self.doc = doc
        self.budget = budget
        self.max_depth = max_depth
        self.visited = 0
        self.on_stack: set[int] = set()
        self.seen_scalars: set[int] = set()
        self.constructor = SafeConstructor()

    def error(self, message: str, node: Node, path: Path_, hint: str | None = None) -> ConfigError:
        line, column = _pos(node)
        return ConfigError(
            message,
            file=self.display,
            line=line,
            column=column,
            field=format_path(path) or None,
            hint=hint,
        )

    def build(self, node: Node, path: Path_, depth: int) -> Any:
        self.visited += 1
        if self.visited > self.budget:
            raise self.error(
                f"aliases expand this document past {self.budget:,} nodes (an alias bomb?)",
                node,
                path,
                hint="an inventory never needs aliases nested this deep; write the values out",
            )
        if depth > self.max_depth:
            raise self.error(
                f"nested more than {self.max_depth} levels deep",
                node,
                path,
                hint="an inventory needs only a few levels of nesting",
            )
        self.doc.values[path] = _pos(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path, is_key=False)
        if id(node) in self.on_stack:
            raise self.error(
                "an alias refers to a list or mapping that contains it (a cycle)",
                node,
                path,
                hint="YAML aliases must not point at their own parent",
            )
        self.on_stack.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != SEQ:
                    raise self._bad_tag(node, path)
                return [
                    self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)
                ]
            if isinstance(node, MappingNode):
                if node.tag != MAP:
                    raise self._bad_tag(node, path)
                return self.mapping(node, path, depth)
            raise self.error("unsupported YAML node", node, path)
        finally:
            self.on_stack.discard(id(node))

    def _bad_tag(self, node: Node, path: Path_) -> ConfigError:
        return self.error(
            f"YAML tag '{_tag_name(node.tag)}' is not allowed in an inventory",
            node,
            path,
            hint="use plain strings, numbers, booleans, dates, lists and mappings; no tags",
        )

    def mapping(self, node: MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        explicit: dict[str, Any] = {}
        first_seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == MERGE:
                self._merge(value_node, path, depth, merged)
                continue
            key = self.key(key_node, path)
            if key in first_seen:
                line, _ = _pos(first_seen[key])
                raise self.error(
                    f"duplicate key '{show_key(key)}' (first given on line {line})",
                    key_node,
                    (*path, key),
                    hint="YAML would silently keep only the last one; remove or rename one",
                )
            first_seen[key] = key_node
            self.doc.keys[(*path, key)] = _pos(key_node)
            explicit[key] = self.build(value_node, (*path, key), depth + 1)
        merged.update(explicit)
        return merged

    def _merge(self, value_node: Node, path: Path_, depth: int, into: dict[str, Any]) -> None:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        here = self.doc.values.get(path)
        for src in sources:
            if not isinstance(src, MappingNode):
                raise self.error(
                    "'<<' can only merge mappings",
                    src,
                    path,
                    hint="write '<<: *anchor' where the anchor names a mapping",
                )
            built = self.build(src, path, depth + 1)
            for k, v in built.items():
                into.setdefault(k, v)  # the first merged mapping wins, as YAML specifies
        if here is not None:
            self.doc.values[path] = here

    def key(self, node: Node, path: Path_) -> str:
        self.visited += 1
        if not isinstance(node, ScalarNode):
            raise self.error("mapping keys must be plain words, not lists or mappings", node, path)
        if node.tag not in (STR, NULL, BOOL, INT, FLOAT, TIMESTAMP, VALUE):
            raise self._bad_tag(node, path)
        if node.tag == NULL and node.value in ("", "~"):
            raise self.error(
                "a mapping key is empty",
                node,
                path,
                hint="every entry needs a name before its colon",
            )
        self._record(node, path, is_key=True)
        return node.value  # the literal text: "on", "yes", "1" stay strings

    def _record(self, node: ScalarNode, path: Path_, is_key: bool) -> None:
        if id(node) in self.seen_scalars:
            return
        self.seen_scalars.add(id(node))
        line, column = _pos(node)
        self.doc.scalars.append(
            ScalarAt(path, node.value, line, column, is_key, node.tag == NULL and not is_key)
        )
        self.doc.spans.append(
            (node.start_mark.index, max(node.end_mark.index, node.start_mark.index + 1))
        )

    def scalar(self, node: ScalarNode, path: Path_, is_key: bool) -> Any:
        tag = node.tag
        c = self.constructor
        try:
            if tag in (STR, VALUE, MERGE):
                value: Any = node.value
            elif tag == NULL:
                value = None
            elif tag == BOOL:
                value = c.construct_yaml_bool(node)
            elif tag == INT:
                value = c.construct_yaml_int(node)
            elif tag == FLOAT:
                value = c.construct_yaml_float(node)
            elif tag == TIMESTAMP:
                value = c.construct_yaml_timestamp(node)
            else:
                raise self._bad_tag(node, path)
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError):
            value = _INVALID
        if value is _INVALID:
            message = {
                INT: "not a valid whole number",
                FLOAT: "not a valid number",
                BOOL: "not a valid boolean (true or false)",
                TIMESTAMP: "not a valid date (YYYY-MM-DD) or date-time",
            }.get(tag, "not a valid value")
            raise self.error(message, node, path, hint="quote it to keep it as a string")
        self._record(node, path, is_key)
        return value


def parse(
    text: str, display: str, *, budget: int = NODE_BUDGET, max_depth: int = MAX_DEPTH
) -> Document:
    """Compose ``text`` and build its data with positions; an empty document gives data None."""
    root = compose(text, display)
    doc = Document(data=None, text=text)
    if root is None:
        return doc
    builder = _Builder(display, doc, budget, max_depth)
    doc.data = builder.build(root, (), 0)
    doc.spans.sort()
    return doc
