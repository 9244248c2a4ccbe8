"""essence() and diff(): libvirt's spelling removed, differences scoped to what was declared."""

from __future__ import annotations

import pytest

from virtctl.reconciler.plan.diff import ChangeOp, FieldChange, diff, removed
from virtctl.reconciler.plan.essence import essence, memory_kib
from virtctl.xmlutil import NS, parse


def ess(xml: str):  # type: ignore[no-untyped-def]
    return essence(parse(xml))


def changes(desired: str, live: str) -> list[FieldChange]:
    return diff(ess(desired), ess(live))


@pytest.mark.parametrize(("text", "unit", "kib"), [
    pytest.param("512", "MiB", "524288", id="MiB"),
    pytest.param("512", "M", "524288", id="M-is-MiB"),
    pytest.param("1", "GiB", "1048576", id="GiB"),
    pytest.param("1", "G", "1048576", id="G-is-GiB"),
    pytest.param("1000", "KB", "977", id="KB-decimal-rounded-up"),
    pytest.param("1", "b", "1", id="one-byte-rounds-up-to-1KiB"),
    pytest.param("2048", None, "2048", id="no-unit-is-KiB"),
    pytest.param("1", "MB", "977", id="MB-decimal"),
    pytest.param(" 64 ", "KiB", "64", id="whitespace"),
    pytest.param("lots", "MiB", "lots", id="unparseable-unchanged"),
])
def test_memory_in_kib(text: str, unit: str | None, kib: str) -> None:
    assert memory_kib(text, unit) == kib


SAME = [
    pytest.param('<domain><memory unit="MiB">512</memory></domain>',
                 '<domain><memory unit="KiB">524288</memory></domain>', id="memory-units"),
    pytest.param('<domain><currentMemory unit="GiB">1</currentMemory></domain>',
                 "<domain><currentMemory>1048576</currentMemory></domain>",
                 id="currentMemory-default-unit"),
    pytest.param("<domain><uuid>5B0C9D2E7F414C6A8E1B2D3F4A5B6C01</uuid></domain>",
                 "<domain><uuid>5b0c9d2e-7f41-4c6a-8e1b-2d3f4a5b6c01</uuid></domain>",
                 id="uuid-forms"),
    pytest.param('<domain><devices><interface type="user"><mac address="52:54:00:AB:CD:EF"/>'
                 "</interface></devices></domain>",
                 '<domain><devices><interface type="user"><mac address="52:54:00:ab:cd:ef"/>'
                 "</interface></devices></domain>", id="mac-case"),
    pytest.param('<domain type="kvm"><name>x</name></domain>',
                 '<domain type="kvm" id="12"><name>x</name></domain>', id="runtime-id"),
    pytest.param('<domain type="xen"><os><type>linux</type></os></domain>',
                 '<domain type="xen"><os><type>xen</type></os></domain>', id="xen-linux-alias"),
    pytest.param("<domain><devices>"
                 '<disk device="disk"><target dev="vda"/></disk>'
                 '<disk device="cdrom"><target dev="hdc"/></disk>'
                 '<interface type="bridge"><mac address="52:54:00:00:00:01"/></interface>'
                 '<interface type="bridge"><mac address="52:54:00:00:00:02"/></interface>'
                 "</devices></domain>",
                 "<domain><devices>"
                 '<interface type="bridge"><mac address="52:54:00:00:00:02"/></interface>'
                 '<disk device="cdrom"><target dev="hdc"/></disk>'
                 '<interface type="bridge"><mac address="52:54:00:00:00:01"/></interface>'
                 '<disk device="disk"><target dev="vda"/></disk>'
                 "</devices></domain>", id="device-order"),
    pytest.param("<domain><name>x</name></domain>",
                 f'<domain><name>x</name><metadata><v:owner xmlns:v="{NS}" spec-hash="h"/>'
                 "</metadata></domain>", id="virtctl-metadata-added"),
    pytest.param('<domain><devices><disk device="disk"><target dev="vda"/></disk></devices>'
                 "</domain>",
                 '<domain><devices><disk device="disk"><target dev="vda" bus="virtio"/>'
                 '<alias name="virtio-disk0"/><address type="pci" slot="0x04"/></disk>'
                 '<controller type="usb" index="0"/></devices></domain>',
                 id="libvirt-additions"),
]


@pytest.mark.parametrize(("desired", "live"), SAME)
def test_meaningless_differences_vanish(desired: str, live: str) -> None:
    assert changes(desired, live) == []


def test_essence_of_equivalent_definitions_is_equal() -> None:
    a = ess('<domain><memory unit="MiB">1</memory><uuid>AAAAAAAA-0000-4000-8000-000000000000'
            "</uuid></domain>")
    b = ess('<domain><memory>1024</memory><uuid>aaaaaaaa000040008000000000000000</uuid>'
            "</domain>")
    assert a == b


