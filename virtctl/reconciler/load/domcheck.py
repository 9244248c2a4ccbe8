"""What libvirt refuses in a domain definition beyond its schema and that needs no host
to see, checked while loading so that validation catches it instead of a define in the
middle of a run. Pure. (What depends on the host, such as the vcpus a machine type
allows, is checked against its capabilities: `virtctl.capabilities`.)

- per-device `<boot order>` together with `<os><boot dev>` (libvirt: "per-device boot
  elements cannot be used together with os/boot elements");
- one boot order given to two devices;
- `<vcpu current='N'>` above the `<vcpu>` count, and a vcpu or iothreads count that is
  no whole number or over limits.MAX_VCPUS / MAX_IOTHREADS (`<vcpu>-1</vcpu>` and
  `<iothreads>4294967295</iothreads>` made libvirt 9.0's daemon exit);
- two disks with one target (`hdc` twice: libvirt "target 'hdc' duplicated");
- a NIC's MAC that is malformed or multicast (libvirt "expected unicast mac address");
- sizes (memory, currentMemory, maxMemory, memtune limits, NUMA cells, memory devices,
  hugepages) that are not a whole number, are negative, have an unknown unit or reach
  8 EiB (libvirt: "Invalid value", "size value ... is out of range"); a memory of 0 (no
  NUMA cells to give it); currentMemory above memory or of 0 (libvirt would change it
  silently and the guest never match its spec) or memory above maxMemory;
- a NIC's bandwidth rate or MTU that is no whole number (libvirt: "could not convert
  bandwidth average value", "malformed mtu size");
- a bridge, tap or host device name Linux cannot have (over 15 bytes, '/', ':', spaces):
  libvirt defines the guest, the start fails;
- more devices than limits.MAX_DOMAIN_DEVICES.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from ...converters.sizes import MAX_BYTES, unit_bytes
from ...limits import MAX_DOMAIN_DEVICES, MAX_IOTHREADS, MAX_VCPUS, ifname_problem, mac_problem

#: libvirt keeps memory in KiB below 2^53 (virDomainParseMemory: LLONG_MAX bytes).
_MAX_MEMORY_KIB = 2**53 - 1
#: Elements whose text is a size with a `unit` attribute (default KiB).
_SIZE_TEXT = ("memory", "currentMemory", "maxMemory", "memtune/hard_limit",
              "memtune/soft_limit", "memtune/swap_hard_limit", "memtune/min_guarantee",
              "devices/memory/target/size", "devices/memory/target/requested",
              "devices/memory/target/block")


def domain_problems(root: etree._Element) -> Iterator[tuple[etree._Element, str, str]]:
    """(element, path, message) for each thing libvirt would refuse in this <domain>."""
    os_boot = root.find("os/boot")
    orders = [b for b in root.iterfind("devices/*/boot") if b.get("order") is not None]
    if os_boot is not None and orders:
        yield (orders[0], f"devices/{orders[0].getparent().tag}/boot/@order",
               "a per-device <boot order> cannot be used together with <os><boot dev>: "
               "use one or the other")
    seen: dict[str, str] = {}
    for boot in orders:
        order, device = boot.get("order") or "", boot.getparent().tag
        if not order.isdigit() or int(order) < 1:
            yield (boot, f"devices/{device}/boot/@order",
                   f"boot order must be a positive number, not {order!r}")
        elif order in seen:
            yield (boot, f"devices/{device}/boot/@order",
                   f"boot order {order} is already given to the {seen[order]} device")
        else:
            seen[order] = device
    vcpu = root.find("vcpu")
    if vcpu is not None:
        count, current = (vcpu.text or "").strip(), vcpu.get("current")
        for value, path in ((count, "vcpu"), (current, "vcpu/@current")):
            # libvirt 9.0's daemon exits on <vcpu>-1</vcpu> or 4294967295 (seen here).
            if value is not None and not (value.isascii() and value.isdigit()
                                          and 1 <= int(value) <= MAX_VCPUS):
                yield (vcpu, path, f"a vcpu count is a whole number from 1 to "
                                   f"{MAX_VCPUS:,}, not {value!r}")
        if count.isdigit() and current is not None and current.isdigit() \
                and int(current) > int(count):
            yield (vcpu, "vcpu/@current",
                   f"{current} current vcpus are more than the {count} the guest may have")
    iothreads = root.find("iothreads")
    if iothreads is not None:
        value = (iothreads.text or "").strip()
        if not (value.isascii() and value.isdigit() and int(value) <= MAX_IOTHREADS):
            yield (iothreads, "iothreads",
                   f"iothreads is a whole number from 0 to {MAX_IOTHREADS:,}, not {value!r}")
    yield from _disk_targets(root)
    yield from _nics(root)
    yield from _sizes(root)
    devices = root.find("devices")
    if devices is not None and len(devices) > MAX_DOMAIN_DEVICES:
        yield (devices, "devices", f"{len(devices):,} devices are more than the "
                                   f"{MAX_DOMAIN_DEVICES:,} a guest may declare")


def _disk_targets(root: etree._Element) -> Iterator[tuple[etree._Element, str, str]]:
    seen: set[str] = set()
    for target in root.iterfind("devices/disk/target"):
        dev = target.get("dev")
        if dev is None:
            continue
        if dev in seen:
            yield (target, "devices/disk/target/@dev",
                   f"disk target {dev!r} is given to two disks; each disk needs its own")
        seen.add(dev)


def _nics(root: etree._Element) -> Iterator[tuple[etree._Element, str, str]]:
    for iface in root.iterfind("devices/interface"):
        for way, name, problem in bandwidth_problems(iface):
            yield (way, f"devices/interface/bandwidth/{way.tag}/@{name}", problem)
        mtu = iface.find("mtu")
        size = (mtu.get("size") or "").strip() if mtu is not None else None
        if mtu is not None and not (size and size.isascii() and size.isdigit()):
            yield (mtu, "devices/interface/mtu/@size", f"an MTU is a whole number, not {size!r}")
        for mac in iface.iterfind("mac"):
            problem = mac_problem(mac.get("address") or "")
            if problem is not None:
                yield (mac, "devices/interface/mac/@address", problem)
        kind = iface.get("type")
        names = [("target", "dev")]
        if kind == "bridge":
            names.append(("source", "bridge"))
        elif kind == "direct":
            names.append(("source", "dev"))
        for tag, attr in names:
            elem = iface.find(tag)
            value = elem.get(attr) if elem is not None else None
            if elem is not None and value is not None:
                problem = ifname_problem(value)
                if problem is not None:
                    yield (elem, f"devices/interface/{tag}/@{attr}", problem)


def _kib(number: str | None, unit: str | None) -> tuple[int | None, str | None]:
    """(KiB, None) for a libvirt size, or (None, why not) under libvirt's rules."""
    text = (number or "").strip()
    per_unit = unit_bytes((unit or "").strip())
    if not text.isascii() or not text.isdigit():
        return None, f"{text!r} is not a whole number of {unit or 'KiB'}"
    if per_unit is None:
        return None, f"unknown unit {unit!r} (use KiB, MiB, GiB, ... or bytes)"
    total = int(text) * per_unit
    if total > MAX_BYTES or -(-total // 1024) > _MAX_MEMORY_KIB:
        return None, f"{text} {unit or 'KiB'} is 8 EiB or more: no host has that much"
    return -(-total // 1024), None


def _sizes(root: etree._Element) -> Iterator[tuple[etree._Element, str, str]]:
    found: dict[str, int] = {}
    for path in _SIZE_TEXT:
        for elem in root.iterfind(path):
            kib, why = _kib(elem.text, elem.get("unit"))
            if why is not None:
                yield (elem, path, f"invalid size: {why}")
            elif kib is not None:
                found.setdefault(path, kib)
    for path, attr in (("cpu/numa/cell", "memory"), ("memoryBacking/hugepages/page", "size")):
        for elem in root.iterfind(path):
            if elem.get(attr) is not None:
                _, why = _kib(elem.get(attr), elem.get("unit"))
                if why is not None:
                    yield (elem, f"{path}/@{attr}", f"invalid size: {why}")
    memory, current, maximum = (found.get(k) for k in ("memory", "currentMemory", "maxMemory"))
    if memory == 0 and root.find("cpu/numa/cell") is None:
        yield (root.find("memory"), "memory", "a guest needs some memory; 0 is refused")
    if current == 0:
        yield (root.find("currentMemory"), "currentMemory",
               "currentMemory 0 is taken as all of memory by libvirt (the spec would never "
               "match); give a size or leave currentMemory out")
    if memory is not None and current is not None and current > memory:
        yield (root.find("currentMemory"), "currentMemory",
               f"currentMemory ({current} KiB) exceeds memory ({memory} KiB)")
    if memory is not None and maximum is not None and memory > maximum:
        yield (root.find("memory"), "memory",
               f"memory ({memory} KiB) exceeds maxMemory ({maximum} KiB)")


#: <bandwidth> rates (KiB/s) and bursts (KiB): libvirt reads each as an unsigned 64-bit
#: whole number ("could not convert bandwidth average value '-1'").
_RATES = ("average", "peak", "burst", "floor")


def bandwidth_problems(elem: etree._Element) -> Iterator[tuple[etree._Element, str, str]]:
    """(element, attribute, message) for each rate of the <bandwidth> in `elem` that is
    no whole number of 0 to 2^64 - 1 (interfaces, networks, port groups)."""
    for way in elem.iterfind("bandwidth/*"):
        for name in _RATES:
            value = (way.get(name) or "0").strip()
            if not (value.isascii() and value.isdigit() and int(value) < 2**64):
                yield (way, name, f"bandwidth {way.tag} {name} is a whole number (KiB/s, "
                                  f"KiB for a burst), not {way.get(name)!r}")
