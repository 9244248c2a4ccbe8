"""Checks before the first action: across spec files, and against a host's snapshot."""

from __future__ import annotations

import pytest

from virtctl.capabilities import GuestRequest, check_domain, guest_request, parse_capabilities
from virtctl.drivers.sim.caps import CAPABILITIES_XML, QEMU_EMULATORS, XEN_EMULATORS
from virtctl.errors import ErrorCode, SpecError
from virtctl.model import Desired, DomainSpec, DomainState, Live, LiveDomain, LiveNetwork, Ownership
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.load.validate import check_host, check_specs
from virtctl.xmlutil import parse

CAPS = parse_capabilities(CAPABILITIES_XML)
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


def dom(name: str, *, uuid: str = "", macs: tuple[str, ...] = (), nets: tuple[str, ...] = (),
        dom_type: str = "kvm", os: str = "<type>hvm</type>") -> str:
    u = f"<uuid>{uuid}</uuid>" if uuid else ""
    ifaces = "".join(f'<interface type="user"><mac address="{m}"/></interface>' for m in macs)
    ifaces += "".join(f'<interface type="network"><source network="{n}"/></interface>'
                      for n in nets)
    return (f'<domain type="{dom_type}"><name>{name}</name>{u}<memory>1024</memory>'
            f"<os>{os}</os><devices>{ifaces}</devices></domain>")


def net(name: str, *, uuid: str = "", bridge: str = "") -> str:
    u = f"<uuid>{uuid}</uuid>" if uuid else ""
    b = f'<bridge name="{bridge}"/>' if bridge else ""
    return f"<network><name>{name}</name>{u}{b}</network>"


def load(*files: tuple[str, str]) -> list[DomainSpec]:
    return [load_text(text, source=name)[0] for name, text in files]  # type: ignore[misc]


@pytest.mark.parametrize(("files", "what"), [
    pytest.param([("a.xml", dom("web")), ("b.xml", dom("web"))], "domain name", id="name"),
    pytest.param([("a.xml", dom("x", uuid=U1)), ("b.xml", dom("y", uuid=U1.upper()))],
                 "domain uuid", id="uuid-any-case"),
    pytest.param([("a.xml", dom("x", macs=("52:54:00:00:00:01",))),
                  ("b.xml", dom("y", macs=("52:54:00:00:00:01",)))], "MAC address", id="mac"),
    pytest.param([("a.xml", dom("x", macs=("52:54:00:00:00:0A",))),
                  ("b.xml", dom("y", macs=("52:54:00:00:00:0a",)))], "MAC address",
                 id="mac-any-case"),
    pytest.param([("a.xml", net("n")), ("b.xml", net("n"))], "network name", id="network-name"),
    pytest.param([("a.xml", net("n", bridge="br9")), ("b.xml", net("m", bridge="br9"))],
                 "bridge name", id="bridge"),
])
def test_duplicates_across_files_name_both_files(files: list[tuple[str, str]], what: str) -> None:
    (error,) = check_specs(load(*files))
    assert error.code is ErrorCode.DUPLICATE
    assert what in error.message
    assert error.source is not None and error.source.file == "b.xml"
    assert "a.xml" in str(error)


def test_same_name_for_a_domain_and_a_network_is_fine() -> None:
    assert check_specs(load(("a.xml", dom("x")), ("b.xml", net("x")))) == []


def test_every_duplicate_is_reported_not_just_the_first() -> None:
    errors = check_specs(load(("a.xml", dom("x", uuid=U1)), ("b.xml", dom("x", uuid=U1)),
                              ("c.xml", dom("x"))))
    assert len(errors) == 3


def desired(*xmls: str) -> Desired:
    specs = [load_text(x, source=f"s{i}.xml")[0] for i, x in enumerate(xmls)]
    return Desired(domains={s.name: s for s in specs if isinstance(s, DomainSpec)},
                   networks={s.name: s for s in specs if not isinstance(s, DomainSpec)})


MINE = Ownership(spec_hash="h")


def live_dom(name: str, uuid: str, *, managed: bool) -> LiveDomain:
    return LiveDomain(name=name, uuid=uuid, xml=dom(name, uuid=uuid),
                      state=DomainState.SHUTOFF, owner=MINE if managed else None)


