"""xl's `nestedhvm` and `cpuid` <-> `<cpu mode='host-passthrough'>`, both ways, as libvirt
11.3 maps them. Part of the xl dialect (`virtctl.converters.xen.xl`). Pure.

xl hands the host's CPU to an HVM guest and edits single CPUID bits; libvirt says the
same with a host-passthrough `<cpu>` and feature policies. `nestedhvm` is the
virtualisation bit: 1 passes it through, 0 becomes `<feature policy='disable'
name='vmx'/>`. libvirt picks vmx or svm from the host's capabilities; a pure converter
has no host, so it writes vmx (libvirt's own choice without capabilities) and reads
either. `cpuid` must be xl's "host,NAME=POLICY,..." form; the older list of register
masks has no XML equivalent and is refused, as libvirt refuses it.
"""

from __future__ import annotations

from lxml import etree

from .xmbase import Guest, Writer, sub
from .xmparse import ConfigReader

#: Xen's CPUID names where libvirt's (QEMU's) differ; the rest are the same word.
_XEN_TO_LIBVIRT = {
    "cmt": "cqm",
    "lahfsahf": "lahf_lm",
    "nodeid": "nodeid_msr",
    "page1gb": "pdpe1gb",
    "sse3": "pni",
    "sse4_1": "sse4.1",
    "sse4_2": "sse4.2",
    "svm_decode": "decodeassists",
    "svm_lbrv": "lbrv",
    "svm_npt": "npt",
    "svm_nrips": "nrip-save",
    "svm_pausefilt": "pause-filter",
    "svm_tscrate": "tsc-scale",
    "svm_vmcbclean": "vmcb-clean",
}
_LIBVIRT_TO_XEN = {v: k for k, v in _XEN_TO_LIBVIRT.items()}

#: xl's policy letters. 'k' (keep the host's bit) and 's' (keep it across migration)
#: have no XML word; libvirt reads both as optional, and so does virtctl.
_READ_POLICY = {"1": "force", "0": "disable", "x": "optional", "k": "optional",
                "s": "optional"}
_WRITE_POLICY = {"force": "1", "require": "1", "optional": "x", "disable": "0",
                 "forbid": "0"}
_VIRT_BITS = ("vmx", "svm")


def cpu_element(guest: Guest) -> etree._Element:
    """The guest's `<cpu>`, made host-passthrough when it is new."""
    found = guest.dom.find("cpu")
    return found if found is not None else sub(guest.dom, "cpu", mode="host-passthrough")


def read_cpu(r: ConfigReader, guest: Guest) -> None:
    nested = r.raw("nestedhvm")
    if nested is not None:
        enabled = r.flag("nestedhvm", False)
        if not guest.hvm:
            r.warn("nestedhvm", "only HVM guests nest; ignored")
        else:
            cpu = cpu_element(guest)
            if not enabled:
                sub(cpu, "feature", policy="disable", name="vmx")
    text = r.text("cpuid")
    if text is None:
        return
    pairs = [p.strip() for p in text.split(",")]
    if pairs[0] != "host":
        raise r.error("cpuid", f"only xl's \"host,NAME=POLICY,...\" form is supported, "
                               f"not one starting with {pairs[0]!r}")
    cpu = cpu_element(guest)
    for pair in pairs[1:]:
        name, _, letter = pair.partition("=")
        if not name or letter not in _READ_POLICY:
            raise r.error("cpuid", f"{pair!r}: expected NAME=POLICY with a policy of "
                                   "1, 0, x, k or s")
        sub(cpu, "feature", policy=_READ_POLICY[letter],
            name=_XEN_TO_LIBVIRT.get(name, name))


def write_cpu(w: Writer, root: etree._Element) -> None:
    cpu = root.find("cpu")
    if cpu is None or cpu.get("mode") != "host-passthrough":
        return  # any other mode stays unmarked: reported as having no xl equivalent
    w.mark(cpu, "mode")
    nested = w.hvm
    pairs = ["host"]
    for feature in cpu.findall("feature"):
        name, policy = feature.get("name") or "", feature.get("policy") or "require"
        if policy not in _WRITE_POLICY:
            continue  # unmarked: reported
        w.mark(feature, "name", "policy")
        if name in _VIRT_BITS:
            nested = _WRITE_POLICY[policy] != "0"
            continue
        pairs.append(f"{_LIBVIRT_TO_XEN.get(name, name)}={_WRITE_POLICY[policy]}")
    if w.hvm:
        w.put("nestedhvm", int(nested))
    if len(pairs) > 1:
        w.put("cpuid", ",".join(pairs))
