"""Each key of the YAML model: the XML it writes, and that reading that XML gives it back.

Also the escape hatches, the semantic errors the schema cannot catch (with field
paths), and what the converters deliberately leave out (runtime keys, virtctl metadata).
"""

from __future__ import annotations

from typing import Any

import pytest

from virtctl.converters.yaml.xmlmap import canonical
from virtctl.converters.yaml.yamlxml import (
    domain_from_xml,
    domain_to_xml,
    network_from_xml,
    network_to_xml,
)
from virtctl.errors import SpecError
from virtctl.xmlutil import parse

DOMAIN = {"kind": "Domain", "name": "d1", "type": "kvm"}
NETWORK = {"kind": "Network", "name": "n1"}

DOMAIN_KEYS = [
    pytest.param({"uuid": "c7a5fdb2-cdaf-4455-926a-d65c16db1a01"},
                 "<uuid>c7a5fdb2-cdaf-4455-926a-d65c16db1a01</uuid>", id="uuid"),
    pytest.param({"title": "Web"}, "<title>Web</title>", id="title"),
    pytest.param({"description": "a guest"}, "<description>a guest</description>",
                 id="description"),
    pytest.param({"memory": "1GiB"}, "<memory unit='KiB'>1048576</memory>", id="memory"),
    pytest.param({"currentMemory": "512MiB"},
                 "<currentMemory unit='KiB'>524288</currentMemory>", id="currentMemory"),
    pytest.param({"vcpus": 2}, "<vcpu>2</vcpu>", id="vcpus-count"),
    pytest.param({"vcpus": {"count": 4, "current": 2, "cpuset": "0-3", "placement": "static"}},
                 "<vcpu placement='static' cpuset='0-3' current='2'>4</vcpu>", id="vcpus-map"),
    pytest.param({"bootloader": "/usr/bin/pygrub"}, "<bootloader>/usr/bin/pygrub</bootloader>",
                 id="bootloader"),
    pytest.param({"bootloaderArgs": "-q"}, "<bootloader_args>-q</bootloader_args>",
                 id="bootloaderArgs"),
    pytest.param({"os": {"type": "linux", "kernel": "/k", "initrd": "/i", "cmdline": "ro",
                         "root": "/dev/xvda1"}},
                 "<os><type>linux</type><kernel>/k</kernel><initrd>/i</initrd>"
                 "<cmdline>ro</cmdline><root>/dev/xvda1</root></os>", id="os-paravirt"),
    pytest.param({"os": {"type": "hvm", "arch": "i686", "machine": "pc",
                         "loader": "/usr/lib/xen/boot/hvmloader", "boot": ["cdrom", "hd"]}},
                 "<os><type arch='i686' machine='pc'>hvm</type>"
                 "<loader>/usr/lib/xen/boot/hvmloader</loader>"
                 "<boot dev='cdrom'/><boot dev='hd'/></os>", id="os-hvm"),
    pytest.param({"os": {"type": "hvm", "loader": {"path": "/ovmf", "type": "pflash",
                                                    "readonly": True}}},
                 "<os><type>hvm</type><loader readonly='yes' type='pflash'>/ovmf</loader></os>",
                 id="os-loader-map"),
    pytest.param({"os": {"type": "hvm", "bootmenu": {"enable": True, "timeout": 3000}}},
                 "<os><type>hvm</type><bootmenu enable='yes' timeout='3000'/></os>",
                 id="os-bootmenu"),
    pytest.param({"features": {"pae": True, "acpi": True, "apic": True, "viridian": True,
                               "hap": "off", "vmport": "on"}},
                 "<features><pae/><acpi/><apic/><viridian/><hap state='off'/>"
                 "<vmport state='on'/></features>", id="features"),
    pytest.param({"clock": {"offset": "variable", "adjustment": 0, "basis": "utc",
                            "timers": [{"name": "hpet", "present": False},
                                       {"name": "rtc", "tickPolicy": "catchup"}]}},
                 "<clock offset='variable' adjustment='0' basis='utc'>"
                 "<timer name='hpet' present='no'/><timer name='rtc' tickpolicy='catchup'/>"
                 "</clock>", id="clock"),
    pytest.param({"clock": {"offset": "utc", "adjustment": "reset"}},
                 "<clock offset='utc' adjustment='reset'/>", id="clock-reset"),
    pytest.param({"onPoweroff": "preserve", "onReboot": "rename-restart",
                  "onCrash": "coredump-destroy"},
                 "<on_poweroff>preserve</on_poweroff>", id="lifecycle"),
    pytest.param({"emulator": "/usr/bin/qemu-system-x86_64"},
                 "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>",
                 id="emulator"),
    pytest.param({"disks": [{"type": "block", "device": "disk", "driver": {"name": "phy"},
                             "source": "/dev/vg/a", "target": "xvda", "bus": "xen"}]},
                 "<devices><disk type='block' device='disk'><driver name='phy'/>"
                 "<source dev='/dev/vg/a'/><target dev='xvda' bus='xen'/></disk></devices>",
                 id="disk-block"),
    pytest.param({"disks": [{"type": "file", "device": "cdrom", "target": "hdc", "bus": "ide",
                             "readonly": True}]},
                 "<devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/>"
                 "<readonly/></disk></devices>", id="disk-empty-cdrom"),
    pytest.param({"disks": [{"device": "floppy", "source": "/f.img", "target": "fda",
                             "shareable": True, "serial": "F1", "bootOrder": 2}]},
                 "<devices><disk device='floppy'><source file='/f.img'/><target dev='fda'/>"
                 "<shareable/><serial>F1</serial><boot order='2'/></disk></devices>",
                 id="disk-floppy-no-type"),
    pytest.param({"interfaces": [{"type": "ethernet", "mac": "52:54:00:00:00:aa",
                                  "target": "tap0", "script": "/etc/qemu-ifup",
                                  "ips": [{"address": "10.0.0.2", "prefix": 24}]}]},
                 "<devices><interface type='ethernet'><mac address='52:54:00:00:00:aa'/>"
                 "<target dev='tap0'/><script path='/etc/qemu-ifup'/>"
                 "<ip address='10.0.0.2' prefix='24'/></interface></devices>",
                 id="interface-ethernet"),
    pytest.param({"interfaces": [{"type": "mcast", "source": {"address": "230.0.0.1",
                                                              "port": 5558}}]},
                 "<devices><interface type='mcast'><source address='230.0.0.1' port='5558'/>"
                 "</interface></devices>", id="interface-mcast"),
    pytest.param({"graphics": [{"type": "vnc", "port": 5901, "autoport": False,
                                "listen": "0.0.0.0", "passwd": "x", "keymap": "de"}]},
                 "<devices><graphics type='vnc' port='5901' autoport='no' listen='0.0.0.0'"
                 " passwd='x' keymap='de'/></devices>", id="graphics-vnc"),
    pytest.param({"graphics": [{"type": "sdl", "display": ":0.0", "xauth": "/x"}]},
                 "<devices><graphics type='sdl' display=':0.0' xauth='/x'/></devices>",
                 id="graphics-sdl"),
    pytest.param({"serials": [{"type": "tcp", "source": {"mode": "bind", "host": "0.0.0.0",
                                                         "service": 4555},
                               "protocol": "telnet", "target": {"port": 0}}]},
                 "<devices><serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/>"
                 "<protocol type='telnet'/><target port='0'/></serial></devices>",
                 id="serial-tcp"),
    pytest.param({"parallels": [{"type": "file", "source": {"path": "/p.log"},
                                 "target": {"port": 0}}]},
                 "<devices><parallel type='file'><source path='/p.log'/><target port='0'/>"
                 "</parallel></devices>", id="parallel-file"),
    pytest.param({"consoles": [{"type": "pty", "target": {"type": "xen", "port": 0}}]},
                 "<devices><console type='pty'><target type='xen' port='0'/></console>"
                 "</devices>", id="console"),
    pytest.param({"inputs": [{"type": "tablet", "bus": "usb"}]},
                 "<devices><input type='tablet' bus='usb'/></devices>", id="input"),
    pytest.param({"sounds": [{"model": "sb16"}]},
                 "<devices><sound model='sb16'/></devices>", id="sound"),
    pytest.param({"hostdevs": [{"mode": "subsystem", "type": "pci", "managed": True,
                                "source": {"address": {"domain": "0x0000", "bus": "0x01",
                                                       "slot": "0x00", "function": "0x0"}}}]},
                 "<devices><hostdev mode='subsystem' type='pci' managed='yes'><source>"
                 "<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source>"
                 "</hostdev></devices>", id="hostdev-pci"),
    pytest.param({"memballoon": {"model": "virtio"}},
                 "<devices><memballoon model='virtio'/></devices>", id="memballoon"),
    pytest.param({"extraDevices": ['<watchdog model="i6300esb" action="reset"/>']},
                 "<devices><watchdog model='i6300esb' action='reset'/></devices>",
                 id="extraDevices"),
    pytest.param({"extraXML": ['<cpu mode="host-model"/>']}, "<cpu mode='host-model'/>",
                 id="extraXML"),
]


