"""Identity the spec leaves out: uuids and MACs kept from the host, else derived stably."""

from __future__ import annotations

import re
import uuid as uuidlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtctl.reconciler.plan.identity import (
    derived_mac,
    derived_uuid,
    fill_domain_identity,
    fill_network_identity,
)
from virtctl.xmlutil import parse

# The uuid5 namespace of derived identities: every uuid virtctl ever derived was
# uuid.uuid5(NAMESPACE, "kind/name"), so derived_uuid must keep giving exactly that.
NAMESPACE = uuidlib.UUID("5b0f7a4e-2f0e-4c4b-9d6c-766972746374")

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def macs(root) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.get("address") for m in root.iterfind("devices/interface/mac")]


def domain(ifaces: str, *, dom_type: str = "kvm", uuid: str = "") -> str:
    u = f"<uuid>{uuid}</uuid>" if uuid else ""
    return f'<domain type="{dom_type}"><name>web</name>{u}<devices>{ifaces}</devices></domain>'


NET_A = '<interface type="network"><source network="a"/></interface>'
NET_B = '<interface type="network"><source network="b"/></interface>'
BRIDGE = '<interface type="bridge"><source bridge="br0"/></interface>'


def test_derived_uuid_is_deterministic_and_kind_scoped() -> None:
    assert derived_uuid("domain", "web") == derived_uuid("domain", "web")
    assert derived_uuid("domain", "web") != derived_uuid("network", "web")
    assert derived_uuid("domain", "web") != derived_uuid("domain", "db")
    assert str(uuidlib.UUID(derived_uuid("domain", "web"))) == derived_uuid("domain", "web")


@pytest.mark.parametrize(("kind", "name", "expected"), [
    # What virtctl has always derived: objects already created carry these uuids.
    pytest.param("domain", "web", "c75254ed-bb11-5c46-b916-e39e3b5e1694", id="domain-web"),
    pytest.param("network", "lan", "33a2a314-85ad-55ad-bfd3-83e0d3d5ad93", id="network-lan"),
    pytest.param("domain", "bench-0000", "1af740e4-eee6-5859-a108-df2f5a9707cb",
                 id="domain-bench"),
])
def test_derived_uuids_never_change(kind: str, name: str, expected: str) -> None:
    assert derived_uuid(kind, name) == expected


@pytest.mark.parametrize(("kind", "name"), [
    pytest.param("domain", "", id="empty-name"),
    pytest.param("domain", 'ünï-é&<"x 名前', id="non-ascii-name"),
    pytest.param("network", "a/b", id="slash-in-name"),
    pytest.param("domain", "\0\n\t", id="control-characters"),
    pytest.param("domain", "x" * 10_000, id="long-name"),
    pytest.param("domain", "\U0001f600", id="astral-plane"),
])
def test_derived_uuid_is_uuid5_of_kind_and_name(kind: str, name: str) -> None:
    assert derived_uuid(kind, name) == str(uuidlib.uuid5(NAMESPACE, f"{kind}/{name}"))


@given(kind=st.sampled_from(["domain", "network"]) | st.text(), name=st.text())
def test_derived_uuid_matches_uuid5_for_any_name(kind: str, name: str) -> None:
    assert derived_uuid(kind, name) == str(uuidlib.uuid5(NAMESPACE, f"{kind}/{name}"))


def test_derived_uuid_refuses_what_uuid5_refuses() -> None:
    with pytest.raises(UnicodeEncodeError):
        uuidlib.uuid5(NAMESPACE, "domain/\ud800")
    with pytest.raises(UnicodeEncodeError):
        derived_uuid("domain", "\ud800")


@pytest.mark.parametrize(("dom_type", "prefix"), [
    pytest.param("kvm", "52:54:00:", id="qemu-oui"),
    pytest.param("qemu", "52:54:00:", id="qemu-oui-tcg"),
    pytest.param("xen", "00:16:3e:", id="xensource-oui"),
])
def test_derived_mac_uses_the_hypervisors_oui(dom_type: str, prefix: str) -> None:
    mac = derived_mac(dom_type, "web", "network", "network=a", "0")
    assert mac.startswith(prefix) and MAC_RE.match(mac)
    assert mac == derived_mac(dom_type, "web", "network", "network=a", "0")
    assert mac != derived_mac(dom_type, "web", "network", "network=a", "1")


def test_new_domain_gets_derived_uuid_and_a_mac_per_nic() -> None:
    root = parse(domain(NET_A + NET_A + BRIDGE))
    fill_domain_identity(root, None)
    assert root.findtext("uuid") == derived_uuid("domain", "web")
    got = macs(root)
    assert len(got) == 3 and len(set(got)) == 3
    assert all(MAC_RE.match(m) for m in got)


def test_adding_a_nic_does_not_renumber_the_others() -> None:
    before = parse(domain(NET_A + BRIDGE))
    after = parse(domain(NET_B + NET_A + BRIDGE))
    fill_domain_identity(before, None)
    fill_domain_identity(after, None)
    assert set(macs(before)) <= set(macs(after))


