"""Limits on what a spec may be, so hostile or broken input is refused while loading,
before anything is planned. Pure.

- A spec file is at most 16 MiB: more is no hand-written spec, and reading it whole
  would cost memory for nothing.
- A YAML document expands to at most 100,000 values. Anchors and aliases are fine, but
  nine aliases of nine aliases of... (an "alias bomb") would make a small file into
  billions of values when validated or converted.
- Text must be representable in XML 1.0 (no NUL or other control characters but tab and
  newlines): every spec becomes libvirt XML.
- A name (domain, network, pool, volume) is 1 to 200 bytes of UTF-8, has no `/` or
  control characters and is not `.` or `..`: libvirt and the sim store each object under
  its name as a file name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MAX_SPEC_BYTES = 16 * 1024 * 1024
MAX_YAML_VALUES = 100_000
MAX_NAME_BYTES = 200

# Characters XML 1.0 cannot hold (surrogates cannot come from UTF-8 text).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an object, or None."""
    if name in (".", ".."):
        return f"{name!r} is not a name"
    if "/" in name:
        return f"a name has no '/': {name!r}"
    if _NOT_XML.search(name) or any(c in name for c in "\n\r\t"):
        return f"a name has no control characters: {name!r}"
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        return f"a name is at most {MAX_NAME_BYTES} bytes, this one is {size}"
    return None


def too_many_values(doc: Any, budget: int = MAX_YAML_VALUES) -> bool:
    """Whether `doc` holds more than `budget` values, counting each alias's target again
    every time it is used (so it stops early on an alias bomb)."""
    left = budget
    stack = [doc]
    while stack:
        item = stack.pop()
        left -= 1
        if left < 0:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def unsafe_text(doc: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, text) for each string in `doc` that XML cannot hold."""
    if isinstance(doc, str):
        if _NOT_XML.search(doc):
            yield path, doc
    elif isinstance(doc, dict):
        for key, value in doc.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _NOT_XML.search(key):
                yield here, key
            yield from unsafe_text(value, here)
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from unsafe_text(value, f"{path}[{index}]")
