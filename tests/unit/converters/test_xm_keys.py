"""Key by key: each xm key lands where libvirt puts it, and bad values fail with their key."""

from __future__ import annotations

import pytest
from lxml import etree

from virtctl.converters.xen.xm import xm_to_xml, xml_to_xm
from virtctl.errors import ErrorCode, ErrorDomain, SpecError

PV = "name = 'g'\n"
HVM = "name = 'g'\nbuilder = 'hvm'\n"


def convert(cfg: str, flavor: str = "xm") -> etree._Element:
    result = xm_to_xml(cfg, flavor=flavor)
    return etree.fromstring(result.text.encode())


def xpath(root: etree._Element, expr: str) -> list[str]:
    found = root.xpath(expr)
    if not isinstance(found, list):
        return [str(found)]
    return [str(v.tag) if isinstance(v, etree._Element) else str(v) for v in found]


@pytest.mark.parametrize(("cfg", "expr", "expected"), [
    pytest.param(PV, "/domain/@type", ["xen"], id="domain-type-xen"),
    pytest.param("name = 'a&b'", "/domain/name/text()", ["a&b"], id="name"),
    pytest.param(PV + "uuid = 'C7A5FDB2CDAF9455926AD65C16DB1809'", "/domain/uuid/text()",
                 ["c7a5fdb2-cdaf-9455-926a-d65c16db1809"], id="uuid-normalised"),
    pytest.param(PV, "/domain/uuid", [], id="no-uuid-no-random-one"),
    pytest.param(PV, "/domain/memory/text()", ["131072"], id="memory-default-128MiB"),
    pytest.param(PV + "memory = 394\nmaxmem = 579", "/domain/currentMemory/text()",
                 ["403456"], id="memory-MiB-to-KiB"),
    pytest.param(PV + "memory = 394\nmaxmem = 579", "/domain/memory/text()", ["592896"],
                 id="maxmem-MiB-to-KiB"),
    pytest.param(PV + "vcpus = 4\nvcpu_avail = 3", "/domain/vcpu/@current", ["2"],
                 id="vcpu_avail-bitmask"),
    pytest.param(PV + "vcpus = 2\nmaxvcpus = 8", "/domain/vcpu/text()", ["8"], id="maxvcpus"),
    pytest.param(PV + "vcpus = 2\nmaxvcpus = 8", "/domain/vcpu/@current", ["2"],
                 id="maxvcpus-vcpus-is-current"),
    pytest.param(PV + "cpus = '0-3,^2'", "/domain/vcpu/@cpuset", ["0-1,3"], id="cpus"),
    pytest.param(PV, "/domain/os/type/@machine", ["xenpv"], id="builder-default-linux"),
    pytest.param(HVM, "/domain/os/type/text()", ["hvm"], id="builder-hvm"),
    pytest.param(HVM, "/domain/os/loader/text()", ["/usr/lib/xen/boot/hvmloader"],
                 id="hvm-loader-default"),
    pytest.param(HVM + "kernel = '/x/hvmloader'", "/domain/os/loader/text()", ["/x/hvmloader"],
                 id="hvm-kernel-is-loader"),
    pytest.param(PV + "kernel = '/k'\nramdisk = '/r'", "/domain/os/initrd/text()", ["/r"],
                 id="ramdisk"),
    pytest.param(PV + "root = '/dev/xvda1'\nextra = 'quiet'", "/domain/os/cmdline/text()",
                 ["root=/dev/xvda1 quiet"], id="root-and-extra"),
    pytest.param(PV + "bootloader = '/usr/bin/pygrub'\nbootargs = '-q'",
                 "/domain/bootloader_args/text()", ["-q"], id="bootargs"),
    pytest.param(HVM + "boot = 'ndca'", "/domain/os/boot/@dev",
                 ["network", "cdrom", "hd", "fd"], id="boot-order"),
    pytest.param(HVM, "/domain/features/*", ["acpi", "apic", "pae"], id="acpi-apic-pae-default-on"),
    pytest.param(HVM + "pae = 0\nacpi = 0\napic = 0", "/domain/features", [],
                 id="features-off"),
    pytest.param(HVM + "hap = 0", "/domain/features/hap/@state", ["off"], id="hap-off"),
    pytest.param(HVM + "viridian = 1", "count(/domain/features/viridian)", ["1.0"],
                 id="viridian"),
    pytest.param(HVM + "hpet = 1", "/domain/clock/timer[@name='hpet']/@present", ["yes"],
                 id="hpet"),
    pytest.param(HVM + "localtime = 1\nrtc_timeoffset = 60", "/domain/clock/@adjustment",
                 ["60"], id="rtc_timeoffset"),
    pytest.param(HVM + "localtime = 1", "/domain/clock/@basis", ["localtime"],
                 id="hvm-localtime-basis"),
    pytest.param(PV + "localtime = 1", "/domain/clock/@offset", ["localtime"],
                 id="pv-localtime"),
    pytest.param(PV + "on_crash = 'rename-restart'", "/domain/on_crash/text()",
                 ["rename-restart"], id="on_crash"),
    pytest.param(HVM + "device_model = '/q'", "/domain/devices/emulator/text()", ["/q"],
                 id="device_model-old-key"),
    pytest.param(HVM + "device_model_override = '/q'", "/domain/devices/emulator/text()",
                 ["/q"], id="device_model_override"),
    pytest.param(HVM + "device_model_override = '/q'\ndevice_model = '/old'",
                 "/domain/devices/emulator/text()", ["/q"], id="device_model_override-wins"),
    pytest.param(HVM + "disk = ['phy:/dev/v,hda,w']", "/domain/devices/disk/target/@bus",
                 ["ide"], id="disk-hda-ide"),
    pytest.param(HVM + "disk = ['phy:/dev/v,sdb,w']", "/domain/devices/disk/target/@bus",
                 ["scsi"], id="disk-sd-scsi"),
    pytest.param(HVM + "disk = ['phy:/dev/v,xvda,w']", "/domain/devices/disk/target/@bus",
                 ["xen"], id="disk-xvd-xen"),
    pytest.param(PV + "disk = ['/dev/v,xvda,w']", "/domain/devices/disk/driver/@name",
                 ["phy"], id="disk-default-driver-phy"),
    pytest.param(PV + "disk = ['tap:aio:/i,xvda,w']", "/domain/devices/disk/driver/@type",
                 ["raw"], id="disk-tap-aio-raw"),
    pytest.param(HVM + "disk = ['file:/i,hdc:cdrom,r']", "/domain/devices/disk/@device",
                 ["cdrom"], id="disk-cdrom"),
    pytest.param(HVM + "disk = [',hdc:cdrom,r']", "/domain/devices/disk/source", [],
                 id="disk-empty-cdrom"),
    pytest.param(PV + "disk = ['phy:/d,xvda,w!']", "count(//disk/shareable)", ["1.0"],
                 id="disk-shareable"),
    pytest.param(PV + "vif = ['mac=00:16:3E:AA:BB:CC']", "//interface/mac/@address",
                 ["00:16:3e:aa:bb:cc"], id="vif-mac-lowercase"),
    pytest.param(PV + "vif = ['script=vif-bridge']", "//interface/@type", ["bridge"],
                 id="vif-bridge-script-means-bridge"),
    pytest.param(PV + "vif = ['ip=10.0.0.1']", "//interface/@type", ["ethernet"],
                 id="vif-ethernet"),
    pytest.param(HVM + "vif = ['type=netfront']", "//interface/model/@type", ["netfront"],
                 id="vif-type-netfront"),
    pytest.param(HVM + "vif = ['type=ioemu']", "//interface/model", [], id="vif-type-ioemu"),
    pytest.param(PV + "vif = ['rate=8Mb/s']", "//bandwidth/outbound/@average", ["1024"],
                 id="vif-rate-bits"),
    pytest.param(PV + "vif = ['vifname=v0']", "//interface/target/@dev", ["v0"],
                 id="vif-vifname"),
    pytest.param(HVM + "vnc = 1\nvncunused = 0\nvncdisplay = 25", "//graphics/@port",
                 ["5925"], id="vncdisplay"),
    pytest.param(HVM + "vnc = 1", "//graphics/@autoport", ["yes"], id="vncunused-default"),
    pytest.param(HVM + "vnc = 1\nvnclisten = '::1'", "//graphics/listen/@address", ["::1"],
                 id="vnclisten"),
    pytest.param(HVM + "vnc = 1\nvncpasswd = 'p'\nkeymap = 'fr'", "//graphics/@keymap",
                 ["fr"], id="keymap"),
    pytest.param(HVM + "sdl = 1\ndisplay = ':1'", "//graphics/@display", [":1"], id="sdl"),
    pytest.param(PV + "vfb = ['type=vnc,vncdisplay=2']", "//graphics/@port", ["5902"],
                 id="vfb-vncdisplay"),
    pytest.param(HVM + "serial = 'pty'", "//serial/@type", ["pty"], id="serial-pty"),
    pytest.param(HVM + "serial = 'tcp:h:5,server'", "//serial/source/@mode", ["bind"],
                 id="serial-tcp-server"),
    pytest.param(HVM + "parallel = '/dev/lp0'", "//parallel/source/@path", ["/dev/lp0"],
                 id="parallel"),
    pytest.param(PV, "//console/target/@type", ["xen"], id="pv-console"),
    pytest.param(HVM + "usb = 1\nusbdevice = 'tablet'", "//input[@bus='usb']/@type",
                 ["tablet"], id="usbdevice"),
    pytest.param(HVM + "soundhw = 'all'", "//sound/@model", ["sb16", "es1370"],
                 id="soundhw-all"),
    pytest.param(PV + "pci = ['1:2.3']", "//hostdev/source/address/@slot", ["0x02"],
                 id="pci-short-form"),
])
def test_key_maps_to_xml(cfg: str, expr: str, expected: list[str]) -> None:
    assert xpath(convert(cfg), expr) == expected


