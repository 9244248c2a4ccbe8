"""`virtctl export`, the pure part: runtime state, what is dropped and kept, selection,
and how specs reach stdout. Golden whole-definition cases are in test_export_golden.py."""

from __future__ import annotations

import pytest
import yaml

from virtctl.errors import SpecError
from virtctl.render.export import (
    ExportedSpec,
    ExportFormat,
    clean_domain,
    desired_state,
    export_specs,
    stdout_text,
)
from virtctl.model import DomainState, Kind, Live, LiveDomain, LiveNetwork, ObjectKey, Ownership
from virtctl.reconciler.load.load import load_text
from virtctl.xmlutil import parse, tostring

S = DomainState


@pytest.mark.parametrize(("live", "declared"), [
    pytest.param(S.RUNNING, S.RUNNING, id="running"),
    pytest.param(S.BLOCKED, S.RUNNING, id="blocked-is-running"),
    pytest.param(S.SHUTDOWN, S.RUNNING, id="shutting-down-is-still-running"),
    pytest.param(S.PMSUSPENDED, S.RUNNING, id="pmsuspended-is-running"),
    pytest.param(S.PAUSED, S.PAUSED, id="paused"),
    pytest.param(S.SHUTOFF, S.SHUTOFF, id="shutoff"),
    pytest.param(S.CRASHED, S.SHUTOFF, id="crashed-is-not-restarted"),
    pytest.param(S.NOSTATE, S.SHUTOFF, id="nostate"),
])
def test_desired_state_from_live_state(live: DomainState, declared: DomainState) -> None:
    assert desired_state(live) is declared


def _dom(name: str, *, state: DomainState = S.RUNNING, autostart: bool = False,
         managed: bool = False, devices: str = "", machine: str = "pc-i440fx-7.2") -> LiveDomain:
    xml = (f"<domain type='qemu' id='3'><name>{name}</name>"
           "<uuid>11111111-2222-3333-4444-555555555555</uuid>"
           "<memory unit='KiB'>65536</memory>"
           f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
           f"<devices>{devices}</devices></domain>")
    owner = Ownership(spec_hash="sha256:1", source="/x.yaml", commit="abc") if managed else None
    return LiveDomain(name=name, uuid="11111111-2222-3333-4444-555555555555", xml=xml,
                      state=state, autostart=autostart, owner=owner)


def _net(name: str, *, active: bool = True, autostart: bool = False,
         managed: bool = False) -> LiveNetwork:
    xml = f"<network connections='4'><name>{name}</name><bridge name='virbr9'/></network>"
    owner = Ownership(spec_hash="sha256:1") if managed else None
    return LiveNetwork(name=name, uuid="u", xml=xml, active=active, autostart=autostart,
                       owner=owner)


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize(("dom", "state", "autostart"), [
    pytest.param(_dom("a"), "running", False, id="running"),
    pytest.param(_dom("a", state=S.PAUSED, autostart=True), "paused", True, id="paused-autostart"),
    pytest.param(_dom("a", state=S.CRASHED), "shutoff", False, id="crashed"),
])
def test_domain_runtime_state_is_declared(dom: LiveDomain, state: str, autostart: bool,
                                          fmt: ExportFormat) -> None:
    (spec,) = export_specs(Live(domains={dom.name: dom}), fmt=fmt)
    (loaded,) = load_text(spec.text, source=spec.filename)
    assert (str(loaded.state), loaded.autostart) == (state, autostart)  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize(("active", "autostart"), [
    pytest.param(True, True, id="active-autostart"),
    pytest.param(False, False, id="inactive"),
])
def test_network_runtime_state_is_declared(active: bool, autostart: bool,
                                           fmt: ExportFormat) -> None:
    net = _net("lan", active=active, autostart=autostart)
    (spec,) = export_specs(Live(networks={"lan": net}), fmt=fmt)
    (loaded,) = load_text(spec.text, source=spec.filename)
    assert (loaded.active, loaded.autostart) == (active, autostart)  # type: ignore[union-attr]
    assert "connections" not in spec.text


def _cleaned(devices: str, *, machine: str = "pc-i440fx-7.2", dom_type: str = "qemu") -> str:
    root = parse(f"<domain type='{dom_type}'><name>x</name>"
                 f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
                 f"<devices>{devices}</devices></domain>")
    clean_domain(root)
    devs = root.find("devices")
    assert devs is not None
    return "".join(tostring(d, pretty=False) for d in devs)


