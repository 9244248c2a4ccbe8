"""Safe reader and writer of Xen xm/xl config files (the Python-like `key = value` syntax).

Called by `virtctl.converters.xen.xm` and `virtctl.converters.xen.xl`. Xen's old toolstack ran
these files through the Python interpreter; virtctl treats them as data. The text goes
through `ast.parse` only (which builds a tree and runs nothing), then a walk accepts
plain assignments of string/integer literals, lists and tuples of them, and negative
integers. Anything else (imports, calls, names, attributes, f-strings, augmented
assignments, ...) is refused with a `SpecError` naming the file and line. Never
exec/eval/compile-to-code.

`ConfigReader` hands out typed values to the converters, remembers which keys were used
and turns every unused key into a warning, so nothing is dropped silently; `key_values`
splits the `k=v,k=v` device strings (vif, pci, xl's channel) the way Xen does. `format_config`
writes the cfg text back. Pure: no I/O.

Counts are capped before anything is built (reconciler/limits.py): a cheap scan of the
text (string literals and comments blanked, separators counted) refuses a file of more
than `MAX_XEN_VALUES` values before `ast.parse` builds a tree of them (a 10^6-item `vif`
list took 37 s and 2.4 GB); the walk then refuses a list of more than
`MAX_XEN_LIST_ITEMS` items and a string of more than `MAX_XEN_STRING` characters, each
at its line.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ...errors import ErrorCode, ErrorDomain, Source, SpecError
from ...limits import MAX_XEN_LIST_ITEMS, MAX_XEN_STRING, MAX_XEN_VALUES

#: A config value: an integer, a string, or a (possibly nested) list of them.
Value = int | str | tuple["Value", ...]

# Real files nest at most two levels (xl's vnuma); a little headroom, no more.
_MAX_DEPTH = 6


@dataclass(frozen=True, slots=True)
class Entry:
    """One `key = value` assignment and the line it starts on."""

    key: str
    value: Value
    line: int


@dataclass(frozen=True, slots=True)
class XenConfig:
    """A parsed config file: its entries in file order, the last assignment of a key winning."""

    source: str
    entries: tuple[Entry, ...]
    duplicates: tuple[Entry, ...] = ()

    def get(self, key: str) -> Entry | None:
        for entry in reversed(self.entries):
            if entry.key == key:
                return entry
        return None

    def keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.entries)


def config_error(message: str, source: str, line: int | None = None, key: str | None = None,
                 *, code: ErrorCode = ErrorCode.INVALID_SPEC) -> SpecError:
    """A converter error pointing at a place in a config file."""
    return SpecError(message, code=code, domain=ErrorDomain.CONVERTER,
                     source=Source(source, line, path=key))


# String literals (triple-quoted first) and comments: blanked before counting.
_STRINGS = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"'
                      r"|'(?:[^'\\\n]|\\.)*'|#[^\n]*")
_KEY = re.compile(r"^[ \t]*([A-Za-z_]\w*)[ \t]*=", re.MULTILINE)


def _check_counts(text: str, source: str) -> None:
    """Refuse a file of more than MAX_XEN_VALUES values (list items and assignments),
    naming the key whose value passes the limit, before ast.parse builds anything."""
    blank = _STRINGS.sub('""', text)
    if blank.count(",") + blank.count("=") <= MAX_XEN_VALUES:
        return
    past = next(itertools.islice(re.finditer("[,=]", blank), MAX_XEN_VALUES, None), None)
    where = past.start() if past is not None else len(blank)
    key = None
    for found in _KEY.finditer(blank, 0, where):
        key = found
    line = blank.count("\n", 0, key.start() if key else where) + 1
    name = key.group(1) if key else None
    raise config_error("the file holds more than "
                       f"{MAX_XEN_VALUES:,} values (a list at most {MAX_XEN_LIST_ITEMS:,} "
                       "items); refused before reading it", source, line, name)


def parse_config(text: str, *, source: str = "<xm>") -> XenConfig:
    """Parse xm/xl config text into entries without running any of it."""
    _check_counts(text, source)
    try:
        tree = ast.parse(text, filename=source, mode="exec")
    except SyntaxError as exc:
        raise config_error(f"not a Xen config file: {exc.msg}", source, exc.lineno,
                           code=ErrorCode.PARSE_ERROR) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # ValueError: NUL bytes; RecursionError/MemoryError: absurd nesting.
        raise config_error(f"not a Xen config file: {exc}", source,
                           code=ErrorCode.PARSE_ERROR) from None
    entries: dict[str, Entry] = {}
    duplicates: list[Entry] = []
    for stmt in tree.body:
        entry = _assignment(stmt, source)
        if entry.key in entries:
            duplicates.append(entries.pop(entry.key))
        entries[entry.key] = entry
    ordered = tuple(sorted(entries.values(), key=lambda e: e.line))
    return XenConfig(source, ordered, tuple(duplicates))


def _refuse(node: ast.AST, source: str, what: str) -> SpecError:
    line = getattr(node, "lineno", None)
    return config_error(f"{what} is not allowed in a Xen config file "
                        f"(only `key = value` data; found {type(node).__name__})",
                        source, line, code=ErrorCode.PARSE_ERROR)


def _assignment(stmt: ast.stmt, source: str) -> Entry:
    if not isinstance(stmt, ast.Assign):
        raise _refuse(stmt, source, "a statement other than `key = value`")
    if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
        raise _refuse(stmt.targets[0], source, "an assignment target other than a plain key")
    key = stmt.targets[0].id
    return Entry(key, _literal(stmt.value, source, depth=0, key=key), stmt.lineno)


def _literal(node: ast.expr, source: str, *, depth: int, key: str | None = None) -> Value:
    if depth > _MAX_DEPTH:
        raise _refuse(node, source, "nesting lists this deep")
    if isinstance(node, ast.Constant):
        return _constant(node, source, key)
    if isinstance(node, ast.List | ast.Tuple):
        if len(node.elts) > MAX_XEN_LIST_ITEMS:
            raise config_error(f"a list of {len(node.elts):,} items; at most "
                               f"{MAX_XEN_LIST_ITEMS:,} are taken", source, node.lineno, key)
        return tuple(_literal(item, source, depth=depth + 1, key=key) for item in node.elts)
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) is int):
        return -node.operand.value
    raise _refuse(node, source, "an expression")


# Characters XML 1.0 cannot carry; a value holding one could never reach domain XML.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _constant(node: ast.Constant, source: str, key: str | None = None) -> Value:
    value = node.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and _NOT_XML.search(value):
        raise config_error("string holds a control character XML cannot carry", source,
                           node.lineno)
    if isinstance(value, str) and len(value) > MAX_XEN_STRING:
        raise config_error(f"a string of {len(value):,} characters; at most "
                           f"{MAX_XEN_STRING:,} are taken", source, node.lineno, key)
    if isinstance(value, int | str):
        return value
    raise _refuse(node, source, f"a {type(value).__name__} value")


# -- typed access ------------------------------------------------------------------------

_TRUE_STRINGS = frozenset({"1"})


@dataclass(slots=True)
class ConfigReader:
    """Typed access to a `XenConfig` that records which keys were used and what to warn about."""

    config: XenConfig
    warnings: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    @property
    def source(self) -> str:
        return self.config.source

    def line(self, key: str) -> int | None:
        entry = self.config.get(key)
        return entry.line if entry else None

    def has(self, key: str) -> bool:
        return self.config.get(key) is not None

    def raw(self, key: str) -> Value | None:
        entry = self.config.get(key)
        if entry is None:
            return None
        self.used.add(key)
        return entry.value

    def error(self, key: str, message: str) -> SpecError:
        return config_error(f"{key}: {message}", self.source, self.line(key), key)

    def warn(self, key: str, message: str) -> None:
        line = self.line(key)
        where = f" (line {line})" if line is not None else ""
        self.warnings.append(f"{key}{where}: {message}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return value
        raise self.error(key, "expected a string, got a list")

    def integer(self, key: str, default: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value.strip())
        raise self.error(key, f"expected an integer, got {value!r}")

    def flag(self, key: str, default: bool) -> bool:
        """Xen booleans: a non-zero integer or the string "1" is true, anything else false."""
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, tuple):
            raise self.error(key, "expected 0 or 1, got a list")
        if isinstance(value, int):
            return value != 0
        return value.strip() in _TRUE_STRINGS

    def strings(self, key: str) -> list[tuple[int, str]]:
        """A list-of-strings key as (index, string); a single string counts as a one-item list.

        Items that are not strings are reported and skipped, as libvirt skips them.
        """
        value = self.raw(key)
        if value is None:
            return []
        items = value if isinstance(value, tuple) else (value,)
        out: list[tuple[int, str]] = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                out.append((index, item))
            else:
                self.warn(key, f"item {index} is not a string; ignored")
        return out

    def unused_warnings(self) -> list[str]:
        """One warning per key nobody consumed, plus one per overridden duplicate."""
        out = [f"{e.key} (line {e.line}): assigned again later; this value is ignored"
               for e in self.config.duplicates]
        for entry in self.config.entries:
            if entry.key not in self.used:
                out.append(f"{entry.key} (line {entry.line}): no domain XML equivalent; ignored")
        return out


def key_values(r: ConfigReader, key: str, index: int, spec: str) -> dict[str, str]:
    """`k=v,k=v` tokens as Xen splits them: commas, then spaces/tabs after a comma skipped."""
    out: dict[str, str] = {}
    for raw in spec.split(","):
        token = raw.lstrip(" \t")
        if not token:
            continue
        name, eq, value = token.partition("=")
        if not eq:
            raise r.error(key, f"item {index}: {token!r} is not key=value")
        out[name.strip()] = value
    return out


# -- writing -----------------------------------------------------------------------------

def format_value(value: Value) -> str:
    """Render a value in the syntax both xm (Python) and xl (libxlu) read."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return "[ " + ", ".join(format_value(v) for v in value) + " ]"