def live_net(name: str, *, managed: bool) -> LiveNetwork:
    return LiveNetwork(name=name, uuid=U2, xml=net(name, uuid=U2), active=True,
                       owner=MINE if managed else None)


def codes(errors: list[SpecError]) -> list[ErrorCode]:
    return [e.code for e in errors]


def test_reference_to_a_network_that_exists_nowhere() -> None:
    (error,) = check_host(desired(dom("web", nets=("ghost",))), Live(), CAPS)
    assert error.code is ErrorCode.UNKNOWN_REFERENCE
    assert "ghost" in error.message and error.source is not None
    assert error.source.file == "s0.xml" and error.source.path.endswith("@network")


@pytest.mark.parametrize(("specs", "live"), [
    pytest.param((dom("web", nets=("lan",)), net("lan")), Live(), id="declared"),
    pytest.param((dom("web", nets=("lan",)),),
                 Live(networks={"lan": live_net("lan", managed=False)}), id="on-host"),
])
def test_reference_resolved_by_spec_or_host(specs: tuple[str, ...], live: Live) -> None:
    assert check_host(desired(*specs), live, CAPS) == []


def test_reference_to_a_network_prune_would_delete_is_refused() -> None:
    live = Live(networks={"lan": live_net("lan", managed=True)})
    assert check_host(desired(dom("web", nets=("lan",))), live, CAPS) == []
    assert codes(check_host(desired(dom("web", nets=("lan",))), live, CAPS, prune=True)) == [
        ErrorCode.UNKNOWN_REFERENCE]


def test_a_network_of_another_apply_set_is_no_prune_victim() -> None:
    """--prune reaches only its sets (issue 20, A.2): a guest may use another team's
    network, which this run's prune never deletes."""
    import dataclasses

    theirs = dataclasses.replace(live_net("lan", managed=True),
                                 owner=Ownership(spec_hash="h", apply_set="B"))
    live = Live(networks={"lan": theirs})
    specs = desired(dom("web", nets=("lan",)))
    assert check_host(specs, live, CAPS, prune=True, prune_sets=frozenset({"A"})) == []
    assert codes(check_host(specs, live, CAPS, prune=True,
                            prune_sets=frozenset({"A", "B"}))) == [ErrorCode.UNKNOWN_REFERENCE]


def test_unmanaged_object_needs_adopt() -> None:
    live = Live(domains={"web": live_dom("web", U1, managed=False)})
    (error,) = check_host(desired(dom("web")), live, CAPS)
    assert error.code is ErrorCode.NOT_MANAGED and "--adopt" in error.message
    assert check_host(desired(dom("web")), live, CAPS, adopt=True) == []
    managed = Live(domains={"web": live_dom("web", U1, managed=True)})
    assert check_host(desired(dom("web")), managed, CAPS) == []


def test_uuid_cannot_change_in_place() -> None:
    live = Live(domains={"web": live_dom("web", U1, managed=True)})
    (error,) = check_host(desired(dom("web", uuid=U2)), live, CAPS)
    assert error.code is ErrorCode.INVALID_SPEC and error.source.path == "uuid"  # type: ignore[union-attr]


def test_uuid_taken_by_another_object_on_the_host() -> None:
    live = Live(domains={"old": live_dom("old", U1, managed=True)})
    (error,) = check_host(desired(dom("new", uuid=U1)), live, CAPS)
    assert error.code is ErrorCode.DUPLICATE and "domain/old" in error.message


@pytest.mark.parametrize(("xml", "ok"), [
    pytest.param(dom("a", dom_type="kvm"), True, id="kvm-hvm"),
    pytest.param(dom("a", dom_type="qemu", os='<type arch="i686">hvm</type>'), True,
                 id="qemu-i686"),
    pytest.param(dom("a", dom_type="xen", os="<type>linux</type>"), True, id="xen-pv-linux"),
    pytest.param(dom("a", dom_type="xen", os="<type>hvm</type>"), True, id="xen-hvm"),
    pytest.param(dom("a", dom_type="lxc", os="<type>exe</type>"), False, id="lxc"),
    pytest.param(dom("a", dom_type="kvm", os='<type arch="aarch64">hvm</type>'), False,
                 id="arch-aarch64"),
    pytest.param(dom("a", dom_type="kvm", os='<type machine="virt">hvm</type>'), False,
                 id="unknown-machine"),
])
def test_guests_the_host_cannot_run_are_refused(xml: str, ok: bool) -> None:
    errors = check_host(desired(xml), Live(), CAPS)
    assert codes(errors) == ([] if ok else [ErrorCode.CONFIG_UNSUPPORTED])