@pytest.mark.parametrize(("devices", "machine", "expected"), [
    pytest.param("<controller type='usb' index='0' model='piix3-uhci'/>", "pc", "",
                 id="pc-default-usb-dropped"),
    pytest.param("<controller type='usb' index='0' model='qemu-xhci'/>", "pc-i440fx-7.2",
                 '<controller type="usb" index="0" model="qemu-xhci"/>',
                 id="pc-chosen-xhci-kept"),
    pytest.param("<controller type='usb' index='0' model='qemu-xhci'/>", "pc-q35-7.2", "",
                 id="q35-default-usb-dropped"),
    pytest.param("<controller type='usb' index='0' model='none'/>", "pc",
                 '<controller type="usb" index="0" model="none"/>', id="usb-off-kept"),
    pytest.param("<controller type='usb' index='1' model='piix3-uhci'/>", "pc",
                 '<controller type="usb" index="1" model="piix3-uhci"/>',
                 id="second-controller-kept"),
    pytest.param("<controller type='ide' index='0'/><controller type='pci' index='0' "
                 "model='pci-root'/>", "pc", "", id="pc-ide-and-pci-root-dropped"),
    pytest.param("<controller type='sata' index='0'/>", "pc",
                 '<controller type="sata" index="0"/>', id="sata-on-pc-kept"),
    pytest.param("<controller type='sata' index='0'/><controller type='pci' index='0' "
                 "model='pcie-root'/>", "q35", "", id="q35-sata-and-pcie-root-dropped"),
    pytest.param("<controller type='ide' index='0'><driver queues='2'/></controller>", "pc",
                 '<controller type="ide" index="0"><driver queues="2"/></controller>',
                 id="controller-with-settings-kept"),
    pytest.param("<controller type='virtio-serial' index='0'/>"
                 "<channel type='unix'><target type='virtio' name='a'/></channel>", "pc",
                 '<channel type="unix"><target type="virtio" name="a"/></channel>',
                 id="virtio-serial-implied-by-channel-dropped"),
    pytest.param("<controller type='virtio-serial' index='0'/>", "pc",
                 '<controller type="virtio-serial" index="0"/>',
                 id="virtio-serial-nobody-needs-kept"),
    pytest.param("<interface type='network'><mac address='52:54:00:00:00:01'/>"
                 "<source network='lan'/><target dev='vnet12'/><alias name='net0'/>"
                 "<address type='pci' domain='0x0000' bus='0x00' slot='0x03' "
                 "function='0x0'/></interface>", "pc",
                 '<interface type="network"><mac address="52:54:00:00:00:01"/>'
                 '<source network="lan"/></interface>', id="nic-runtime-noise-dropped"),
    pytest.param("<interface type='bridge'><source bridge='br0'/><target dev='tap-web'/>"
                 "</interface>", "pc",
                 '<interface type="bridge"><source bridge="br0"/><target dev="tap-web"/>'
                 "</interface>", id="user-named-tap-kept"),
    pytest.param("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' "
                 "bus='0x06' slot='0x00' function='0x0'/></source><address type='pci' "
                 "domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></hostdev>", "pc",
                 '<hostdev mode="subsystem" type="pci"><source><address domain="0x0000" '
                 'bus="0x06" slot="0x00" function="0x0"/></source></hostdev>',
                 id="host-address-in-source-kept"),
    pytest.param("<disk type='file' device='disk'><source file='/a.img'/><target dev='hda' "
                 "bus='ide'/><address type='drive' controller='0' bus='0' target='0' "
                 "unit='0'/></disk>", "pc",
                 '<disk type="file" device="disk"><source file="/a.img"/>'
                 '<target dev="hda" bus="ide"/></disk>', id="drive-address-dropped"),
    pytest.param("<serial type='pty'><source path='/dev/pts/3'/><target port='0'/></serial>"
                 "<console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/>"
                 "<target type='serial' port='0'/></console>", "pc",
                 '<serial type="pty"><target port="0"/></serial><console type="pty">'
                 '<target type="serial" port="0"/></console>', id="pty-paths-dropped"),
    pytest.param("<graphics type='vnc' port='5903' autoport='yes'/>"
                 "<graphics type='spice' port='5930' autoport='no'/>", "pc",
                 '<graphics type="vnc" autoport="yes"/>'
                 '<graphics type="spice" port="5930" autoport="no"/>',
                 id="only-automatic-ports-dropped"),
    pytest.param("<controller type='usb' index='0' model='piix3-uhci'/>", "virt",
                 '<controller type="usb" index="0" model="piix3-uhci"/>',
                 id="unknown-machine-keeps-controllers"),
])
def test_clean_domain_devices(devices: str, machine: str, expected: str) -> None:
    assert _cleaned(devices, machine=machine) == expected