@pytest.mark.parametrize(("cfg", "key"), [
    pytest.param("memory = 1", "name", id="name-missing"),
    pytest.param(PV + "uuid = 'nope'", "uuid", id="uuid-malformed"),
    pytest.param(PV + "memory = 'lots'", "memory", id="memory-not-integer"),
    pytest.param(PV + "memory = 0", "memory", id="memory-zero"),
    pytest.param(PV + "vcpus = 4\nmaxvcpus = 2", "maxvcpus", id="maxvcpus-below-vcpus"),
    pytest.param(PV + "cpus = '3-1'", "cpus", id="cpus-reversed-range"),
    pytest.param(PV + "on_crash = 'explode'", "on_crash", id="lifecycle-unknown"),
    pytest.param(PV + "type = 'pvx'", "type", id="type-unknown"),
    pytest.param(HVM + "pae = [1]", "pae", id="bool-given-list"),
    pytest.param(PV + "name2 = 1\nname = ['a']", "name", id="string-given-list"),
    pytest.param(PV + "disk = ['tap:foo:/i,xvda,w']", "disk", id="disk-unknown-tap-type"),
    pytest.param(PV + "disk = ['phy:/d,,w']", "disk", id="disk-empty-target"),
    pytest.param(PV + "vif = ['mac=zz']", "vif", id="vif-bad-mac"),
    pytest.param(PV + "vif = ['bridge']", "vif", id="vif-token-without-equals"),
    pytest.param(PV + "vif = ['rate=fast']", "vif", id="vif-bad-rate"),
    pytest.param(HVM + "serial = 'bogus'", "serial", id="serial-unknown"),
    pytest.param(HVM + "serial = 'tcp:nohostport'", "serial", id="serial-tcp-no-port"),
    pytest.param(HVM + "soundhw = 'kazoo'", "soundhw", id="soundhw-unknown"),
    pytest.param(PV + "pci = ['zz:1']", "pci", id="pci-malformed"),
    pytest.param(PV + "passthrough = 'maybe'", "passthrough", id="passthrough-unknown"),
])
def test_bad_value_names_its_key(cfg: str, key: str) -> None:
    with pytest.raises(SpecError) as info:
        xm_to_xml(cfg, source="g.cfg")
    assert info.value.domain is ErrorDomain.CONVERTER
    assert info.value.code is ErrorCode.INVALID_SPEC
    assert info.value.source is not None
    assert (info.value.source.file, info.value.source.path) == ("g.cfg", key)