def test_all_host_problems_are_reported_together() -> None:
    live = Live(domains={"web": live_dom("web", U1, managed=False)})
    errors = check_host(desired(dom("web", nets=("ghost",)), dom("odd", dom_type="lxc",
                                                                  os="<type>exe</type>")),
                        live, CAPS)
    assert sorted(codes(errors)) == sorted([ErrorCode.NOT_MANAGED, ErrorCode.UNKNOWN_REFERENCE,
                                            ErrorCode.CONFIG_UNSUPPORTED])


def test_guests_asking_the_same_of_the_host_are_each_refused_with_their_own_source() -> None:
    specs = load(("a.xml", dom("a", dom_type="lxc", os="<type>exe</type>")),
                 ("b.xml", dom("b", dom_type="lxc", os="<type>exe</type>")),
                 ("c.xml", dom("c")))
    errors = check_host(Desired(domains={s.name: s for s in specs}), Live(), CAPS)
    assert [(e.code, e.source.file if e.source else None) for e in errors] == [
        (ErrorCode.CONFIG_UNSUPPORTED, "a.xml"), (ErrorCode.CONFIG_UNSUPPORTED, "b.xml")]


@pytest.mark.parametrize("xml", [
    pytest.param(dom("a", os='<type arch="x86_64" machine="pc">hvm</type>'), id="plain"),
    pytest.param('<domain type="kvm"><name>a</name><os><boot dev="hd"/></os>'
                 '<os><type arch="aarch64">hvm</type></os></domain>', id="type-in-second-os"),
    pytest.param('<domain type="xen"><name>a</name><bootloader>/bin/pygrub</bootloader>'
                 "</domain>", id="no-os"),
    pytest.param('<domain type="kvm"><name>a</name><os><type> </type></os></domain>',
                 id="blank-os-type"),
    pytest.param('<domain type="kvm"><name>a</name><devices/><devices>'
                 "<emulator>/usr/bin/qemu-kvm</emulator></devices></domain>",
                 id="emulator-in-second-devices"),
    pytest.param('<domain type="kvm"><name>a</name><devices><emulator> </emulator></devices>'
                 "</domain>", id="blank-emulator"),
    pytest.param('<domain type="kvm"><name>a</name><devices><emulator/></devices></domain>',
                 id="empty-emulator"),
])
def test_guest_request_reads_the_definition_as_paths_do(xml: str) -> None:
    root = parse(xml)
    os_type = root.find("os/type")
    declared = (os_type.text or "").strip() if os_type is not None else ""
    assert guest_request(root) == GuestRequest(
        dom_type=root.get("type", ""),
        os_type=declared or ("xen" if root.get("type") == "xen" else "hvm"),
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        emulator=root.findtext("devices/emulator"),
    )


QEMU_OFFERED = "offered: " + ", ".join(sorted(QEMU_EMULATORS))


@pytest.mark.parametrize(("xml", "reason"), [
    pytest.param(dom("a"), None, id="runs"),
    pytest.param(dom("a", dom_type="lxc", os="<type>exe</type>"),
                 "the host cannot run domain type 'lxc' with os type 'exe'", id="domain-type"),
    pytest.param(dom("a", os='<type arch="aarch64">hvm</type>'),
                 "the host has no 'kvm' hvm guests on arch 'aarch64'", id="arch"),
    pytest.param(dom("a", os='<type machine="virt">hvm</type>'),
                 "machine type 'virt' is not offered for 'kvm' guests", id="machine"),
    pytest.param('<domain type="kvm"><name>a</name><os><type>hvm</type></os><devices>'
                 "<emulator> /opt/qemu </emulator></devices></domain>",
                 f"emulator '/opt/qemu' is not offered for 'kvm' guests ({QEMU_OFFERED})",
                 id="emulator"),
    pytest.param('<domain type="kvm"><name>a</name><os><type>hvm</type></os><devices>'
                 "<emulator> </emulator></devices></domain>",
                 f"emulator '' is not offered for 'kvm' guests ({QEMU_OFFERED})",
                 id="blank-emulator"),
    pytest.param('<domain type="xen"><name>a</name><os><type>hvm</type></os><devices>'
                 "<emulator>/usr/bin/qemu-kvm</emulator></devices></domain>",
                 "emulator '/usr/bin/qemu-kvm' is not offered for 'xen' guests (offered: "
                 "/usr/lib/xen/bin/qemu-dm, /usr/lib/xen/bin/qemu-system-i386)",
                 id="xen-emulator"),
    *[pytest.param(f'<domain type="{t}"><name>a</name><os><type arch="{a}">{o}</type></os>'
                   f"<devices><emulator>{e}</emulator></devices></domain>", None,
                   id=f"offered-{t}-{o}-{a}-{e}")
      for t, o, emulators in (("kvm", "hvm", QEMU_EMULATORS), ("qemu", "hvm", QEMU_EMULATORS),
                              ("xen", "hvm", XEN_EMULATORS), ("xen", "xen", XEN_EMULATORS))
      for a in ("x86_64", "i686") for e in emulators],
])
def test_check_domain_says_why_the_host_cannot_run_a_guest(xml: str, reason: str | None) -> None:
    assert check_domain(parse(xml), CAPS) == reason