def test_xen_guest_keeps_its_controllers() -> None:
    ctl = "<controller type='usb' index='0' model='piix3-uhci'/>"
    assert _cleaned(ctl, machine="pc", dom_type="xen") != ""


@pytest.mark.parametrize(("extra", "kept"), [
    pytest.param("<seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64055"
                 "</label></seclabel>", False, id="dynamic-label-dropped"),
    pytest.param("<seclabel type='dynamic' model='selinux'><baselabel>system_u:x</baselabel>"
                 "</seclabel>", True, id="dynamic-with-baselabel-kept"),
    pytest.param("<seclabel type='none'/>", True, id="none-kept"),
    pytest.param("<resource><partition>/machine</partition></resource>", False,
                 id="default-partition-dropped"),
    pytest.param("<resource><partition>/gold</partition></resource>", True,
                 id="chosen-partition-kept"),
])
def test_clean_domain_top_level(extra: str, kept: bool) -> None:
    root = parse(f"<domain type='kvm' id='4'><name>x</name>{extra}</domain>")
    clean_domain(root)
    assert root.get("id") is None
    assert (len(root) == 2) is kept


def test_owner_mark_goes_foreign_metadata_stays() -> None:
    root = parse("<domain type='kvm'><name>x</name><metadata>"
                 "<virtctl:owner xmlns:virtctl='https://virtctl.dev/xmlns/1' spec-hash='h'/>"
                 "<a:b xmlns:a='urn:a'/></metadata></domain>")
    clean_domain(root)
    assert tostring(root, pretty=False) == (
        '<domain type="kvm"><name>x</name><metadata><a:b xmlns:a="urn:a"/></metadata></domain>')


def test_managed_only_selects_managed_objects_networks_first() -> None:
    live = Live(domains={"b": _dom("b", managed=True), "a": _dom("a"), "c": _dom("c",
                                                                                managed=True)},
                networks={"n": _net("n", managed=True), "m": _net("m")})
    every = [str(s.key) for s in export_specs(live)]
    assert every == ["network/m", "network/n", "domain/a", "domain/b", "domain/c"]
    managed = [str(s.key) for s in export_specs(live, managed_only=True)]
    assert managed == ["network/n", "domain/b", "domain/c"]


def test_filenames_name_kind_object_and_format() -> None:
    live = Live(domains={"web": _dom("web")}, networks={"lan": _net("lan")})
    names = [s.filename for s in export_specs(live, fmt=ExportFormat.XML)]
    assert names == ["network-lan.xml", "domain-web.xml"]


def test_yaml_to_stdout_is_one_multi_document_stream() -> None:
    live = Live(domains={"web": _dom("web")}, networks={"lan": _net("lan")})
    docs = list(yaml.safe_load_all(stdout_text(export_specs(live), fmt=ExportFormat.YAML)))
    assert [(d["kind"], d["name"]) for d in docs] == [("Network", "lan"), ("Domain", "web")]
    assert all(d["apiVersion"] == "virtctl/v1" for d in docs)


def test_xml_to_stdout_takes_exactly_one_object() -> None:
    one = ExportedSpec(ObjectKey(Kind.DOMAIN, "a"), ExportFormat.XML, "<domain/>\n")
    assert stdout_text([one], fmt=ExportFormat.XML) == "<domain/>\n"
    with pytest.raises(SpecError, match="exactly one object"):
        stdout_text([one, one], fmt=ExportFormat.XML)
    with pytest.raises(SpecError, match="exactly one object"):
        stdout_text([], fmt=ExportFormat.XML)
    assert stdout_text([], fmt=ExportFormat.YAML) == ""


def test_a_definition_yaml_cannot_hold_names_the_object_and_suggests_xml() -> None:
    odd = LiveDomain(name="odd", uuid="u", state=S.SHUTOFF,
                     xml="<domain type='kvm' foo='bar'><name>odd</name></domain>")
    with pytest.raises(SpecError, match=r"domain/odd cannot be written as YAML .*-o xml"):
        export_specs(Live(domains={"odd": odd}))
    (spec,) = export_specs(Live(domains={"odd": odd}), fmt=ExportFormat.XML)
    assert 'foo="bar"' in spec.text