@pytest.mark.parametrize(("cfg", "fragment"), [
    pytest.param(PV + "cpu_weight = 256", "cpu_weight (line 2): no domain XML", id="unknown"),
    pytest.param(PV + "acpi = 1", "acpi (line 2): only applies to HVM", id="hvm-key-on-pv"),
    pytest.param(HVM + "vfb = ['type=vnc']", "vfb (line 3): ignored", id="vfb-on-hvm"),
    pytest.param(PV + "serial = 'pty'", "serial (line 2): only applies to HVM", id="pv-serial"),
    pytest.param(HVM + "vnc = 1\nvncdisplay = 3", "vncdisplay (line 4)",
                 id="vncdisplay-needs-vncunused-0"),
    pytest.param(PV + "cmdline = 'x'", "cmdline (line 2): no domain XML", id="xl-key-in-xm"),
])
def test_unmapped_keys_are_warned_with_line(cfg: str, fragment: str) -> None:
    warnings = xm_to_xml(cfg).warnings
    assert any(fragment in w for w in warnings), warnings


@pytest.mark.parametrize(("xml", "expected"), [
    pytest.param("<memory unit='MiB'>100</memory><currentMemory unit='KiB'>1</currentMemory>",
                 [("maxmem", 100), ("memory", 1)], id="memory-rounds-up"),
    pytest.param("<vcpu current='3'>4</vcpu>", [("maxvcpus", 4), ("vcpus", 3)],
                 id="vcpu-current-to-maxvcpus"),
    pytest.param("<clock offset='localtime'/>", [("localtime", 1)], id="clock-localtime"),
    pytest.param("<devices><emulator>/q</emulator></devices>",
                 [("device_model_override", '"/q"')], id="emulator-to-override"),
])
def test_xml_parts_map_to_keys(xml: str, expected: list[tuple[str, object]]) -> None:
    text = xml_to_xm(f"<domain type='xen'><name>g</name><os><type>linux</type></os>{xml}"
                     "</domain>").text
    for key, value in expected:
        assert f"{key} = {value}\n" in text


