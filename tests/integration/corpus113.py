"""Semantic comparison of virtctl's Xen converters with libvirt 11.3's own test pairs.

Used by test_corpus_113.py. The cases and their directions are read from libvirt's
xmconfigtest.c / xlconfigtest.c (`cases`); in libvirt's words PARSE is XML -> cfg
(`xml->cfg` here) and FORMAT is cfg -> XML (`cfg->xml`); DO_TEST and
DO_TEST_REPLACE_VARS are both.

XML sides are compared through virtctl's `essence` (units, uuid and MAC spelling, order of
devices removed) with a symmetric walk (`xml_diff`), after `norm_xml` removes what
libvirt 11.3 adds by itself to every definition, on both sides:

- `<controller type='xenbus' index='0'/>` (added to every Xen guest) and
  `<controller type='ide' index='0'/>` (added to HVM guests with IDE disks), with
  nothing else;
- `<memballoon model='xen'/>` with no children (added to every Xen guest);
- the implicit inputs: mouse and keyboard on bus ps2 (HVM) or xen (PV/PVH);
- the default video: `heads='1'`, `primary='yes'` and the type's default `vram`
  (cirrus 8192, xen 4096, vga 16384 KiB) are dropped, then a lone `<model>` of the
  guest's default type (cirrus for HVM, xen otherwise) is dropped with its `<video>`;
- device `<address>` and `<alias>` elements (not those inside `<source>`);
- `vcpu/@placement='static'` and a `vcpu/@current` equal to the count;
- `os/type/@machine` when it is the default for the type (xenfv, xenpv, xenpvh);
- `os/loader/@format='raw'` and disk `driver/@type='raw'` (libvirt's default format);
- consoles that mirror the first serial (`target type='serial'`), and the PV console
  `<console type='pty'><target type='xen' port='0'/></console>`;
- `<graphics>` `<listen type='address'>` children repeating `@listen` (a lone one
  supplies `@listen` when it is missing) or without an address (libvirt's placeholder);
- `interface/ip/@family` when it is what the address says (ipv4, or ipv6 with a `:`);
- the order of a chardev's `<source>` elements (udp: connect and bind), sorted by mode;
- `currentMemory` equal to `memory`;
- empty containers (`<features/>`, `<devices/>`, ...: diff.py's list) and empty `<cpu/>`;
- `/LIBXL_FIRMWARE_DIR` (a build-time placeholder in libvirt's files) reads
  `/usr/lib/xen/boot`, as libvirt's test replaces it.

A direction *agrees* when the sides are equal before these normalisations, is
*formatting-only* when they are equal after them, and is *semantic* otherwise.

cfg sides are parsed by virtctl's own parser (`parse_config`: the Python AST, never
exec/eval) into key -> value dicts. `norm_cfg` then: compares numbers as strings
(`1` == `"1"`); reads comma lists of `k=v` items (vif, vfb, channel, usbctrl, new-style
disks, spice...) as sorted item sets; and drops keys set to the value that means absent,
which libvirt's writer emits by itself: `sdl = 0`, `parallel = "none"`,
`serial = "none"`, `rtc_timeoffset = 0`, `localtime = 0`, `viridian = 0`. Not `vnc = 0`:
xl gives an HVM guest a VNC display unless it says `vnc = 0` (issue 20: virtctl's SPICE
output left it out, and this list hid that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from virtctl.converters.xen.xmparse import Value, parse_config
from virtctl.reconciler.plan.diff import _CONTAINERS
from virtctl.reconciler.plan.essence import Node, essence
from virtctl.xmlutil import parse

CFG_TO_XML, XML_TO_CFG = "cfg->xml", "xml->cfg"
_MACROS = {"DO_TEST": (XML_TO_CFG, CFG_TO_XML), "DO_TEST_REPLACE_VARS": (XML_TO_CFG, CFG_TO_XML),
           "DO_TEST_PARSE": (XML_TO_CFG,), "DO_TEST_FORMAT": (CFG_TO_XML,)}
_CALL = re.compile(r'^\s*(DO_TEST(?:_PARSE|_FORMAT|_REPLACE_VARS)?)\s*\(\s*"([^"]+)"', re.M)


@dataclass(frozen=True, slots=True)
class Case:
    flavor: str  # xm or xl
    name: str  # without test- prefix
    direction: str
    replace_vars: bool

    @property
    def id(self) -> str:
        return f"{self.flavor}/{self.name}"


def cases(corpus: Path) -> list[Case]:
    """Every (pair, direction) libvirt's test programs run, read from their C source."""
    out: list[Case] = []
    for flavor in ("xm", "xl"):
        text = (corpus / f"{flavor}configtest.c").read_text()
        for macro, name in _CALL.findall(text):
            replace = macro == "DO_TEST_REPLACE_VARS" or bool(
                re.search(rf'DO_TEST_\w+\("{re.escape(name)}",\s*true\)', text))
            out.extend(Case(flavor, name, d, replace) for d in _MACROS[macro])
    return out


