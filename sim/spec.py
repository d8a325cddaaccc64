"""Reading spec files: YAML into checked values, every error naming its file and field path.

The main assumption is that spec files are small (kilobytes) and read once, so clarity of
the error messages matters more than speed. A :class:`Node` wraps one mapping of a YAML
document together with where it came from; its accessors convert units to SI (via
:mod:`sim.units`), check types and ranges, and remember which keys were read so that
:meth:`Node.done` can reject unknown keys (a misspelt key must never be silently ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from . import units
from .errors import ConfigError

__all__ = ["Node", "load_yaml", "parse_yaml", "apply_overrides"]

_MISSING = object()


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that refuses a mapping with the same key twice (YAML lets the last
    one win silently)."""


def _mapping(loader, node, deep=False):
    seen: dict = {}
    for k_node, _ in node.value:
        k = loader.construct_object(k_node, deep=deep)
        try:
            hash(k)
        except TypeError:
            continue  # let the base constructor report an unhashable key
        if k in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {k!r} (first at line {seen[k]})",
                k_node.start_mark)
        seen[k] = k_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, *, file: str | None = None, field: str | None = None) -> Any:
    """YAML text to Python values, a duplicate key being an error.

    Raises
    ------
    ConfigError
        One line: where (line, column) and what is wrong.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"invalid YAML{where}: {problem}", file=file, field=field) from None


def load_yaml(path: str | Path) -> Node:
    """Load a YAML file whose top level is a mapping.

    Raises
    ------
    ConfigError
        If the file is missing, is not valid YAML, or its top level is not a mapping.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=str(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "save the file as UTF-8", file=str(path)) from None
    if "\x00" in text:
        raise ConfigError("not a text file (it contains NUL bytes)", file=str(path))
    data = parse_yaml(text, file=str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level must be a mapping, got {type(data).__name__}",
                          file=str(path))
    return Node(data, str(path), "")