def _element(root: Any, snippet: str) -> Any:
    expected = parse(snippet)
    found = root.find(expected.tag)
    assert found is not None, f"<{expected.tag}> missing"
    return found, expected


@pytest.mark.parametrize(("fragment", "snippet"), DOMAIN_KEYS)
def test_domain_key_writes_xml_and_reads_back(fragment: dict[str, Any], snippet: str) -> None:
    doc = {**DOMAIN, **fragment}
    root = domain_to_xml(doc)
    found, expected = _element(root, snippet)
    assert canonical(found) == canonical(expected)
    assert domain_from_xml(root) == doc


NETWORK_KEYS = [
    pytest.param({"uuid": "81ff0d90-c91e-4742-a4da-4a736edb9a01"},
                 "<uuid>81ff0d90-c91e-4742-a4da-4a736edb9a01</uuid>", id="uuid"),
    pytest.param({"forward": {"mode": "nat", "dev": "eth0",
                              "nat": {"port": {"start": 1024, "end": 65535}}}},
                 "<forward mode='nat' dev='eth0'><nat><port start='1024' end='65535'/></nat>"
                 "</forward>", id="forward-nat"),
    pytest.param({"forward": {"mode": "bridge", "interfaces": ["eth1", "eth2"]}},
                 "<forward mode='bridge'><interface dev='eth1'/><interface dev='eth2'/>"
                 "</forward>", id="forward-interfaces"),
    pytest.param({"bridge": {"name": "virbr9", "stp": False, "delay": 2}},
                 "<bridge name='virbr9' stp='off' delay='2'/>", id="bridge"),
    pytest.param({"mtu": 9000}, "<mtu size='9000'/>", id="mtu"),
    pytest.param({"mac": "52:54:00:aa:bb:cc"}, "<mac address='52:54:00:aa:bb:cc'/>", id="mac"),
    pytest.param({"domain": {"name": "lan", "localOnly": True}},
                 "<domain name='lan' localOnly='yes'/>", id="domain"),
    pytest.param({"dns": {"forwarders": [{"address": "8.8.8.8"}],
                          "hosts": [{"ip": "10.0.0.1", "hostnames": ["gw", "host"]}],
                          "txt": [{"name": "t", "value": "v"}],
                          "srv": [{"service": "ldap", "protocol": "tcp", "port": 389}]}},
                 "<dns><forwarder addr='8.8.8.8'/><host ip='10.0.0.1'><hostname>gw</hostname>"
                 "<hostname>host</hostname></host><txt name='t' value='v'/>"
                 "<srv service='ldap' protocol='tcp' port='389'/></dns>", id="dns"),
    pytest.param({"ips": [{"address": "10.0.0.1", "netmask": "255.255.255.0",
                           "dhcp": {"ranges": [{"start": "10.0.0.2", "end": "10.0.0.9"}],
                                    "hosts": [{"mac": "52:54:00:00:00:01", "ip": "10.0.0.5"}]}}]},
                 "<ip address='10.0.0.1' netmask='255.255.255.0'><dhcp>"
                 "<range start='10.0.0.2' end='10.0.0.9'/>"
                 "<host mac='52:54:00:00:00:01' ip='10.0.0.5'/></dhcp></ip>", id="ips-dhcp"),
    pytest.param({"extraXML": ['<route address="10.1.0.0" prefix="16" gateway="10.0.0.2"/>']},
                 "<route address='10.1.0.0' prefix='16' gateway='10.0.0.2'/>", id="extraXML"),
]


