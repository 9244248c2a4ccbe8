"""Text from a host, made safe to print on a terminal.

A host says things virtctl prints: object names (libvirt accepts an escape character or
a right-to-left override in a domain name), libvirt's error messages, the holder record
of a lock file, a watcher's log values. Printed raw, an ESC sequence in any of them can
rewrite the screen, hide lines or retitle the terminal, and an invisible format
character can make one name look like another. `printable` escapes them, the way Python
writes a string's repr: control characters (C0, DEL, C1), Unicode format characters
(bidirectional overrides, zero-width spaces), line and paragraph separators and lone
surrogates become `\\xNN` / `\\uNNNN`; everything else, other scripts included, stays as
it is. Newlines stay when `keep_newlines` (a multi-line report). Pure.
"""

from __future__ import annotations

import json
import unicodedata

_ESCAPED = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """`text` with every control or invisible format character escaped."""
    if (text.replace("\n", " ") if keep_newlines else text).isprintable():
        return text  # the common case: no control, format or separator character
    return "".join(
        char if (keep_newlines and char == "\n")
        or unicodedata.category(char) not in _ESCAPED else _escape(char)
        for char in text)


def printable_json(text: str) -> str:
    """JSON text (json.dumps with ensure_ascii=False) with the characters `printable`
    escapes written as JSON escapes (\\u202e): still the same JSON value. json.dumps
    escapes only C0 controls; DEL, C1 controls and format characters pass raw."""
    if text.isprintable():
        return text
    return "".join(
        json.dumps(char)[1:-1] if unicodedata.category(char) in _ESCAPED else char
        for char in text)
