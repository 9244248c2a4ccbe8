"""Host capabilities (libvirt's capabilities XML) and the check of a domain against them.

Used before the first action (every domain spec is checked against the host the plan
targets) and by the sim driver, which refuses what its capabilities lack as a real
hypervisor would. Pure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from .xmlutil import parse

# libvirt's Xen driver reports paravirt guests as os type "xen"; XML written for the old
# xend driver says "linux". Both mean the same guest.
_OS_ALIASES = {"linux": "xen"}


@dataclass(frozen=True, slots=True)
class GuestDomainType:
    type: str  # xen, kvm, qemu...
    emulator: str | None
    machines: frozenset[str]


@dataclass(frozen=True, slots=True)
class GuestCapability:
    os_type: str  # hvm, xen, xenpvh, exe...
    arch: str
    emulator: str | None
    machines: frozenset[str]
    domains: tuple[GuestDomainType, ...]

    def domain_type(self, name: str) -> GuestDomainType | None:
        for dom in self.domains:
            if dom.type == name:
                return dom
        return None


@dataclass(frozen=True, slots=True)
class HostCapabilities:
    host_arch: str
    guests: tuple[GuestCapability, ...]
    # Machine aliases and what the hypervisor stores for them ('pc' -> 'pc-i440fx-7.2').
    canonical_machines: tuple[tuple[str, str], ...] = ()
    # (arch, machine, maxCpus) for every machine the host lists with a vcpu limit.
    max_cpus: tuple[tuple[str, str, int], ...] = ()

    def canonical_machine(self, machine: str) -> str:
        for alias, canonical in self.canonical_machines:
            if alias == machine:
                return canonical
        return machine


def _machines(elem: etree._Element) -> frozenset[str]:
    names: set[str] = set()
    for machine in elem.findall("machine"):
        if machine.text:
            names.add(machine.text.strip())
        canonical = machine.get("canonical")
        if canonical:
            names.add(canonical)
    return frozenset(names)


# Frozen, so shared: a run reads the same host's capabilities at each plan (and the sim
# at connect), and a watcher every pass; a few hosts' texts are kept.
@functools.lru_cache(maxsize=16)
def parse_capabilities(xml: str) -> HostCapabilities:
    root = parse(xml, source="<capabilities>")
    aliases = sorted({
        ((m.text or "").strip(), m.get("canonical", ""))
        for m in root.iterfind("guest/arch//machine[@canonical]")
    })
    guests: list[GuestCapability] = []
    for guest in root.findall("guest"):
        arch = guest.find("arch")
        if arch is None:
            continue
        domains = tuple(
            GuestDomainType(
                type=dom.get("type", ""),
                emulator=(dom.findtext("emulator") or None),
                machines=_machines(dom),
            )
            for dom in arch.findall("domain")
        )
        guests.append(
            GuestCapability(
                os_type=(guest.findtext("os_type") or "").strip(),
                arch=arch.get("name", ""),
                emulator=(arch.findtext("emulator") or None),
                machines=_machines(arch),
                domains=domains,
            )
        )
    limits = sorted({
        (arch.get("name", ""), (m.text or "").strip(), int(m.get("maxCpus", "0")))
        for arch in root.iterfind("guest/arch")
        for m in arch.iter("machine")
        if (m.get("maxCpus") or "").isdigit()
    })
    return HostCapabilities(host_arch=root.findtext("host/cpu/arch") or "", guests=tuple(guests),
                            canonical_machines=tuple(aliases), max_cpus=tuple(limits))


def _candidates(caps: HostCapabilities, os_type: str, dom_type: str) -> Iterable[GuestCapability]:
    os_type = _OS_ALIASES.get(os_type, os_type)
    for guest in caps.guests:
        if _OS_ALIASES.get(guest.os_type, guest.os_type) == os_type and guest.domain_type(dom_type):
            yield guest


@dataclass(frozen=True, slots=True)
class GuestRequest:
    """What a domain definition asks of the host: all `check_guest` reads of it. Many
    definitions ask the same, so a caller checking many may check each request once."""

    dom_type: str
    os_type: str  # as declared, or libvirt's default for the domain type
    arch: str | None
    machine: str | None
    emulator: str | None  # <devices><emulator> text as written
    vcpus: int | None = None  # the <vcpu> count (the most the guest may have)


def guest_request(root: etree._Element) -> GuestRequest:
    """What the domain definition `root` asks of the host."""
    dom_type = root.get("type", "")
    # root.find("os/type") and root.find("devices/emulator"), in one pass over root.
    os_elem = emulator = None
    vcpus: int | None = None
    for child in root.iterchildren("os", "devices", "vcpu"):
        if child.tag == "vcpu":
            text = (child.text or "").strip()
            vcpus = int(text) if text.isdigit() else None
        elif child.tag == "os":
            os_elem = os_elem if os_elem is not None else next(child.iterchildren("type"), None)
        elif emulator is None:
            emulator = next(child.iterchildren("emulator"), None)
    os_type = (os_elem.text or "").strip() if os_elem is not None else ""
    if not os_type:
        # libvirt's Xen driver infers paravirt when <os><type> is absent (bootloader guests).
        os_type = "xen" if dom_type == "xen" else "hvm"
    return GuestRequest(
        dom_type=dom_type, os_type=os_type,
        arch=os_elem.get("arch") if os_elem is not None else None,
        machine=os_elem.get("machine") if os_elem is not None else None,
        emulator=(emulator.text or "") if emulator is not None else None,
        vcpus=vcpus,
    )


def check_domain(root: etree._Element, caps: HostCapabilities) -> str | None:
    """Why the host cannot run this domain definition, or None if it can."""
    return check_guest(guest_request(root), caps)


def check_guest(want: GuestRequest, caps: HostCapabilities) -> str | None:
    """Why the host cannot run a guest asking for `want`, or None if it can."""
    dom_type, os_type, arch, machine = want.dom_type, want.os_type, want.arch, want.machine
    guests = list(_candidates(caps, os_type, dom_type))
    if not guests:
        return f"the host cannot run domain type '{dom_type}' with os type '{os_type}'"
    if arch:
        guests = [g for g in guests if g.arch == arch]
        if not guests:
            return f"the host has no '{dom_type}' {os_type} guests on arch '{arch}'"
    if machine:
        known = set().union(
            *(g.machines | (g.domain_type(dom_type) or _EMPTY).machines for g in guests)
        )
        if known and machine not in known:
            return f"machine type '{machine}' is not offered for '{dom_type}' guests"
    limit = _vcpu_limit(caps, {g.arch for g in guests}, machine)
    if want.vcpus is not None and limit is not None and want.vcpus > limit[1]:
        return (f"{want.vcpus} vcpus are more than the {limit[1]} machine type "
                f"'{limit[0]}' allows")
    emulator = want.emulator
    if emulator and dom_type in ("kvm", "qemu", "xen"):
        offered = {g.emulator for g in guests} | {
            d.emulator for g in guests for d in g.domains if d.type == dom_type
        }
        offered.discard(None)
        if offered and emulator.strip() not in offered:
            listed = ", ".join(sorted(e for e in offered if e))
            return (f"emulator '{emulator.strip()}' is not offered for '{dom_type}' guests "
                    f"(offered: {listed})")
    return None


def _vcpu_limit(caps: HostCapabilities, arches: set[str],
                machine: str | None) -> tuple[str, int] | None:
    """(machine, maxCpus) bounding the vcpus of a guest on one of `arches`: the machine
    asked for (or what its alias stands for), else the most any listed machine allows
    (the default machine is the hypervisor's choice, so no tighter bound is sure)."""
    limits = [(m, n) for arch, m, n in caps.max_cpus if arch in arches]
    if not limits:
        return None
    if machine:
        names = {machine, caps.canonical_machine(machine)}
        found = [(m, n) for m, n in limits if m in names]
        return max(found, key=lambda item: item[1]) if found else None
    return max(limits, key=lambda item: item[1])


_EMPTY = GuestDomainType(type="", emulator=None, machines=frozenset())


def device_problems(root: etree._Element, domcaps_xml: str) -> list[tuple[str, str]]:
    """(path, why) for each device of the domain `root` that libvirt's domain
    capabilities `domcaps_xml` say the host does not offer. Only TPMs for now: the device
    whose support most depends on what is installed (swtpm) and on the arch."""
    tpms = root.findall("devices/tpm")
    if not tpms:
        return []
    offered = parse(domcaps_xml, source="<domainCapabilities>").find("devices/tpm")
    if offered is None:
        return []  # the host does not say: libvirt will decide
    if offered.get("supported") == "no":
        return [("devices/tpm", "the host offers no TPM to these guests")]
    out: list[tuple[str, str]] = []
    for tpm in tpms:
        backend = tpm.find("backend")
        wanted = (("devices/tpm/@model", "model", tpm.get("model")),
                  ("devices/tpm/backend/@type", "backendModel",
                   backend.get("type") if backend is not None else None),
                  ("devices/tpm/backend/@version", "backendVersion",
                   backend.get("version") if backend is not None else None))
        for path, enum, value in wanted:
            values = [v.text or "" for v in offered.iterfind(f"enum[@name='{enum}']/value")]
            if value and values and value not in values:
                what = {"model": "TPM model", "backendModel": "TPM backend",
                        "backendVersion": "TPM version"}[enum]
                out.append((path, f"{what} '{value}' is not offered for these guests "
                                  f"(offered: {', '.join(values)})"))
    return out
