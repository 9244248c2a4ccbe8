"""The capabilities the embedded `sim` hypervisor offers, in libvirt's capabilities XML.

An x86_64 host that runs Xen paravirt and HVM guests, KVM and plain QEMU, each on
x86_64 and i686, so every domain variant virtctl supports can be tried without one.
"""

from __future__ import annotations

# As QEMU 7.2 reports them through libvirt 9.0 (Debian 12's `virsh capabilities` and
# `virsh domcapabilities --machine M`): (machine, canonical, maxCpus). An alias names the
# newest versioned machine, which is what libvirt stores in a definition that asked for
# the alias. Each machine type has its own vcpu limit: i440fx 255, q35 288 (x2APIC),
# isapc 1; the same for x86_64 and i686, for qemu and kvm guests.
QEMU_MACHINES = (("pc", "pc-i440fx-7.2", 255), ("pc-i440fx-7.2", None, 255),
                 ("q35", "pc-q35-7.2", 288), ("pc-q35-7.2", None, 288), ("isapc", None, 1))


# Emulator paths the documents virtctl is seeded with use (libvirt's classic examples among
# them), so each applies verbatim. libvirt reports one emulator per guest and domain type;
# the sim offers the others as further <domain> entries of the same type.
QEMU_EMULATORS = ("/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-system-i386", "/usr/bin/qemu",
                  "/usr/bin/qemu-kvm", "/usr/bin/kvm")
XEN_EMULATORS = ("/usr/lib/xen/bin/qemu-system-i386", "/usr/lib/xen/bin/qemu-dm")


def _more_emulators(dom_types: tuple[str, ...], default: str, offered: tuple[str, ...]) -> str:
    return "".join(f"<domain type='{t}'><emulator>{e}</emulator></domain>"
                   for t in dom_types for e in offered if e != default)


def _qemu_guest(arch: str, emulator: str) -> str:
    machines = "".join(
        f"<machine maxCpus='{n}' canonical='{c}'>{m}</machine>" if c
        else f"<machine maxCpus='{n}'>{m}</machine>"
        for m, c, n in QEMU_MACHINES
    )
    return (
        "<guest><os_type>hvm</os_type>"
        f"<arch name='{arch}'><wordsize>{64 if arch == 'x86_64' else 32}</wordsize>"
        f"<emulator>{emulator}</emulator>{machines}"
        "<domain type='qemu'/><domain type='kvm'/>"
        f"{_more_emulators(('qemu', 'kvm'), emulator, QEMU_EMULATORS)}</arch>"
        "<features><acpi default='on' toggle='yes'/><apic default='on' toggle='no'/>"
        "<pae/><nonpae/></features></guest>"
    )


def _xen_guests(arch: str) -> str:
    word = 64 if arch == "x86_64" else 32
    default = XEN_EMULATORS[0]
    more = _more_emulators(("xen",), default, XEN_EMULATORS)
    return (
        "<guest><os_type>xen</os_type>"
        f"<arch name='{arch}'><wordsize>{word}</wordsize>"
        f"<emulator>{default}</emulator>"
        f"<machine>xenpv</machine><domain type='xen'/>{more}</arch></guest>"
        "<guest><os_type>hvm</os_type>"
        f"<arch name='{arch}'><wordsize>{word}</wordsize>"
        f"<emulator>{default}</emulator>"
        "<loader>/usr/lib/xen/boot/hvmloader</loader>"
        f"<machine>xenfv</machine><domain type='xen'/>{more}</arch>"
        "<features><pae/><nonpae/><acpi default='on' toggle='yes'/>"
        "<apic default='on' toggle='no'/><hap default='on' toggle='yes'/></features></guest>"
    )


CAPABILITIES_XML = (
    "<capabilities><host><uuid>00000000-0000-4000-8000-00000000517d</uuid>"
    "<cpu><arch>x86_64</arch></cpu>"
    "<migration_features><live/></migration_features></host>"
    + _xen_guests("x86_64")
    + _xen_guests("i686")
    + _qemu_guest("x86_64", "/usr/bin/qemu-system-x86_64")
    + _qemu_guest("i686", "/usr/bin/qemu-system-i386")
    + "</capabilities>"
)

DEFAULT_MACHINE = {("qemu", "hvm"): "pc", ("kvm", "hvm"): "pc", ("xen", "hvm"): "xenfv",
                   ("xen", "xen"): "xenpv", ("xen", "linux"): "xenpv"}


#: The sim's domain capabilities, the part virtctl checks: the TPM models and backends a
#: QEMU x86 host with swtpm offers (as libvirt 9.0 on Debian 12 reports them).
DOMAIN_CAPABILITIES_XML = """<domainCapabilities>
  <devices>
    <tpm supported='yes'>
      <enum name='model'><value>tpm-tis</value><value>tpm-crb</value></enum>
      <enum name='backendModel'>
        <value>passthrough</value><value>emulator</value><value>external</value>
      </enum>
      <enum name='backendVersion'><value>1.2</value><value>2.0</value></enum>
    </tpm>
  </devices>
</domainCapabilities>
"""