def apply_overrides(data: dict, overrides: list[str] | None, *, file: str | None = None) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place.
    A part ``name[i]`` indexes an existing list (``params.tiers[1].oversubscription=7``).

    Raises
    ------
    ConfigError
        If an override is not of the form ``path=value``, or an index is not an existing
        list position.
    """
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form a.b.c=value", file=file)
        key, raw = item.split("=", 1)
        steps = _override_steps(key.strip(), file)
        cur: Any = data
        for i, (p, _) in enumerate(steps[:-1]):
            nxt = _override_get(cur, p, key, file)
            if not isinstance(nxt, list if steps[i + 1][1] else dict):
                if steps[i + 1][1] or isinstance(nxt, list):
                    what = "not a list" if steps[i + 1][1] else "a list: index it, name[i]"
                    raise ConfigError(f"override {key!r}: {p!r} is {what}",
                                      file=file, field=key)
                nxt = {}
                cur[p] = nxt
            cur = nxt
        last = steps[-1][0]
        if isinstance(last, int):
            _override_get(cur, last, key, file)  # the index must exist
        cur[last] = parse_yaml(raw, file=file, field=key) if raw.strip() else None
    return data


def _override_steps(key: str, file: str | None) -> list[tuple[Any, bool]]:
    """``a.b[1].c`` -> [('a', False), ('b', False), (1, True), ('c', False)]."""
    out: list[tuple[Any, bool]] = []
    for part in key.split("."):
        name, _, rest = part.partition("[")
        if name:
            out.append((name, False))
        while rest:
            idx, sep, rest = rest.partition("]")
            if not sep or not idx.isdigit() or (rest and not rest.startswith("[")):
                raise ConfigError(f"override path {key!r}: bad index in {part!r} "
                                  "(expected name[i])", file=file, field=key)
            out.append((int(idx), True))
            rest = rest[1:]
    if not out:
        raise ConfigError(f"override path {key!r} is empty", file=file)
    return out


def _override_get(cur: Any, p: Any, key: str, file: str | None) -> Any:
    if isinstance(p, int):
        if not isinstance(cur, list) or p >= len(cur):
            n = len(cur) if isinstance(cur, list) else 0
            raise ConfigError(f"override {key!r}: index {p} is outside the list of {n}",
                              file=file, field=key)
        return cur[p]
    return cur.get(p) if isinstance(cur, dict) else None


def _typename(v: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


class Node:
    """A mapping from a spec file, with the file name and the field path that leads to it.

    Parameters
    ----------
    data : dict
        The mapping.
    file : str
        The file it was read from.
    path : str
        Dotted field path of this mapping inside the file ("" for the top level).
    """

    def __init__(self, data: dict, file: str, path: str):
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {_typename(data)}", file=file,
                              field=path or None)
        self.data = data
        self.file = file
        self.path = path
        self._used: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def field(self, key: str) -> str:
        """Dotted path of ``key`` below this node."""
        return f"{self.path}.{key}" if self.path else str(key)

    def error(self, key: str | None, message: str) -> ConfigError:
        """A ConfigError for ``key`` (or this node itself when key is None)."""
        return ConfigError(message, file=self.file,
                           field=self.field(key) if key is not None else (self.path or None))

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def keys(self) -> list[str]:
        return list(self.data)

    def mark_used(self, *keys: str) -> None:
        """Count ``keys`` as read, so that :meth:`done` accepts them without a reader.

        Parameters
        ----------
        *keys : str
            Field names of this mapping (present or not).
        """
        self._used.update(keys)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        """The raw value of ``key``; a ConfigError if it is missing and has no default."""
        self._used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.error(key, "required field is missing")
            return default
        return self.data[key]

    # ------------------------------------------------------------- typed getters
    def quantity(self, key: str, kind: str, default: Any = _MISSING, *, allow_zero: bool = False
                 ) -> float:
        """A quantity with a unit, converted to SI (see :func:`sim.units.parse`)."""
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        return units.parse(v, kind, file=self.file, field=self.field(key), allow_zero=allow_zero)

    def string(self, key: str, default: Any = _MISSING, *, choices: tuple | list | None = None
               ) -> str:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, str):
            raise self.error(key, f"expected a string, got {_typename(v)} {v!r}")
        if choices is not None and v not in choices:
            raise self.error(key, f"{v!r} is not one of: {', '.join(map(str, choices))}")
        return v

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None) -> int:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"expected a whole number, got {_typename(v)} {v!r}")
        if minimum is not None and v < minimum:
            raise self.error(key, f"must be at least {minimum}, got {v}")
        return v

    def number(self, key: str, default: Any = _MISSING, *, low: float | None = None,
               high: float | None = None, low_open: bool = False) -> float:
        """A dimensionless number, optionally bounded: low <= v <= high (low < v if low_open)."""
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, str):  # YAML 1.1 reads 1e12 (no exponent sign) as a string
            try:
                v = float(v.strip())
            except ValueError:
                raise self.error(key, f"expected a number, got string {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(key, f"expected a number, got {_typename(v)} {v!r}")
        if not math.isfinite(v):
            raise self.error(key, f"must be a finite number, got {v!r}")
        if low is not None and (v <= low if low_open else v < low):
            raise self.error(key, f"must be {'>' if low_open else '>='} {low}, got {v}")
        if high is not None and v > high:
            raise self.error(key, f"must be <= {high}, got {v}")
        return float(v)

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {_typename(v)} {v!r}")
        return v

    def int_list(self, key: str, default: Any = _MISSING, *, minimum: int = 1) -> list[int]:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, list) or not v or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in v
        ):
            raise self.error(key, f"expected a list of whole numbers, got {v!r}")
        if any(x < minimum for x in v):
            raise self.error(key, f"every entry must be at least {minimum}, got {v}")
        return list(v)

    def str_list(self, key: str, default: Any = _MISSING) -> list[str]:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(key, f"expected a list of strings, got {v!r}")
        return list(v)

    def sub(self, key: str, default: Any = _MISSING) -> Node:
        """The mapping under ``key`` as a Node."""
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            if v is None or isinstance(v, dict):  # an absent section reads as empty
                return Node(dict(v or {}), self.file, self.field(key))
            return v
        if not isinstance(v, dict):
            raise self.error(key, f"expected a mapping, got {_typename(v)} {v!r}")
        return Node(v, self.file, self.field(key))

    def items(self) -> Iterator[tuple[str, Node]]:
        """(key, Node) for every entry of this mapping whose values are mappings."""
        for k in self.data:
            yield k, self.sub(k)

    def done(self) -> None:
        """Raise a ConfigError naming the first key that no accessor read."""
        extra = [k for k in self.data if k not in self._used]
        if extra:
            known = sorted(self._used)
            raise self.error(extra[0], f"unknown field {extra[0]!r}"
                             + (f" (known here: {', '.join(known)})" if known else ""))