def format_config(pairs: Iterable[tuple[str, Value]]) -> str:
    """`key = value` lines in the given order; lists of several items one item a line."""
    return "".join(_format_pair(key, value) for key, value in pairs)


def _format_pair(key: str, value: Value) -> str:
    if isinstance(value, tuple) and len(value) > 1:
        items = "".join(f"    {format_value(v)},\n" for v in value)
        return f"{key} = [\n{items}]\n"
    return f"{key} = {format_value(value)}\n"


_ASSIGN_LINE = re.compile(r"^[ \t]*name[ \t]*=", re.MULTILINE)


def looks_like_xen_config(text: str) -> bool:
    """True if `text` is an xm/xl config: parseable `key = value` data that sets `name`.

    Used by the spec loader for files without a `.cfg` extension.
    """
    if not _ASSIGN_LINE.search(text):
        return False
    try:
        config = parse_config(text, source="<sniff>")
    except SpecError:
        return False
    return config.get("name") is not None


#: The xm/xl key a converted element comes from, by its path's first steps.
_XEN_KEYS = {"devices/interface": ("vif",), "devices/disk": ("disk",),
             "devices/hostdev": ("pci",), "devices/graphics": ("vfb", "vnc", "sdl"),
             "memory": ("maxmem", "memory"), "currentMemory": ("memory",),
             "maxMemory": ("maxmem",), "vcpu": ("maxvcpus", "vcpus"), "name": ("name",),
             "uuid": ("uuid",)}


def xen_key_of(text: str, elem: object) -> tuple[int | None, str] | None:
    """(line, key) of the xm/xl key that wrote `elem` of the converted domain, if known:
    errors found in the converted XML then name the file's line, not line 1."""
    from lxml import etree

    if not isinstance(elem, etree._Element):
        return None
    steps: list[str] = []
    node: etree._Element | None = elem
    while node is not None and node.getparent() is not None:
        steps.insert(0, str(node.tag))
        node = node.getparent()
    for depth in (2, 1):
        keys = _XEN_KEYS.get("/".join(steps[:depth]))
        if keys:
            config = parse_config(text)
            for key in keys:
                entry = config.get(key)
                if entry is not None:
                    return entry.line, key
    return None