def pair(corpus: Path, case: Case) -> tuple[Path, Path]:
    base = corpus / f"{case.flavor}configdata" / f"test-{case.name}"
    return base.with_suffix(".cfg"), base.with_suffix(".xml")


def read_xml(path: Path, replace_vars: bool) -> str:
    text = path.read_text()
    return text.replace("/LIBXL_FIRMWARE_DIR", "/usr/lib/xen/boot") if replace_vars else text


# -- XML ------------------------------------------------------------------------------------

_DEFAULT_MACHINE = {"hvm": "xenfv", "xen": "xenpv", "linux": "xenpv", "xenpvh": "xenpvh"}
_DEFAULT_VRAM = {"cirrus": "8192", "xen": "4096", "vga": "16384"}


def _drop(el: etree._Element) -> None:
    parent = el.getparent()
    if parent is not None:
        parent.remove(el)


def norm_xml(root: etree._Element) -> etree._Element:
    """A copy of `root` without what libvirt 11.3 adds by itself (module docstring)."""
    root = etree.fromstring(etree.tostring(root))
    os_type = (root.findtext("os/type") or "").strip()
    hvm = os_type == "hvm"
    for el in root.findall("devices/controller"):
        if (el.get("type") in ("xenbus", "ide") and len(el) == 0
                and set(el.attrib) <= {"type", "index"} and el.get("index", "0") == "0"):
            _drop(el)
    for el in root.findall("devices/memballoon[@model='xen']"):
        if len(el) == 0:
            _drop(el)
    for el in root.findall("devices/input"):
        if el.get("type") in ("mouse", "keyboard") and el.get("bus") == ("ps2" if hvm else "xen"):
            _drop(el)
    for video in root.findall("devices/video"):
        model = video.find("model")
        if model is None:
            continue
        for attr, default in (("heads", "1"), ("primary", "yes"),
                              ("vram", _DEFAULT_VRAM.get(model.get("type", "")))):
            if model.get(attr) == default:
                del model.attrib[attr]
        if (len(video) == 1 and set(model.attrib) == {"type"} and len(model) == 0
                and model.get("type") == ("cirrus" if hvm else "xen")):
            _drop(video)
    for dev in root.findall("devices/*"):
        for el in [*dev.findall("address"), *dev.findall("alias")]:
            _drop(el)
    vcpu = root.find("vcpu")
    if vcpu is not None:
        if vcpu.get("placement") == "static":
            del vcpu.attrib["placement"]
        if vcpu.get("current") == (vcpu.text or "").strip():
            del vcpu.attrib["current"]
    type_el = root.find("os/type")
    if type_el is not None and type_el.get("machine") == _DEFAULT_MACHINE.get(os_type):
        del type_el.attrib["machine"]
    loader = root.find("os/loader")
    if loader is not None and loader.get("format") == "raw":
        del loader.attrib["format"]
    for drv in root.findall("devices/disk/driver[@type='raw']"):
        del drv.attrib["type"]
    for con in root.findall("devices/console"):
        target = con.find("target")
        kind = target.get("type") if target is not None else None
        if kind == "serial" or (kind == "xen" and con.get("type") == "pty" and len(con) == 1
                                and (target is not None and target.get("port", "0") == "0")):
            _drop(con)
    for gfx in root.findall("devices/graphics"):
        for li in gfx.findall("listen[@type='address']"):
            if set(li.attrib) == {"type"} and len(li) == 0:
                _drop(li)
        listens = gfx.findall("listen[@type='address']")
        if gfx.get("listen") is None and len(listens) == 1:
            gfx.set("listen", listens[0].get("address", ""))
        for li in listens:
            if li.get("address") == gfx.get("listen") and set(li.attrib) == {"type", "address"}:
                _drop(li)
    for ip in root.findall("devices/interface/ip[@family]"):
        if ip.get("family") == ("ipv6" if ":" in ip.get("address", "") else "ipv4"):
            del ip.attrib["family"]
    for dev in root.findall("devices/*[source]"):
        if dev.tag in ("serial", "parallel", "channel", "console"):
            sources = dev.findall("source")
            for src in sources:
                dev.remove(src)
            for i, src in enumerate(sorted(sources, key=lambda s: s.get("mode", ""))):
                dev.insert(i, src)
    memory, current = root.find("memory"), root.find("currentMemory")
    if memory is not None and current is not None and _kib(memory) == _kib(current):
        _drop(current)
    for el in list(root.iter()):
        if (el.tag in _CONTAINERS or el.tag == "cpu") and not len(el) and not el.attrib \
                and not (el.text or "").strip():
            _drop(el)
    return root


def _kib(el: etree._Element) -> str:
    return essence(el).text or ""


def _flat(node: Node) -> str:
    attrs = " ".join(f"{k}={v}" for k, v in node.attrs)
    return f"<{node.tag} {attrs}>".replace(" >", ">") + (node.text or "")