def test_a_bridge_another_network_on_the_host_uses_is_refused_before_any_action() -> None:
    theirs = LiveNetwork(name="theirs", uuid=U2, xml=net("theirs", uuid=U2, bridge="br7"),
                         active=True)
    live = Live(networks={"theirs": theirs})
    (error,) = check_host(desired(net("mine", bridge="br7")), live, CAPS)
    assert error.code is ErrorCode.DUPLICATE
    assert error.message == "bridge 'br7' is already used by network 'theirs' on the host"
    assert error.source is not None and error.source.path == "bridge/@name"
    # Its own bridge, or another bridge, is fine.
    mine = LiveNetwork(name="mine", uuid=U1, xml=net("mine", uuid=U1, bridge="br7"),
                       active=True, owner=MINE)
    assert check_host(desired(net("mine", bridge="br7")), Live(networks={"mine": mine}),
                      CAPS) == []
    assert check_host(desired(net("mine", bridge="br8")), live, CAPS) == []


@pytest.mark.parametrize(("vcpu", "machine", "problem"), [
    pytest.param("<vcpu>255</vcpu>", "pc", None, id="at-the-limit"),
    pytest.param("<vcpu>256</vcpu>", "pc", "256 vcpus are more than the 255 machine type",
                 id="over-the-alias-limit"),
    pytest.param("<vcpu current='2'>4096</vcpu>", "", "4096 vcpus are more than the 288",
                 id="over-any-machine"),
    # Each machine type has its own limit, as libvirt 9.0 reports them (issue 20): q35
    # 288, not i440fx's 255; isapc 1.
    pytest.param("<vcpu>288</vcpu>", "q35", None, id="q35-at-its-limit"),
    pytest.param("<vcpu>289</vcpu>", "q35", "289 vcpus are more than the 288 machine type",
                 id="q35-over-its-limit"),
    pytest.param("<vcpu>288</vcpu>", "pc-q35-7.2", None, id="versioned-q35"),
    pytest.param("<vcpu>256</vcpu>", "pc-i440fx-7.2", "more than the 255 machine type",
                 id="versioned-i440fx"),
    pytest.param("<vcpu>1</vcpu>", "isapc", None, id="isapc-one"),
    pytest.param("<vcpu>2</vcpu>", "isapc", "2 vcpus are more than the 1 machine type",
                 id="isapc-two"),
])
def test_vcpus_are_checked_against_the_machine_type(vcpu: str, machine: str,
                                                    problem: str | None) -> None:
    attr = f" machine='{machine}'" if machine else ""
    xml = (f"<domain type='kvm'><name>big</name><memory>65536</memory>{vcpu}"
           f"<os><type arch='x86_64'{attr}>hvm</type></os></domain>")
    found = check_domain(parse(xml), CAPS)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(("body", "path", "words"), [
    pytest.param("<os><type>hvm</type><boot dev='hd'/></os><devices><disk type='file'>"
                 "<source file='/x'/><target dev='vda'/><boot order='1'/></disk></devices>",
                 "devices/disk/boot/@order", "cannot be used together with <os><boot dev>",
                 id="per-device-and-os-boot"),
    pytest.param("<os><type>hvm</type></os><devices><disk type='file'><source file='/x'/>"
                 "<target dev='vda'/><boot order='1'/></disk><interface type='user'>"
                 "<boot order='1'/></interface></devices>", "devices/interface/boot/@order",
                 "boot order 1 is already given to the disk device", id="boot-order-twice"),
    pytest.param("<os><type>hvm</type></os>", "vcpu/@current",
                 "4 current vcpus are more than the 2", id="current-over-count"),
])
def test_domain_rules_libvirt_applies_are_refused_while_loading(body: str, path: str,
                                                                words: str) -> None:
    vcpu = "<vcpu current='4'>2</vcpu>" if "current" in path else "<vcpu>2</vcpu>"
    xml = f"<domain type='kvm'>\n<name>d</name>\n<memory>65536</memory>\n{vcpu}\n{body}\n</domain>"
    with pytest.raises(SpecError) as caught:
        load_text(xml, source="d.xml")
    (error,) = caught.value.errors  # type: ignore[attr-defined]
    assert error.source.path == path and words in error.message
    assert error.source.line == (4 if "current" in path else 5)