@pytest.mark.parametrize(("fragment", "snippet"), NETWORK_KEYS)
def test_network_key_writes_xml_and_reads_back(fragment: dict[str, Any], snippet: str) -> None:
    doc = {**NETWORK, **fragment}
    root = network_to_xml(doc)
    found, expected = _element(root, snippet)
    assert canonical(found) == canonical(expected)
    assert network_from_xml(root) == doc


@pytest.mark.parametrize(
    ("fragment", "path"),
    [
        pytest.param({"disks": [{"target": "vda"}, {"target": "vda"}]}, "disks[1].target",
                     id="duplicate-disk-target"),
        pytest.param({"interfaces": [{"type": "user", "mac": "52:54:00:00:00:01"},
                                     {"type": "user", "mac": "52:54:00:00:00:01"}]},
                     "interfaces[1].mac", id="duplicate-mac"),
        pytest.param({"interfaces": [{"type": "user", "source": {"bridge": "br0"}}]},
                     "interfaces[0].source.bridge", id="source-field-wrong-for-type"),
        pytest.param({"memory": "1GiB", "currentMemory": "2GiB"}, "currentMemory",
                     id="current-memory-above-memory"),
        pytest.param({"memory": "lots"}, "memory", id="bad-size"),
        pytest.param({"vcpus": {"count": 2, "current": 4}}, "vcpus.current",
                     id="current-vcpus-above-count"),
        pytest.param({"extraXML": ["<cpu>"]}, "extraXML[0]", id="malformed-extra-xml"),
        pytest.param({"os": {"type": "hvm"}, "extraXML": ["<os><type>hvm</type></os>"]},
                     "extraXML[0]", id="extra-xml-duplicates-key"),
        pytest.param({"emulator": "/a", "extraDevices": ["<emulator>/b</emulator>"]},
                     "extraDevices[0]", id="extra-device-duplicates-key"),
        pytest.param({"disks": [{"readonly": False}]}, "disks[0].readonly",
                     id="flag-false"),
    ],
)
def test_domain_semantic_errors_name_the_field(fragment: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        domain_to_xml({**DOMAIN, **fragment})
    assert caught.value.source is not None
    assert caught.value.source.path == path


def test_network_netmask_and_prefix_together_is_an_error() -> None:
    with pytest.raises(SpecError) as caught:
        network_to_xml({**NETWORK, "ips": [{"address": "10.0.0.1", "netmask": "255.0.0.0",
                                             "prefix": 8}]})
    assert caught.value.source is not None
    assert caught.value.source.path == "ips[0].prefix"


def test_runtime_keys_are_ignored() -> None:
    plain = domain_to_xml(DOMAIN)
    with_runtime = domain_to_xml({**DOMAIN, "apiVersion": "virtctl/v1", "state": "paused",
                                  "autostart": True})
    assert canonical(plain) == canonical(with_runtime)
    net = network_to_xml({**NETWORK, "active": False, "autostart": True})
    assert canonical(net) == canonical(network_to_xml(NETWORK))


def test_from_xml_drops_virtctl_metadata_but_keeps_other_metadata() -> None:
    root = parse(
        "<domain type='kvm'><name>d1</name><metadata>"
        "<virtctl:runtime xmlns:virtctl='https://virtctl.dev/xmlns/1' state='paused'/>"
        "<app:x xmlns:app='urn:app'>1</app:x></metadata></domain>"
    )
    doc = domain_from_xml(root)
    assert "state" not in doc
    assert doc["extraXML"] == ['<metadata><app:x xmlns:app="urn:app">1</app:x></metadata>']


def test_from_xml_keeps_device_order_after_an_unmodelled_device() -> None:
    root = parse(
        "<domain type='kvm'><name>d1</name><devices>"
        "<disk type='file'><source file='/a'/><target dev='vda'/></disk>"
        "<disk type='network'><source protocol='nbd' name='x'/><target dev='vdb'/></disk>"
        "<disk type='file'><source file='/c'/><target dev='vdc'/></disk>"
        "</devices></domain>"
    )
    doc = domain_from_xml(root)
    assert [d["target"] for d in doc["disks"]] == ["vda"]
    assert len(doc["extraDevices"]) == 2
    targets = [t.get("dev") for t in domain_to_xml(doc).iter("target")]
    assert targets == ["vda", "vdb", "vdc"]


def test_from_xml_normalises_memory_units_to_kib() -> None:
    root = parse("<domain type='kvm'><name>d1</name><memory unit='GiB'>2</memory></domain>")
    doc = domain_from_xml(root)
    assert doc["memory"] == "2GiB"
    memory = domain_to_xml(doc).find("memory")
    assert memory is not None
    assert (memory.get("unit"), memory.text) == ("KiB", "2097152")


def test_from_xml_rejects_other_roots() -> None:
    with pytest.raises(SpecError):
        domain_from_xml(parse("<network><name>n</name></network>"))
    with pytest.raises(SpecError):
        network_from_xml(parse("<domain><name>n</name></domain>"))