def xml_diff(a: Node, b: Node, path: str = "") -> list[tuple[str, str | None, str | None]]:
    """Symmetric differences (path, ours, theirs) between two essences."""
    out: list[tuple[str, str | None, str | None]] = []
    aa, ba = dict(a.attrs), dict(b.attrs)
    for name in sorted(set(aa) | set(ba)):
        if aa.get(name) != ba.get(name):
            out.append((f"{path}/@{name}" if path else f"@{name}", aa.get(name), ba.get(name)))
    if a.text != b.text:
        out.append((path or a.tag, a.text, b.text))
    ac, bc = dict(a.children), dict(b.children)
    for key in [*ac, *(k for k in bc if k not in ac)]:
        sub = f"{path}/{key}" if path else key
        if key not in bc:
            out.append((sub, _flat(ac[key]), None))
        elif key not in ac:
            out.append((sub, None, _flat(bc[key])))
        else:
            out.extend(xml_diff(ac[key], bc[key], sub))
    return out


def compare_xml(ours: str, theirs: str) -> tuple[str, list[tuple[str, Any, Any]]]:
    """(agree | formatting-only | semantic, differences after normalisation)."""
    mine, other = parse(ours), parse(theirs)
    if not xml_diff(essence(mine), essence(other)):
        return "agree", []
    diffs = xml_diff(essence(norm_xml(mine)), essence(norm_xml(other)))
    return ("semantic" if diffs else "formatting-only"), diffs


# -- cfg ------------------------------------------------------------------------------------

_ABSENT = {"sdl": "0", "parallel": "none", "serial": "none", "rtc_timeoffset": "0",
           "localtime": "0", "viridian": "0"}
_KV = re.compile(r"^[A-Za-z_][\w-]*=")


def _raw(value: Value) -> Any:
    return tuple(_raw(v) for v in value) if isinstance(value, tuple) else str(value)


def _norm_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_norm_value(v) for v in value)
    parts = value.split(",")
    if len(parts) > 1 and all(_KV.match(p.strip()) for p in parts):
        return tuple(sorted(p.strip() for p in parts))
    return value


def cfg_dict(text: str, *, normalise: bool) -> dict[str, Any]:
    entries = {e.key: _raw(e.value) for e in parse_config(text, source="<cfg>").entries}
    if not normalise:
        return entries
    return {k: _norm_value(v) for k, v in entries.items() if _ABSENT.get(k) != v}


def compare_cfg(ours: str, theirs: str) -> tuple[str, list[tuple[str, Any, Any]]]:
    if cfg_dict(ours, normalise=False) == cfg_dict(theirs, normalise=False):
        return "agree", []
    a, b = cfg_dict(ours, normalise=True), cfg_dict(theirs, normalise=True)
    diffs = [(k, a.get(k), b.get(k)) for k in [*a, *(k for k in b if k not in a)]
             if a.get(k) != b.get(k)]
    return ("semantic" if diffs else "formatting-only"), diffs


@dataclass
class Outcome:
    case: Case
    verdict: str = "agree"  # agree | formatting-only | semantic | error
    diffs: list[tuple[str, Any, Any]] = field(default_factory=list)
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (check, field, detail)


def run(corpus: Path, case: Case, relaxng: etree.RelaxNG | None) -> Outcome:
    """Convert one case in its direction and compare; cfg->xml also checks RNG and fixpoint.

    A conversion that raises is a semantic difference on the field `<error>`."""
    from virtctl.converters.xen.xm import xm_to_xml, xml_to_xm
    from virtctl.errors import SpecError

    cfg_path, xml_path = pair(corpus, case)
    expected_xml = read_xml(xml_path, case.replace_vars)
    out = Outcome(case)
    try:
        if case.direction == XML_TO_CFG:
            got = xml_to_xm(expected_xml, flavor=case.flavor, source=str(xml_path)).text
            out.verdict, out.diffs = compare_cfg(got, cfg_path.read_text())
            return out
        first = xm_to_xml(cfg_path.read_text(), flavor=case.flavor, source=str(cfg_path)).text
    except SpecError as exc:
        out.verdict, out.diffs = "semantic", [("<error>", str(exc).splitlines()[0], None)]
        return out
    out.verdict, out.diffs = compare_xml(first, expected_xml)
    if relaxng is not None and not relaxng.validate(parse(first)):
        err = relaxng.error_log.last_error
        out.checks.append(("rng", re.sub(r"\[\d+\]", "", err.path or "/"), err.message))
    try:
        again = xml_to_xm(first, flavor=case.flavor).text
        second = xm_to_xml(again, flavor=case.flavor).text
    except SpecError as exc:
        out.checks.append(("fixpoint", "<error>", str(exc).splitlines()[0]))
        return out
    for path, a, b in xml_diff(essence(parse(second)), essence(parse(first))):
        out.checks.append(("fixpoint", path, f"second={a!r} first={b!r}"))
    return out
