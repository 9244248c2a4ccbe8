"""Label selectors, as kubectl writes them: `-l role=web,team!=b`.

Requirements joined by commas, all of which must hold:
  `key=value`, `key==value`, `key!=value` (true also when the key is absent),
  `key in (a,b)`, `key notin (a,b)` (true also when absent), `key` (present),
  `!key` (absent).
Pure. Parsed once per command; `matches(labels)` for specs and for live objects
(their labels recorded in virtctl's mark).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ErrorCode, SpecError

_KEY = r"[A-Za-z0-9]([A-Za-z0-9_./-]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?)?"
_SET_OP = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_EQ_OP = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def holds(self, labels: dict[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Iterable[tuple[str, str]] | dict[str, str]) -> bool:
        have = dict(labels.items() if isinstance(labels, dict) else labels)
        return all(r.holds(have) for r in self.requirements)


def _split(text: str) -> list[str]:
    """Commas separate requirements, except inside `in (...)`."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_selector(text: str) -> Selector:
    """Raises SpecError naming the requirement it cannot read."""
    requirements: list[Requirement] = []
    for part in _split(text):
        if m := _SET_OP.match(part):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            if not values or not all(re.fullmatch(_VALUE, v) for v in values):
                raise _bad(part, "a value list like (a,b)")
            requirements.append(Requirement(m["key"], m["op"], values))
        elif m := _EQ_OP.match(part):
            op = "notin" if m["op"] == "!=" else "in"
            requirements.append(Requirement(m["key"], op, frozenset({m["value"]})))
        elif m := _EXISTS.match(part):
            requirements.append(Requirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise _bad(part, "key=value, key!=value, key in (a,b), key notin (a,b), key "
                       "or !key")
    return Selector(text, tuple(requirements))


def _bad(part: str, wanted: str) -> SpecError:
    return SpecError(f"selector: cannot read {part.strip()!r}: expected {wanted}",
                     code=ErrorCode.INVALID_SPEC)