@pytest.mark.parametrize(("desired", "live", "expected"), [
    pytest.param('<domain><memory unit="MiB">1024</memory></domain>',
                 '<domain><memory unit="KiB">524288</memory></domain>',
                 [FieldChange(ChangeOp.CHANGE, "memory", "524288 KiB", "1048576 KiB")],
                 id="memory-changed"),
    pytest.param('<domain><devices><disk device="disk"><source file="/new"/>'
                 '<target dev="hdb"/></disk></devices></domain>',
                 '<domain><devices><disk device="disk"><source file="/old"/>'
                 '<target dev="hdb"/></disk></devices></domain>',
                 [FieldChange(ChangeOp.CHANGE, "devices/disk[hdb]/source/@file", "/old", "/new")],
                 id="disk-source-path"),
    pytest.param('<domain><os><type machine="q35">hvm</type></os></domain>',
                 "<domain><os><type>hvm</type></os></domain>",
                 [FieldChange(ChangeOp.ADD, "os/type/@machine", None, "q35")],
                 id="attribute-added"),
    pytest.param('<domain><devices><interface type="network"><mac address="52:54:00:00:00:09"/>'
                 '<source network="lan"/></interface></devices></domain>',
                 "<domain><devices/></domain>",
                 [FieldChange(ChangeOp.ADD, "devices/interface[52:54:00:00:00:09]", None,
                              "interface type=network")],
                 id="device-added"),
    pytest.param("<domain><vcpu>4</vcpu></domain>", "<domain><vcpu>2</vcpu></domain>",
                 [FieldChange(ChangeOp.CHANGE, "vcpu", "2", "4")], id="text-changed"),
])
def test_real_differences_are_named_by_path(desired: str, live: str,
                                            expected: list[FieldChange]) -> None:
    assert changes(desired, live) == expected


def test_diff_is_scoped_to_the_desired_side() -> None:
    # What the live side has beyond the declaration is not a difference...
    assert changes("<domain><vcpu>1</vcpu></domain>",
                   "<domain><vcpu>1</vcpu><on_crash>destroy</on_crash></domain>") == []
    # ...but the same pair the other way round is.
    assert changes("<domain><vcpu>1</vcpu><on_crash>destroy</on_crash></domain>",
                   "<domain><vcpu>1</vcpu></domain>") != []


def test_interfaces_without_mac_match_by_type_and_position() -> None:
    desired = ('<domain><devices><interface type="user"/><interface type="network">'
               '<source network="b"/></interface></devices></domain>')
    live = ('<domain><devices><interface type="network"><source network="b"/></interface>'
            '<interface type="user"/></devices></domain>')
    assert changes(desired, live) == []
    moved = live.replace('network="b"', 'network="c"')
    assert [c.path for c in changes(desired, moved)] == [
        "devices/interface[network#0]/source/@network"]


def test_removed_lists_what_an_earlier_declaration_had() -> None:
    before = ess('<domain><vcpu>1</vcpu><devices><disk device="disk"><target dev="vdb"/>'
                 '</disk></devices><os><type arch="i686">hvm</type></os></domain>')
    now = ess("<domain><vcpu>1</vcpu><devices/><os><type>hvm</type></os></domain>")
    got = removed(before, now)
    assert FieldChange(ChangeOp.REMOVE, "os/type/@arch", "i686", None) in got
    assert [c.path for c in got if c.path.startswith("devices")] == ["devices/disk[vdb]"]
    assert removed(now, now) == []


def test_field_change_to_dict() -> None:
    assert FieldChange(ChangeOp.CHANGE, "vcpu", "1", "2").to_dict() == {
        "op": "change", "path": "vcpu", "old": "1", "new": "2"}


# -- more normalisations and identities (issue 4) ----------------------------------------------

