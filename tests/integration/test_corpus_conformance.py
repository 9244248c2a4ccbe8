"""Conformance with libvirt's own Xen converter over its test pairs (../shared/corpus).

For every `xm/NAME.cfg` and `xl/NAME.cfg`, virtctl's XML must agree with libvirt's
`NAME.xml` on the facts listed in FIELDS. The expected files come from different libvirt
versions, so where libvirt's own behaviour changed the difference is listed in KNOWN,
one named entry per (case, field) with its reason (also in docs/xen-conversion.md), and
checked precisely: the entry states the exact old and new values, it is not a skip.
Our output must also validate against libvirt's RelaxNG schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from virtctl.converters.xen.xm import xm_to_xml
from virtctl.xmlutil import parse

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"

Facts = dict[str, Any]


def _kib(el: etree._Element | None) -> int | None:
    if el is None:
        return None
    factor = {"KiB": 1, "k": 1, "MiB": 1024, "M": 1024, "GiB": 1024**2}[el.get("unit", "KiB")]
    return int(el.text or "0") * factor


def _disk(d: etree._Element) -> tuple[Any, ...]:
    src = d.find("source")
    source: Any = None
    if src is not None:
        hosts = tuple((h.get("name"), h.get("port")) for h in src.findall("host"))
        source = src.get("dev") or src.get("file") or (src.get("protocol"), src.get("name"), hosts)
    target = d.find("target")
    assert target is not None
    return (d.get("type"), d.get("device", "disk"), source, target.get("dev"),
            target.get("bus"), d.find("readonly") is not None)


def _interface(i: etree._Element) -> tuple[Any, ...]:
    def attr(path: str, name: str) -> str | None:
        el = i.find(path)
        return None if el is None else el.get(name)

    mac = attr("mac", "address")
    return (i.get("type"), mac.lower() if mac else None, attr("source", "bridge"),
            attr("script", "path"), attr("model", "type"), attr("target", "dev"))


def _graphics(g: etree._Element) -> tuple[Any, ...]:
    listen = g.get("listen") or next(
        (li.get("address") for li in g.findall("listen") if li.get("type") == "address"), None)
    return (g.get("type"), g.get("port"), g.get("autoport"), listen)


def _chardev(c: etree._Element) -> tuple[Any, ...]:
    sources = tuple(sorted(tuple(sorted(s.attrib.items())) for s in c.findall("source")))
    target = c.find("target")
    return (c.get("type"), sources, None if target is None else target.get("port"))


def _clock(root: etree._Element) -> tuple[Any, ...] | None:
    clock = root.find("clock")
    if clock is None:
        return None
    timers = tuple(sorted(tuple(sorted(t.attrib.items())) for t in clock.findall("timer")))
    return (clock.get("offset"), clock.get("adjustment"), clock.get("basis"), timers)


def _features(root: etree._Element) -> tuple[Any, ...]:
    features = root.find("features")
    if features is None:
        return ()
    return tuple(sorted((el.tag, el.get("state")) for el in features.iter()
                        if el is not features and el.tag != "xen"))


def _loader(root: etree._Element) -> tuple[Any, ...] | None:
    loader = root.find("os/loader")
    if loader is None:
        return None
    # libvirt treats a Xen loader without type as a ROM.
    return ((loader.text or "").strip(), loader.get("type", "rom"), loader.get("readonly"))


def facts(root: etree._Element) -> Facts:
    devices = root.find("devices")
    assert devices is not None
    vcpu = root.find("vcpu")
    assert vcpu is not None
    os_type = root.find("os/type")
    assert os_type is not None
    return {
        "name": root.findtext("name"),
        "uuid": root.findtext("uuid"),
        "memory": _kib(root.find("memory")),
        "currentMemory": _kib(root.find("currentMemory")),
        "vcpu": (vcpu.text, vcpu.get("current", vcpu.text), vcpu.get("cpuset")),
        "os type": (os_type.text, os_type.get("machine")),
        "kernel": root.findtext("os/kernel"),
        "initrd": root.findtext("os/initrd"),
        "cmdline": root.findtext("os/cmdline"),
        "loader": _loader(root),
        "boot": [b.get("dev") for b in root.findall("os/boot")],
        "features": _features(root),
        "clock": _clock(root),
        "disks": [_disk(d) for d in devices.findall("disk")],
        "interfaces": [_interface(i) for i in devices.findall("interface")],
        "graphics": [_graphics(g) for g in devices.findall("graphics")],
        "serial": [_chardev(c) for c in devices.findall("serial")],
        "parallel": [_chardev(c) for c in devices.findall("parallel")],
        "input": sorted((i.get("type"), i.get("bus")) for i in devices.findall("input")),
        "sound": [s.get("model") for s in devices.findall("sound")],
    }


FIELDS = tuple(facts(parse("<domain><vcpu>1</vcpu><os><type>hvm</type></os>"
                           "<devices/></domain>")))


@dataclass(frozen=True, slots=True)
class Known:
    """A documented libvirt version difference: exactly which old value becomes which new one."""

    reason: str
    check: Callable[[Any, Any], bool]  # (ours, libvirt's) -> the difference is exactly this


def _old_hvm_clock(ours: Any, theirs: Any) -> bool:
    # Old: <clock offset='utc' adjustment='reset'>; modern: variable, 0 s, basis utc.
    return bool(ours[:3] == ("variable", "0", "utc") and theirs[:3] == ("utc", "reset", None)
                and ours[3] == theirs[3])


def _no_ps2_keyboard(ours: Any, theirs: Any) -> bool:
    return bool(sorted([*theirs, ("keyboard", "ps2")]) == ours)


def _no_xen_keyboard(ours: Any, theirs: Any) -> bool:
    return bool(sorted([*theirs, ("keyboard", "xen")]) == ours)


def _hap_off_implicit(ours: Any, theirs: Any) -> bool:
    return bool(tuple(sorted([*theirs, ("hap", "off")])) == ours)


def _ovmf_path(ours: Any, theirs: Any) -> bool:
    return bool(ours[1:] == theirs[1:] == ("pflash", "yes")
                and Path(ours[0]).name == Path(theirs[0]).name == "ovmf.bin")


OLD_HVM_CLOCK = Known(
    "libvirt before 1.2.x wrote HVM clocks as offset='utc' adjustment='reset' (xend < 3.1 "
    "form); modern libvirt writes offset='variable' adjustment='0' basis='utc': same time",
    _old_hvm_clock)
OLD_PS2_INPUTS = Known(
    "libvirt added the implicit PS/2 keyboard to HVM guests in 1.3.x; older files list the "
    "mouse only", _no_ps2_keyboard)
OLD_XEN_INPUTS = Known(
    "libvirt added the implicit Xen keyboard to PV guests in 1.3.x; older files list the "
    "mouse only", _no_xen_keyboard)
OLD_HAP_DEFAULT = Known(
    "before libvirt 6.x an absent <hap/> meant off, so hap=0 produced no element; since hap "
    "defaults to on, hap=0 is written <hap state='off'/>", _hap_off_implicit)
OVMF_BUILD_PATH = Known(
    "the OVMF path is libvirt's build-time LIBXL_FIRMWARE_DIR (a placeholder in its tests); "
    "virtctl uses Xen's default /usr/lib/xen/boot/ovmf.bin", _ovmf_path)

KNOWN: dict[tuple[str, str], Known] = {
    ("xm/test-fullvirt-default-feature", "clock"): OLD_HVM_CLOCK,
    ("xm/test-fullvirt-force-hpet", "clock"): OLD_HVM_CLOCK,
    ("xm/test-fullvirt-force-hpet", "input"): OLD_PS2_INPUTS,
    ("xm/test-fullvirt-force-nohpet", "clock"): OLD_HVM_CLOCK,
    ("xm/test-fullvirt-force-nohpet", "input"): OLD_PS2_INPUTS,
    ("xm/test-paravirt-net-vifname", "input"): OLD_XEN_INPUTS,
    ("xm/test-paravirt-old-pvfb-vncdisplay", "input"): OLD_XEN_INPUTS,
    ("xm/test-paravirt-old-pvfb", "input"): OLD_XEN_INPUTS,
    ("xl/test-fullvirt-direct-kernel-boot", "clock"): OLD_HVM_CLOCK,
    ("xl/test-fullvirt-direct-kernel-boot", "features"): OLD_HAP_DEFAULT,
    ("xl/test-fullvirt-ovmf", "loader"): OVMF_BUILD_PATH,
}


def _pairs() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(
            reason=f"libvirt corpus not found at {CORPUS}; conformance not checked"))]
    return [pytest.param(cfg, id=f"{cfg.parent.name}/{cfg.stem}")
            for flavor in ("xm", "xl") for cfg in sorted((CORPUS / flavor).glob("*.cfg"))]


@pytest.mark.parametrize("cfg", _pairs())
def test_cfg_converts_like_libvirt(cfg: Path, relaxng: etree.RelaxNG | None) -> None:
    check_pair(cfg, relaxng)


def check_pair(cfg: Path, relaxng: etree.RelaxNG | None) -> None:
    case = f"{cfg.parent.name}/{cfg.stem}"
    result = xm_to_xml(cfg.read_text(), source=str(cfg), flavor=cfg.parent.name)
    ours = parse(result.text)
    if relaxng is not None:
        assert relaxng.validate(ours), f"{case}: {relaxng.error_log}"
    mine, theirs = facts(ours), facts(parse(cfg.with_suffix(".xml").read_bytes()))
    mismatches = []
    for field in FIELDS:
        known = KNOWN.get((case, field))
        if known is not None:
            assert known.check(mine[field], theirs[field]), (
                f"{case} {field}: known difference no longer as documented "
                f"({known.reason}): ours={mine[field]!r} libvirt={theirs[field]!r}")
        elif mine[field] != theirs[field]:
            mismatches.append(f"{field}: ours={mine[field]!r} libvirt={theirs[field]!r}")
    assert not mismatches, f"{case}:\n" + "\n".join(mismatches)
    assert result.warnings == (), f"{case}: unexpected warnings {result.warnings}"


def test_known_differences_name_real_pairs() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"libvirt corpus not found at {CORPUS}")
    for case, field in KNOWN:
        assert (CORPUS / f"{case}.cfg").exists(), case
        assert field in FIELDS, field


def test_report_pass_count(capsys: pytest.CaptureFixture[str],
                           relaxng: etree.RelaxNG | None) -> None:
    """Prints how many corpus pairs conform (for CI logs and docs/benchmarks.md)."""
    if not CORPUS.is_dir():
        pytest.skip(f"libvirt corpus not found at {CORPUS}")
    pairs = sorted((CORPUS / "xm").glob("*.cfg")) + sorted((CORPUS / "xl").glob("*.cfg"))
    failed = []
    for cfg in pairs:
        try:
            check_pair(cfg, relaxng)
        except AssertionError:
            failed.append(f"{cfg.parent.name}/{cfg.stem}")
    with capsys.disabled():
        print(f"\ncorpus conformance: {len(pairs) - len(failed)}/{len(pairs)} pairs agree "
              f"with libvirt ({len(KNOWN)} documented version differences)")
    assert not failed
