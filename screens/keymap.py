"""The keymap file: ``keymap.yaml`` in keyshift's config dir (or ``keyshift tui --keymap``)
remaps any binding by its id (help, `?`, lists every id and the keys in force):

    creds.rotate: ctrl+r          # one key
    app.quit: q, ctrl+c           # several, comma-separated (or a YAML list)

Checked before the console starts, each problem with file:line:column and a fix: an id that
does not exist, a key Textual cannot name, a key that another binding of the same screen
already uses. A missing default file is no keymap; a missing --keymap file is an error.
"""

from __future__ import annotations

import difflib
import string
from pathlib import Path

from textual.keys import Keys, _character_to_key

from console import yamlsafe
from console.errors import ConfigError
from console.paths import config_dir
from screens import bindings

MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")
_NAMED = (
    {k.value for k in Keys}
    | {_character_to_key(c) for c in string.printable if c.strip()}
    | {"space"}
)
EXAMPLE = "creds.rotate: ctrl+r"


def default_path() -> Path:
    return config_dir() / "keymap.yaml"


def normalize(keys: str) -> list[str]:
    """Keys as Textual names them: ``?`` is question_mark, ``ctrl+?`` ctrl+question_mark."""
    out = []
    for key in (k.strip() for k in keys.split(",")):
        *mods, base = key.split("+") if len(key) > 1 else [key]
        base = _character_to_key(base) if len(base) == 1 else base
        out.append("+".join([*mods, base]))
    return out


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a key Textual can bind, or None."""
    if not key:
        return "an empty key"
    *mods, base = key.split("+") if len(key) > 1 else [key]
    for mod in mods:
        if mod not in MODIFIERS:
            return f"{mod!r} is not a modifier ({', '.join(MODIFIERS)})"
    if mods == ["shift"] and len(base) == 1 and base.isalpha():
        # the terminal sends the capital letter; Textual never sees shift+a
        return f"write {base.upper()!r}, not {key!r}"
    if len(base) == 1 and base.isprintable():
        return None
    if base in _NAMED or (base.startswith("f") and base[1:].isdigit() and 1 <= int(base[1:]) <= 24):
        return None
    close = difflib.get_close_matches(base, sorted(_NAMED), n=1)
    return f"{base!r} is not a key name" + (f" (did you mean {close[0]!r}?)" if close else "")


def _problem(
    message: str, display: str, at: tuple[int, int], field: str | None, hint: str
) -> ConfigError:
    return ConfigError(message, file=display, line=at[0], column=at[1], field=field, hint=hint)


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """The keymap of ``path`` (or of the default file, when there is one), checked."""
    required = path is not None
    path = path or default_path()
    display = str(path)
    if not path.exists():
        if required:
            raise ConfigError(f"no keymap file {display}", hint=f"write one, e.g. {EXAMPLE}")
        return {}
    doc = yamlsafe.parse(yamlsafe.read_text(path, display), display)
    data = doc.data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _problem(
            "a keymap maps binding ids to keys",
            display,
            (1, 1),
            None,
            f"e.g. {EXAMPLE}",
        )
    known = bindings.known_ids()
    keymap: dict[str, str] = {}
    where: dict[str, tuple[int, int]] = {}
    for binding_id, keys in data.items():
        line, column = doc.keys.get((binding_id,), (1, 1))
        where[binding_id] = (line, column)
        if binding_id not in known:
            close = difflib.get_close_matches(str(binding_id), sorted(known), n=1)
            raise _problem(
                f"unknown binding id {binding_id!r}",
                display,
                (line, column),
                str(binding_id),
                f"did you mean {close[0]}?" if close else "press ? in the console for ids",
            )
        vline, vcolumn = doc.values.get((binding_id,), (line, column))
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            keys = ",".join(keys)
        if not isinstance(keys, str) or not keys.strip():
            raise _problem(
                f"{binding_id} needs a key, or several separated by commas",
                display,
                (vline, vcolumn),
                str(binding_id),
                f"e.g. {EXAMPLE}",
            )
        for key in (k.strip() for k in keys.split(",")):
            problem = key_problem(key)
            if problem:
                raise _problem(
                    f"{binding_id}: {problem}",
                    display,
                    (vline, vcolumn),
                    str(binding_id),
                    "keys look like: r, R, ctrl+r, f5, enter, escape, space, question_mark",
                )
        keymap[binding_id] = ",".join(normalize(keys))
    _check_clashes(keymap, where, display)
    return keymap


def _check_clashes(keymap: dict[str, str], where: dict[str, tuple[int, int]], display: str) -> None:
    """A key the keymap gives a binding that another binding of the same screen (keyshift's,
    or Textual's own: the palette's ctrl+p, a table's arrows) already answers. Default keys
    a binding keeps are no news: a dialog's q shadows the app's by design."""
    defaults = {
        b.binding.id: set(normalize(b.binding.key))
        for scope in bindings.scopes().values()
        for b in scope
        if b.binding.id
    }

    def given(ident: str | None, key: str) -> bool:
        return ident is not None and ident in keymap and key not in defaults.get(ident, set())

    for scope, bound in bindings.scopes().items():
        owner: dict[str, str | None] = {}
        names: dict[str, str] = {}
        for item in bound:
            ident = item.binding.id
            keys = keymap.get(ident) if ident else None
            for key in normalize(keys or item.binding.key):
                if key in owner:
                    other = owner[key]
                    if other != ident and (given(ident, key) or given(other, key)):
                        blame = ident if given(ident, key) else other
                        theirs = names[key] if blame == ident else _name(item)
                        raise _problem(
                            f"{key!r} is already {theirs} on the {scope} screen, so {blame} "
                            "would never fire",
                            display,
                            where[blame],  # type: ignore[index]
                            str(blame),
                            "pick a key no other binding of that screen uses",
                        )
                    continue
                owner[key] = ident
                names[key] = _name(item)


def _name(item: bindings.Bound) -> str:
    binding = item.binding
    return binding.id or f"Textual's {binding.action}"
