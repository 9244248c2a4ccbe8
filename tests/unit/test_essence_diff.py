"""essence() and diff(): libvirt's spelling removed, differences scoped to what was declared."""

from __future__ import annotations

import pytest

from virtctl.reconciler.diff import ChangeOp, FieldChange, diff, removed
from virtctl.reconciler.essence import essence, memory_kib
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