def test_a_reference_error_points_at_the_line_naming_the_network(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """YAML and XML alike, also when the spec comes back from the spec cache."""
    from virtctl.reconciler.load.load import load_specs
    from virtctl.reconciler.speccache import SpecCache

    (tmp_path / "web.yaml").write_text(
        "kind: Domain\nname: web\ntype: kvm\nmemory: 64MiB\nos: {type: hvm}\ninterfaces:\n"
        "  - {type: user}\n  - type: network\n    source: {network: ghost}\n")
    (tmp_path / "db.xml").write_text(
        "<domain type='kvm'>\n<name>db</name>\n<memory>65536</memory>\n"
        "<os><type>hvm</type></os>\n<devices>\n<interface type='network'>\n"
        "<source network='ghost'/>\n</interface>\n</devices>\n</domain>\n")
    cache = SpecCache(tmp_path / "cache")
    for _ in range(2):  # the second load is served by the cache
        desired = load_specs([str(tmp_path / "web.yaml"), str(tmp_path / "db.xml")],
                             cache=cache)
        lines = {e.source.file.rsplit("/", 1)[-1]: e.source.line  # type: ignore[union-attr]
                 for e in check_host(desired, Live(), CAPS)}
        assert lines == {"web.yaml": 9, "db.xml": 7}


@pytest.mark.parametrize(("tpm", "problem"), [
    pytest.param("<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>", None,
                 id="offered"),
    pytest.param("<tpm model='tpm-spapr'><backend type='emulator'/></tpm>",
                 ("devices/tpm/@model", "TPM model 'tpm-spapr' is not offered"), id="model"),
    pytest.param("<tpm model='tpm-tis'><backend type='vtpm'/></tpm>",
                 ("devices/tpm/backend/@type", "TPM backend 'vtpm'"), id="backend"),
    pytest.param("<tpm><backend type='emulator' version='3.0'/></tpm>",
                 ("devices/tpm/backend/@version", "TPM version '3.0'"), id="version"),
])
def test_a_tpm_the_host_does_not_offer_is_refused(tpm: str, problem: tuple[str, str] | None
                                                  ) -> None:
    from virtctl.drivers.sim.caps import DOMAIN_CAPABILITIES_XML
    from virtctl.reconciler.load.validate import check_devices

    xml = (f"<domain type='kvm'><name>t</name><memory>65536</memory>"
           f"<os><type arch='x86_64'>hvm</type></os><devices>{tpm}</devices></domain>")
    asked: list[GuestRequest] = []

    def domcaps(want: GuestRequest) -> str:
        asked.append(want)
        return DOMAIN_CAPABILITIES_XML

    specs = [load_text(xml, source="t.xml")[0], load_text(xml.replace("<name>t", "<name>u"),
                                                          source="u.xml")[0]]
    errors = check_devices(specs, domcaps)  # type: ignore[arg-type]
    assert len(asked) == 1  # once per kind of guest
    if problem is None:
        assert errors == []
    else:
        assert [(e.source.path, problem[1] in e.message) for e in errors] == [  # type: ignore[union-attr]
            (problem[0], True)] * 2
    assert check_devices([load_text(dom("plain"), source="p.xml")[0]], domcaps) == []  # type: ignore[list-item]
