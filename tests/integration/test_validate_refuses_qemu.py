"""Issue 20 C on qemu:///system: what `validate` now refuses is what libvirt refuses, or
what fails only once the object starts, or what would never converge. For each case the
premise is checked on the host itself (libvirt's define refuses the definition, or the
define passes and the start fails, or libvirt silently changes the value), then
`validate` and `apply` exit 1 naming the file, the line and the field, and nothing at all
is made on the host (no domain, network, pool or seed volume).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, libvirt_module, purge_libvirt, require_connection
from tests.integration.crashkit import virtctl

URI = "qemu:///system"


@pytest.fixture
def prefix() -> Iterator[str]:
    require_connection(URI)
    prefix = f"{PREFIX}{secrets.token_hex(3)}-"
    yield prefix
    purge_libvirt(URI, prefix=prefix)


@dataclass(frozen=True)
class Case:
    files: dict[str, str]
    expected: str  # FILE:LINE: FIELD: words
    kind: str  # domain or network: the premise's definition
    premise: str  # libvirt XML shown to libvirt itself
    refused_at: str  # "define", "start", or "clamped" (accepted, changed: never converges)
    words: str  # in libvirt's error (or, for clamped, in the defined XML)


def domain(name: str, devices: str = "", memory: str = "<memory unit='MiB'>32</memory>"
           ) -> str:
    return (f"<domain type='qemu'>\n  <name>{name}</name>\n  {memory}\n"
            "  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n"
            f"  <devices>\n    {devices}\n  </devices>\n</domain>\n")


def cases(p: str) -> dict[str, Case]:
    bad_mac = "<interface type='user'><mac address='52:54:00:zz:00:01'/></interface>"
    bcast = "<interface type='user'><mac address='ff:ff:ff:ff:ff:ff'/></interface>"
    two_cds = ("<disk type='file' device='cdrom'><target dev='hdd' bus='ide'/></disk>"
               "<disk type='file' device='cdrom'><target dev='hdd' bus='ide'/></disk>")
    long_tap = "<interface type='ethernet'><target dev='vt-much-too-long0'/></interface>"
    long_bridge = (f"<network>\n  <name>{p}net</name>\n  <bridge name='vt-much-too-long0'/>\n"
                   "  <ip address='10.213.77.1' prefix='24'/>\n</network>\n")
    dhcp = (f"<network>\n  <name>{p}net</name>\n  <bridge name='vtc20{p[-4:-1]}'/>\n"
            "  <ip address='10.213.78.1' prefix='24'>\n    <dhcp>\n"
            "      <host mac='01:00:00:00:00:01' ip='10.213.78.5'/>\n"
            "    </dhcp>\n  </ip>\n</network>\n")
    return {
        "mac-malformed": Case(
            {"bad.xml": domain(f"{p}mac", bad_mac)},
            "bad.xml:6: devices/interface/mac/@address: malformed MAC address",
            "domain", domain(f"{p}mac", bad_mac), "define", "unable to parse mac address"),
        "mac-multicast-xm": Case(
            {"bad.cfg": f'name = "{p}xm"\nmemory = 32\nbuilder = "hvm"\n'
                        'vif = [ "mac=ff:ff:ff:ff:ff:ff,bridge=virbr0" ]\n'},
            "bad.cfg:4: vif: MAC address 'ff:ff:ff:ff:ff:ff' is multicast",
            "domain", domain(f"{p}xm", bcast), "define", "expected unicast mac address"),
        "memory-negative": Case(
            {"bad.xml": domain(f"{p}neg", memory="<memory unit='KiB'>-1</memory>")},
            "bad.xml:3: memory: invalid size: '-1' is not a whole number of KiB",
            "domain", domain(f"{p}neg", memory="<memory unit='KiB'>-1</memory>"), "define",
            "Invalid value '-1'"),
        "memory-1e309-EiB": Case(
            {"bad.xml": domain(f"{p}huge", memory="<memory unit='EiB'>1e309</memory>")},
            "bad.xml:3: memory: invalid size: '1e309' is not a whole number of EiB",
            "domain", domain(f"{p}huge", memory="<memory unit='EiB'>1e309</memory>"),
            "define", "Invalid value '1e309'"),
        "current-memory-over-memory": Case(
            {"bad.xml": domain(f"{p}cur", memory="<memory unit='MiB'>32</memory>\n"
                               "  <currentMemory unit='MiB'>64</currentMemory>")},
            "bad.xml:4: currentMemory: currentMemory (65536 KiB) exceeds memory",
            "domain", domain(f"{p}cur", memory="<memory unit='MiB'>32</memory>"
                             "<currentMemory unit='MiB'>64</currentMemory>"), "clamped",
            "<currentMemory unit='KiB'>32768</currentMemory>"),
        "current-memory-zero": Case(
            {"bad.xml": domain(f"{p}cur0", memory="<memory unit='MiB'>32</memory>\n"
                               "  <currentMemory>0</currentMemory>")},
            "bad.xml:4: currentMemory: currentMemory 0 is taken as all of memory",
            "domain", domain(f"{p}cur0", memory="<memory unit='MiB'>32</memory>"
                             "<currentMemory>0</currentMemory>"), "clamped",
            "<currentMemory unit='KiB'>32768</currentMemory>"),
        "disk-target-twice": Case(
            {"bad.xml": domain(f"{p}cd", two_cds.replace("</disk><disk", "</disk>\n    <disk"))},
            "bad.xml:7: devices/disk/target/@dev: disk target 'hdd' is given to two disks",
            "domain", domain(f"{p}cd", two_cds), "define", "target 'hdd' duplicated"),
        "tap-name-too-long": Case(
            {"bad.xml": domain(f"{p}tap", long_tap)},
            "bad.xml:6: devices/interface/target/@dev: network interface name "
            "'vt-much-too-long0' is 17 bytes; Linux takes at most 15",
            "domain", domain(f"{p}tap", long_tap), "start", "too long"),
        "bridge-name-too-long": Case(
            {"bad.xml": long_bridge},
            "bad.xml:3: bridge/@name: network interface name 'vt-much-too-long0' is 17 bytes",
            "network", long_bridge, "start", "vt-much-too-long0"),
        "dhcp-host-multicast": Case(
            {"bad.xml": dhcp},
            "bad.xml:6: ip/dhcp/host/@mac: MAC address '01:00:00:00:00:01' is multicast",
            "network", dhcp, "define", "expected unicast mac address"),
    }


def _premise(case: Case) -> None:
    """libvirt itself refuses the definition (define or start), or changes it."""
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        define = conn.defineXML if case.kind == "domain" else conn.networkDefineXML
        try:
            obj = define(case.premise)
        except libvirt.libvirtError as exc:
            assert case.refused_at == "define", exc
            assert case.words in str(exc)
            return
        try:
            assert case.refused_at != "define", "libvirt took it"
            if case.refused_at == "clamped":
                assert case.words in obj.XMLDesc(0)
                return
            with pytest.raises(libvirt.libvirtError) as caught:
                obj.create()
            assert case.words in str(caught.value)
        finally:
            obj.undefine()
    finally:
        conn.close()


@pytest.mark.parametrize("name", list(cases("x-")))
def test_validate_refuses_what_libvirt_refuses_and_apply_makes_nothing(
        name: str, prefix: str, tmp_path: Path) -> None:
    case = cases(prefix)[name]
    _premise(case)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "good.yaml").write_text(
        f"kind: Domain\nname: {prefix}good\ntype: qemu\nmemory: 32MiB\nstate: shutoff\n"
        "os: {type: hvm, arch: x86_64, machine: pc}\n")
    for file_name, text in case.files.items():
        (specs / file_name).write_text(text)
    state = tmp_path / "state"
    for verb in (("validate",), ("validate", "--offline"), ("apply",)):
        result = virtctl(state, "-c", URI, *verb, "-f", str(specs))
        assert result.returncode == 1, (verb, result.stdout, result.stderr)
        assert case.expected in result.stderr, (verb, result.stderr)
        assert "Traceback" not in result.stderr
    _assert_nothing_made(prefix)


def test_a_cloud_init_seed_on_a_declared_cdrom_target_makes_no_volume(
        prefix: str, tmp_path: Path) -> None:
    """Before, apply made the pool and the seed ISO, then libvirt refused the domain
    ("target 'hdd' duplicated"): an orphan volume. Now nothing is made."""
    from tests.contract.support import TEST_DIRS

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text(
        f"kind: StoragePool\nname: {prefix}images\ntype: dir\n"
        f"target: {{path: {TEST_DIRS}/{prefix}images}}\n---\n"
        f"kind: Domain\nname: {prefix}web\ntype: qemu\nmemory: 32MiB\nstate: shutoff\n"
        "os: {type: hvm, arch: x86_64, machine: pc}\ndisks:\n"
        "  - {type: file, device: cdrom, target: hdd, bus: ide}\n"
        f"cloudInit:\n  pool: {prefix}images\n  userData: {{users: [default]}}\n")
    state = tmp_path / "state"
    for verb in ("validate", "apply"):
        result = virtctl(state, "-c", URI, verb, "-f", str(specs))
        assert result.returncode == 1, (verb, result.stdout, result.stderr)
        assert ("web.yaml:14: cloudInit: the cloud-init seed's CD-ROM takes target 'hdd', "
                "which disks[0] has already") in result.stderr, result.stderr
    _assert_nothing_made(prefix)
    assert not (TEST_DIRS / f"{prefix}images").exists()


def _assert_nothing_made(prefix: str) -> None:
    conn = libvirt_module().open(URI)
    try:
        made = [o.name() for o in (*conn.listAllDomains(0), *conn.listAllNetworks(0),
                                   *conn.listAllStoragePools(0))
                if o.name().startswith(prefix)]
    finally:
        conn.close()
    assert made == []


@pytest.mark.parametrize("extra", ["<vcpu>4294967295</vcpu>",
                                   "<vcpu>1</vcpu><iothreads>4294967295</iothreads>"])
def test_a_count_that_brings_libvirtd_down_never_reaches_it(extra: str, tmp_path: Path) -> None:
    """libvirt 9.0's daemon drops the connection (and exits) on a <vcpu> or <iothreads>
    of 2^32 - 1, which is also what "-1" wraps to. Shown on a private daemon (never the
    host's: the suite beside it would lose its libvirtd); virtctl refuses both while
    loading, so no run ever sends them."""
    from tests.integration.libvirtd_tcp import RemoteLibvirtd

    require_connection(URI)  # root and a working libvirt
    libvirt = libvirt_module()
    xml = (f"<domain type='qemu'>\n  <name>{PREFIX}crash</name>\n  <memory unit='MiB'>32</memory>\n"
           f"  {extra}\n  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n</domain>\n")
    daemon = RemoteLibvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        conn = libvirt.open(daemon.uri)
        with pytest.raises(libvirt.libvirtError) as caught:
            conn.defineXML(xml)
        assert "End of file" in str(caught.value) or "closed" in str(caught.value)
    finally:
        daemon.stop()
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "bad.xml").write_text(xml)
    field = "iothreads" if "iothreads" in extra else "vcpu"
    for verb in (("validate", "--offline"), ("apply", "--dry-run")):
        result = virtctl(tmp_path / "state", *verb, "-f", str(specs))  # the sim: never a daemon
        assert result.returncode == 1, result.stdout
        assert f"bad.xml:4: {field}: " in result.stderr and "'4294967295'" in result.stderr