def test_vcpu_avail_is_not_written() -> None:
    text = xml_to_xm("<domain type='xen'><name>g</name><os><type>linux</type></os>"
                     "<vcpu current='2'>4</vcpu></domain>").text
    assert "vcpu_avail" not in text
    assert xpath(convert(text), "/domain/vcpu/@current") == ["2"]


def test_xml_input_errors_are_converter_errors() -> None:
    with pytest.raises(SpecError) as info:
        xml_to_xm("<domain><name>", source="d.xml")
    assert (info.value.code, info.value.domain) == (ErrorCode.PARSE_ERROR, ErrorDomain.CONVERTER)
    with pytest.raises(SpecError):
        xml_to_xm("<network><name>n</name></network>")
    with pytest.raises(SpecError):
        xml_to_xm("<domain><name>g</name><os><type>exe</type></os></domain>")


def test_output_is_deterministic() -> None:
    cfg = HVM + "vif = ['bridge=br0']\ndisk = ['phy:/d,hda,w']\nvnc = 1"
    assert xm_to_xml(cfg).text == xm_to_xml(cfg).text
    assert "<uuid>" not in xm_to_xml(cfg).text


def test_arch_option_sets_os_arch() -> None:
    root = etree.fromstring(xm_to_xml(PV, arch="i686").text.encode())
    assert xpath(root, "/domain/os/type/@arch") == ["i686"]
