"""What libvirt refuses in a domain definition beyond its schema and that needs no host
to see, checked while loading so that validation catches it instead of a define in the
middle of a run. Pure. (What depends on the host, such as the vcpus a machine type
allows, is checked against its capabilities: `virtctl.capabilities`.)

- per-device `<boot order>` together with `<os><boot dev>` (libvirt: "per-device boot
  elements cannot be used together with os/boot elements");
- one boot order given to two devices;
- `<vcpu current='N'>` above the `<vcpu>` count.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree


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
        if count.isdigit() and current is not None and current.isdigit() \
                and int(current) > int(count):
            yield (vcpu, "vcpu/@current",
                   f"{current} current vcpus are more than the {count} the guest may have")