MORE_SAME = [
    pytest.param('<domain><memtune><hard_limit unit="GiB">1</hard_limit></memtune></domain>',
                 '<domain><memtune><hard_limit unit="KiB">1048576</hard_limit></memtune></domain>',
                 id="memtune-units"),
    pytest.param('<domain><cpu><numa><cell id="0" cpus="0" memory="1" unit="GiB"/></numa></cpu>'
                 "</domain>",
                 '<domain><cpu><numa><cell id="0" cpus="0" memory="1048576" unit="KiB"/></numa>'
                 "</cpu></domain>", id="numa-cell-memory-attribute-units"),
    pytest.param('<domain><cpu><feature name="vmx"/><feature name="svm" policy="disable"/></cpu>'
                 "</domain>",
                 '<domain><cpu><feature name="svm" policy="disable"/><feature name="vmx"/></cpu>'
                 "</domain>", id="cpu-features-by-name"),
    pytest.param('<domain><devices><channel type="unix"><target type="virtio" name="a.0"/>'
                 '</channel><channel type="unix"><target type="virtio" name="b.0"/></channel>'
                 "</devices></domain>",
                 '<domain><devices><channel type="unix"><target type="virtio" name="b.0"/>'
                 '</channel><channel type="unix"><target type="virtio" name="a.0"/></channel>'
                 "</devices></domain>", id="channels-by-target-name"),
    pytest.param('<domain><devices><serial type="pty"/><console type="pty"/></devices></domain>',
                 '<domain><devices><serial type="pty"><target port="0"/></serial>'
                 '<console type="pty"><target type="serial" port="0"/></console></devices>'
                 "</domain>", id="serial-console-port-defaults-to-position"),
    pytest.param('<domain><devices><hostdev mode="subsystem" type="pci"><source><address '
                 'domain="0x0000" bus="0x01" slot="0x00" function="0x0"/></source></hostdev>'
                 '<hostdev mode="subsystem" type="pci"><source><address domain="0x0000" '
                 'bus="0x02" slot="0x00" function="0x0"/></source></hostdev></devices></domain>',
                 '<domain><devices><hostdev mode="subsystem" type="pci" managed="yes"><source>'
                 '<address domain="0x0000" bus="0x02" slot="0x00" function="0x0"/></source>'
                 '</hostdev><hostdev mode="subsystem" type="pci"><source><address domain="0" '
                 'bus="1" slot="0" function="0"/></source></hostdev></devices></domain>',
                 id="hostdevs-by-source-address"),
    pytest.param("<network><ip address='10.0.0.1'/><ip family='ipv6' address='fd00::1'/>"
                 "</network>",
                 "<network><ip family='ipv6' address='fd00::1'/><ip address='10.0.0.1'/>"
                 "</network>", id="network-ips-by-address"),
    pytest.param("<network><ip address='10.0.0.1'><dhcp><host mac='52:54:00:AA:00:01' "
                 "ip='10.0.0.5'/><host mac='52:54:00:aa:00:02' ip='10.0.0.6'/></dhcp></ip>"
                 "</network>",
                 "<network><ip address='10.0.0.1'><dhcp><host mac='52:54:00:aa:00:02' "
                 "ip='10.0.0.6'/><host mac='52:54:00:aa:00:01' ip='10.0.0.5'/></dhcp></ip>"
                 "</network>", id="dhcp-hosts-by-mac"),
    pytest.param("<network><portgroup name='a'/><portgroup name='b' default='yes'/></network>",
                 "<network><portgroup name='b' default='yes'/><portgroup name='a'/></network>",
                 id="portgroups-by-name"),
]


@pytest.mark.parametrize(("desired", "live"), MORE_SAME)
def test_more_meaningless_differences_vanish(desired: str, live: str) -> None:
    assert changes(desired, live) == []


@pytest.mark.parametrize(("desired", "live"), MORE_SAME)
def test_the_fast_diff_agrees_with_the_essence_diff(desired: str, live: str) -> None:
    from virtctl.reconciler.plan.diff import diff_xml
    assert diff_xml(parse(desired), parse(live)) == changes(desired, live)


@pytest.mark.parametrize(("desired", "live"), [
    pytest.param('<domain><devices><graphics type="vnc" autoport="true"/></devices></domain>',
                 '<domain><devices><graphics type="vnc" autoport="yes"/></devices></domain>',
                 id="yes-is-not-true"),
    pytest.param('<domain><features><hap state="yes"/></features></domain>',
                 '<domain><features><hap state="on"/></features></domain>',
                 id="on-is-not-yes"),
    pytest.param("<domain><devices><serial type='pty'><target port='1'/></serial></devices>"
                 "</domain>",
                 "<domain><devices><serial type='pty'><target port='0'/></serial></devices>"
                 "</domain>", id="serial-port-matters"),
    pytest.param("<domain><os><boot dev='hd'/><boot dev='cdrom'/></os></domain>",
                 "<domain><os><boot dev='cdrom'/><boot dev='hd'/></os></domain>",
                 id="boot-order-matters"),
])
def test_spellings_libvirt_itself_tells_apart_stay_different(desired: str, live: str) -> None:
    # Each libvirt attribute takes one boolean spelling (virYesNo or virOnOff) and refuses
    # the other, and boot order is meaningful: none of these may be normalised away.
    assert changes(desired, live) != []


def test_virtctl_runtime_flags_accept_every_boolean_spelling() -> None:
    from virtctl.reconciler.load.load import load_text
    for yes in ("yes", "on", "true", "1", "YES"):
        xml = (f'<domain type="kvm"><name>x</name><metadata><v:runtime xmlns:v="{NS}" '
               f'autostart="{yes}"/></metadata></domain>')
        assert load_text(xml, source="x.xml")[0].autostart is True
    for no in ("no", "off", "false", "0"):
        xml = (f'<network><name>n</name><metadata><v:runtime xmlns:v="{NS}" active="{no}"/>'
               "</metadata></network>")
        assert load_text(xml, source="n.xml")[0].active is False  # type: ignore[union-attr]