def test_live_uuid_and_macs_are_kept_on_redefine() -> None:
    live = parse(domain(
        '<interface type="network"><mac address="52:54:00:11:11:11"/><source network="a"/>'
        '</interface><interface type="bridge"><mac address="52:54:00:22:22:22"/>'
        '<source bridge="br0"/></interface>', uuid="0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01"))
    root = parse(domain(BRIDGE + NET_A))
    fill_domain_identity(root, live)
    assert root.findtext("uuid") == "0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01"
    assert macs(root) == ["52:54:00:22:22:22", "52:54:00:11:11:11"]


def test_declared_identity_wins_and_its_mac_is_not_reused() -> None:
    live = parse(domain('<interface type="network"><mac address="52:54:00:11:11:11"/>'
                        '<source network="a"/></interface>',
                        uuid="0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01"))
    root = parse(domain(
        '<interface type="network"><mac address="52:54:00:11:11:11"/><source network="b"/>'
        "</interface>" + NET_A, uuid="11111111-2222-4333-8444-555555555555"))
    fill_domain_identity(root, live)
    assert root.findtext("uuid") == "11111111-2222-4333-8444-555555555555"
    got = macs(root)
    assert got[0] == "52:54:00:11:11:11" and got[1] != "52:54:00:11:11:11"


def test_network_keeps_the_bridge_name_and_mac_the_host_assigned() -> None:
    live = parse("<network><name>lan</name><uuid>0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01</uuid>"
                 "<forward mode='nat'/><bridge name='virbr4'/><mac address='52:54:00:aa:bb:cc'/>"
                 "</network>")
    root = parse("<network><name>lan</name><forward mode='nat'/></network>")
    fill_network_identity(root, live)
    assert root.findtext("uuid") == "0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01"
    assert root.find("bridge").get("name") == "virbr4"  # type: ignore[union-attr]
    assert root.find("mac").get("address") == "52:54:00:aa:bb:cc"  # type: ignore[union-attr]


def test_bridged_network_does_not_inherit_a_bridge_name() -> None:
    live = parse("<network><name>ext</name><uuid>0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01</uuid>"
                 "<forward mode='bridge'/><bridge name='virbr4'/></network>")
    root = parse("<network><name>ext</name><forward mode='bridge'/></network>")
    fill_network_identity(root, live)
    assert root.find("bridge") is None


def test_new_network_gets_a_derived_uuid_only() -> None:
    root = parse("<network><name>lan</name></network>")
    fill_network_identity(root, None)
    assert root.findtext("uuid") == derived_uuid("network", "lan")
    assert root.find("bridge") is None


def test_adding_a_nic_keeps_every_live_mac_on_its_own_nic() -> None:
    live = parse(domain(
        '<interface type="network"><mac address="52:54:00:11:11:11"/><source network="a"/>'
        '</interface><interface type="bridge"><mac address="52:54:00:22:22:22"/>'
        '<source bridge="br0"/></interface>', uuid="0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01"))
    root = parse(domain(NET_B + NET_A + BRIDGE))  # a new NIC of the same type, first
    fill_domain_identity(root, live)
    got = macs(root)
    assert got[1:] == ["52:54:00:11:11:11", "52:54:00:22:22:22"]
    assert got[0] not in got[1:]


def test_an_edited_nic_source_keeps_its_mac() -> None:
    live = parse(domain('<interface type="network"><mac address="52:54:00:11:11:11"/>'
                        '<source network="a"/></interface>'))
    root = parse(domain(NET_B))
    fill_domain_identity(root, live)
    assert macs(root) == ["52:54:00:11:11:11"]


def test_adding_a_disk_changes_no_identity() -> None:
    disk = '<disk type="file" device="disk"><source file="/x"/><target dev="vdb"/></disk>'
    before, after = parse(domain(NET_A + BRIDGE)), parse(domain(NET_A + disk + BRIDGE))
    fill_domain_identity(before, None)
    fill_domain_identity(after, None)
    assert macs(before) == macs(after)
    assert before.findtext("uuid") == after.findtext("uuid")


def test_recreating_a_deleted_object_gives_it_the_same_identity() -> None:
    from virtctl.model import Desired, Live
    from virtctl.reconciler.plan.actions import Define
    from virtctl.reconciler.load.load import load_text
    from virtctl.reconciler.plan.plan import plan

    spec = load_text(domain(NET_A + NET_A + BRIDGE), source="web.xml")[0]
    desired = Desired(domains={"web": spec})  # type: ignore[dict-item]

    def identity() -> tuple[str | None, list[str]]:
        define = plan(desired, Live()).actions[0]
        assert isinstance(define, Define)
        root = parse(define.xml)
        return root.findtext("uuid"), macs(root)

    first, second = identity(), identity()  # created, deleted, created again
    assert first == second and len(set(first[1])) == 3
