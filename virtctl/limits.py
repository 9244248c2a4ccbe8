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
  its name as a file name. Nor does a name (of an object, a host in `kind: Hosts`, an
  apply set) hold invisible or format characters (Unicode categories Cc, Cf, Zl, Zp:
  U+202E right-to-left override, U+200B zero-width space, U+FEFF byte order mark, ...):
  they make one name print as another in listings and plans.
- A host network interface name (a bridge, a tap device, a forward device) is what
  Linux takes: 1 to 15 bytes (IFNAMSIZ - 1), not `.` or `..`, no `/`, `:`, whitespace or
  control characters. Longer names fail only when the network or guest starts.
- A MAC address is six two-digit hex octets (`52:54:00:12:34:56`, libvirt's schema) and
  unicast (the first octet even): libvirt refuses multicast MACs for NICs, a network's
  bridge and DHCP hosts.
- Counts. An xm/xl file holds at most 1,024 items in one list, 10,000 values in all
  and strings of at most 64 KiB (real files: a few vifs and disks, a kernel command line
  of a few KiB); a domain at most 4,096 devices (QEMU guests run out of PCI slots
  before that). A 10^6-item `vif` list is refused before anything is built from it.
  In YAML, a domain's device lists hold at most 4,096 items together and any list at
  most 10,000, checked before the schema walks them (30,000 interfaces took 50 s to be
  refused). A domain has at most 16,384 vcpus and iothreads: libvirt 9.0's daemon exits
  on 2^32 - 1 (or "-1") before its own checks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

MAX_SPEC_BYTES = 16 * 1024 * 1024
MAX_YAML_VALUES = 100_000
MAX_NAME_BYTES = 200
#: IFNAMSIZ (16) less the terminating NUL: the longest Linux network interface name.
MAX_IFNAME_BYTES = 15
MAX_XEN_LIST_ITEMS = 1_024
MAX_XEN_VALUES = 10_000
MAX_XEN_STRING = 64 * 1024
MAX_DOMAIN_DEVICES = 4_096
MAX_YAML_LIST_ITEMS = 10_000
#: The device lists of a YAML Domain (converters/yaml_devices.py), extraDevices included.
YAML_DEVICE_KEYS = ("disks", "controllers", "interfaces", "serials", "parallels", "consoles",
                    "channels", "inputs", "graphics", "sounds", "videos", "hostdevs",
                    "extraDevices")
#: No machine type takes more (QEMU's largest say 4,096); libvirt 9.0's daemon exits on
#: a <vcpu> or <iothreads> of 2^32 - 1 (also what "-1" wraps to) before any check.
MAX_VCPUS = 16_384
MAX_IOTHREADS = 16_384

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
    hidden = invisible(name)
    if hidden is not None:
        return f"a name has no invisible or format characters ({hidden}): {name!r}"
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


# libxml2's limit on one text node or attribute value without XML_PARSE_HUGE, which
# libvirt does not set (and virtctl's own parser neither): a longer one is refused.
MAX_TEXT_BYTES = 10_000_000
# libvirt's daemon takes a string of at most 4 MiB in one message (REMOTE_STRING_MAX):
# a longer definition fails at define ("Unable to encode message payload", measured on
# qemu:///system), after the run began.
MAX_DEFINITION_BYTES = 4 * 1024 * 1024


def long_text(doc: Any, path: str = "", *,
              limit: int = MAX_DEFINITION_BYTES) -> Iterator[tuple[str, int]]:
    """(dotted path, size in bytes) for each string in `doc` longer than `limit` bytes:
    text no definition can hold (MAX_DEFINITION_BYTES), or libxml2 parse
    (MAX_TEXT_BYTES)."""
    if isinstance(doc, str):
        # A character is at most 4 bytes: only a long string is encoded to measure it.
        if len(doc) * 4 > limit and len(doc.encode()) > limit:
            yield path, len(doc.encode())
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield from long_text(value, f"{path}.{key}" if path else str(key), limit=limit)
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from long_text(value, f"{path}[{index}]", limit=limit)


def text_too_long(size: int, *, limit: int = MAX_DEFINITION_BYTES) -> str:
    if limit == MAX_TEXT_BYTES:
        return (f"a text of {size:,} bytes; libvirt's XML parser takes at most "
                f"{MAX_TEXT_BYTES:,} bytes in one text or attribute value")
    return (f"a text of {size:,} bytes; libvirt takes a whole definition of at most "
            f"{MAX_DEFINITION_BYTES:,} bytes (4 MiB, its daemon's message limit)")


def definition_too_large(kind: str, size: int) -> str:
    return (f"the {kind} definition is {size:,} bytes; libvirt takes at most "
            f"{MAX_DEFINITION_BYTES:,} bytes (4 MiB, its daemon's message limit)")


#: Unicode categories that print as nothing or reorder what follows: control (Cc),
#: format (Cf: bidi overrides, zero-width spaces and joiners, the BOM), line and
#: paragraph separators (Zl, Zp), lone surrogates (Cs).
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def invisible(text: str) -> str | None:
    """`U+XXXX NAME` of the first control or invisible format character in `text`."""
    for char in text:
        if unicodedata.category(char) in _INVISIBLE:
            return f"U+{ord(char):04X} {unicodedata.name(char, 'control character')}"
    return None


def ifname_problem(name: str) -> str | None:
    """Why `name` cannot name a Linux network interface (bridge, tap, host device)."""
    if not name or name in (".", ".."):
        return f"{name!r} is not a network interface name"
    size = len(name.encode())
    if size > MAX_IFNAME_BYTES:
        return (f"network interface name {name!r} is {size} bytes; Linux takes at most "
                f"{MAX_IFNAME_BYTES}")
    bad = next((c for c in name if c in "/:" or c.isspace()), None)
    if bad is not None:
        return f"network interface name {name!r} has {bad!r}; Linux refuses '/', ':' and spaces"
    hidden = invisible(name)
    if hidden is not None:
        return f"network interface name {name!r} has a control or format character ({hidden})"
    return None


_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_HEX12 = re.compile(r"[0-9a-fA-F]{1,2}")


def mac_problem(mac: str) -> str | None:
    """Why libvirt refuses `mac` for a NIC, a network's bridge or a DHCP host."""
    if not _MAC.fullmatch(mac):
        octets = mac.split(":")
        if len(octets) == 6 and all(_HEX12.fullmatch(o) for o in octets):
            # libvirt reads one-digit octets but stores two: the spec would never match.
            return (f"MAC address {mac!r}: write each octet with two digits, "
                    f"{':'.join(o.rjust(2, '0').lower() for o in octets)!r}")
        return (f"malformed MAC address {mac!r}: six two-digit hex octets separated by "
                "':', such as 52:54:00:12:34:56")
    if int(mac[:2], 16) & 1:
        return (f"MAC address {mac!r} is multicast (its first octet is odd); a NIC needs a "
                "unicast address, such as 52:54:00:12:34:56")
    return None


def long_lists(doc: Any) -> Iterator[tuple[list[Any], str]]:
    """(keys to, message) for a YAML Domain whose device lists hold more than
    MAX_DOMAIN_DEVICES items together, and for any list of more than MAX_YAML_LIST_ITEMS;
    `doc` has passed `too_many_values`, so the walk is bounded."""
    if isinstance(doc, dict) and doc.get("kind") == "Domain":
        lists = {k: v for k in YAML_DEVICE_KEYS if isinstance(v := doc.get(k), list)}
        total = sum(len(v) for v in lists.values())
        if total > MAX_DOMAIN_DEVICES:
            longest = max(lists, key=lambda k: len(lists[k]))
            yield [longest], (f"{total:,} devices are more than the {MAX_DOMAIN_DEVICES:,} "
                              "a guest may declare")
            return
    stack: list[tuple[Any, list[Any]]] = [(doc, [])]
    while stack:
        item, keys = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, [*keys, k]) for k, v in item.items())
        elif isinstance(item, list):
            if len(item) > MAX_YAML_LIST_ITEMS:
                yield keys, (f"a list of {len(item):,} items; at most "
                             f"{MAX_YAML_LIST_ITEMS:,} are taken")
                return
            stack.extend((v, [*keys, i]) for i, v in enumerate(item))

