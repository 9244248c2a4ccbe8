"""`validate` refuses what qemu:///system would refuse, so `apply` never half-applies: a
name with '/', absurd memory or vcpus, per-device boot order together with <os><boot>, a
TPM model the host does not offer (its domain capabilities).
Each case sits beside a valid guest; `validate` and `apply` both exit 1 naming the file,
the line and the field, and nothing at all is defined on the host.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, libvirt_module, purge_libvirt, require_connection
from tests.integration.crashkit import virtctl

URI = "qemu:///system"


def guest_yaml(name: str, extra: str = "", vcpus: str = "1", memory: str = "32MiB") -> str:
    return (f"kind: Domain\nname: {name}\ntype: qemu\nmemory: {memory}\nvcpus: {vcpus}\n"
            f"state: shutoff\nos: {{type: hvm, arch: x86_64, machine: pc}}\n{extra}")


@pytest.fixture
def prefix() -> Iterator[str]:
    require_connection(URI)
    prefix = f"{PREFIX}{secrets.token_hex(3)}-"
    yield prefix
    purge_libvirt(URI, prefix=prefix)


def cases(p: str) -> list[tuple[str, str, str, str]]:
    """(id, file name, text, expected 'FILE:LINE: FIELD: words')."""
    boot_xml = (f"<domain type='qemu'>\n  <name>{p}boot</name>\n  <memory unit='MiB'>32</memory>\n"
                "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n"
                "    <boot dev='hd'/>\n  </os>\n  <devices>\n"
                "    <interface type='user'>\n      <boot order='1'/>\n    </interface>\n"
                "  </devices>\n</domain>\n")
    return [
        ("name-slash", "bad.yaml", guest_yaml(f"{p}a/b"),
         "bad.yaml:2: name: a name has no '/'"),
        ("absurd-memory", "bad.yaml", guest_yaml(f"{p}mem", memory="16EiB"),
         "bad.yaml:4: memory: size '16EiB' is 8 EiB or more"),
        ("absurd-vcpus", "bad.yaml", guest_yaml(f"{p}cpu", vcpus="5000"),
         "bad.yaml:5: vcpu: 5000 vcpus are more than the 255 machine type 'pc' allows"),
        ("boot-order-and-os-boot", "bad.xml", boot_xml,
         "bad.xml:10: devices/interface/boot/@order: a per-device <boot order> cannot be "
         "used together with <os><boot dev>"),
        ("tpm-the-host-lacks", "bad.xml", boot_xml.replace("    <boot dev='hd'/>\n", "")
         .replace("<boot order='1'/>", "").replace(
             "  </devices>", "    <tpm model='tpm-spapr'><backend type='emulator'/></tpm>\n"
             "  </devices>"),
         "bad.xml:11: devices/tpm/@model: TPM model 'tpm-spapr' is not offered for these "
         "guests (offered: tpm-tis, tpm-crb)"),
    ]


@pytest.mark.parametrize("case", ["name-slash", "absurd-memory", "absurd-vcpus",
                                  "boot-order-and-os-boot", "tpm-the-host-lacks"])
def test_validate_refuses_what_libvirt_would_and_apply_applies_nothing(
        case: str, prefix: str, tmp_path: Path) -> None:
    (_, file_name, text, expected), = [c for c in cases(prefix) if c[0] == case]
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "good.yaml").write_text(guest_yaml(f"{prefix}good"))
    (specs / file_name).write_text(text)
    state = tmp_path / "state"
    for verb in ("validate", "apply"):
        result = virtctl(state, "-c", URI, verb, "-f", str(specs))
        assert result.returncode == 1, (verb, result.stdout, result.stderr)
        assert expected in result.stderr, (verb, result.stderr)
        assert "Traceback" not in result.stderr
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        assert [d.name() for d in conn.listAllDomains(0)
                if d.name().startswith(prefix)] == []
    finally:
        conn.close()


def test_the_sims_machine_vcpu_limits_are_libvirts() -> None:
    """The sim lists QEMU machines with the vcpu limits libvirt reports for them on this
    machine (issue 20: the sim said q35 allowed 255; libvirt 9.0 says 288), so a guest
    the sim validates is one qemu:///system takes, and the other way round."""
    from virtctl.capabilities import parse_capabilities
    from virtctl.drivers.sim.caps import CAPABILITIES_XML

    require_connection(URI)
    conn = libvirt_module().open(URI)
    try:
        real = parse_capabilities(conn.getCapabilities()).max_cpus
    finally:
        conn.close()
    sim = parse_capabilities(CAPABILITIES_XML).max_cpus
    real_limits = {(arch, machine): n for arch, machine, n in real}
    compared = {(arch, machine): (n, real_limits[(arch, machine)])
                for arch, machine, n in sim if (arch, machine) in real_limits}
    # The aliases exist on every QEMU; the versioned names only on Debian 12's 7.2.
    assert {(a, m) for a in ("x86_64", "i686") for m in ("pc", "q35", "isapc")} <= set(compared)
    assert {k: v for k, v in compared.items() if v[0] != v[1]} == {}
