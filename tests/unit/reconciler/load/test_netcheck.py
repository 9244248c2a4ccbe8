"""Network definitions libvirt refuses beyond its schema are refused before any action
(virtctl.reconciler.load.netcheck), naming the file, line and path; what libvirt accepts is
accepted, including the MAC a vhost-user or passt interface shares with another."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtctl.errors import SpecError, SpecErrors
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.load.validate import check_specs

CORPUS = Path(__file__).resolve().parents[5] / "shared" / "corpus" / "network"
UUID = "<uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid>"


def network(body: str) -> str:
    return f"<network>\n<name>n</name>\n{UUID}\n{body}\n</network>\n"


# The failures libvirt 11.3's networkxml2xmltest expects, in our own words and files.
@pytest.mark.parametrize(("body", "path", "words"), [
    pytest.param("<dns enable='no'>\n<host ip='192.168.122.2'><hostname>a</hostname></host>"
                 "</dns>", "dns", "DNS is disabled", id="disabled-dns-with-records"),
    pytest.param("<bridge name='virbr9'/>\n<forward mode='open' dev='eth0'/>",
                 "forward/@dev", "mode 'open'", id="open-with-forward-dev"),
    pytest.param("<forward mode='passthrough'>\n<pf dev='eth0'/>\n</forward>\n"
                 "<ip address='192.168.122.1' netmask='255.255.255.0'/>", "ip",
                 "routes nothing", id="passthrough-with-ip"),
    pytest.param("<forward mode='passthrough'>\n<address type='pci' domain='0x0000' "
                 "bus='0x11' slot='0x10' function='0x1'/>\n</forward>", "forward/address",
                 "PCI addresses are for mode 'hostdev'", id="passthrough-by-address"),
    pytest.param("<forward mode='hostdev' managed='yes'>\n<address type='pci' "
                 "domain='0x0000' bus='0x03' slot='0x00' function='0x1'/>\n<address "
                 "type='pci' domain='0' bus='3' slot='0' function='1'/>\n</forward>",
                 "forward/address", "0000:03:00.1 is listed twice", id="hostdev-duplicate"),
    pytest.param("<forward mode='passthrough'>\n<interface dev='eth0'/>\n"
                 "<interface dev='eth0'/>\n</forward>", "forward/interface",
                 "'eth0' is listed twice", id="passthrough-duplicate"),
    pytest.param("<forward mode='nat'>\n<interface dev='eth0'/>\n<interface dev='eth1'/>\n"
                 "</forward>", "forward/interface", "at most one", id="nat-two-devices"),
    pytest.param("<forward mode='bridge' dev='eth0'/>\n<bridge name='br0'/>", "bridge",
                 "not both", id="bridge-name-and-device"),
    pytest.param("<forward mode='vepa'>\n<pf dev='eth0'/>\n<pf dev='eth1'/>\n</forward>",
                 "forward/pf", "only one <pf>", id="two-pfs"),
])
def test_what_libvirt_refuses_is_refused_with_file_line_and_path(
        body: str, path: str, words: str) -> None:
    with pytest.raises(SpecErrors) as caught:
        load_text(network(body), source="nets/n.xml")
    (error,) = caught.value.errors
    assert error.source is not None
    assert (error.source.file, error.source.path) == ("nets/n.xml", path)
    # The line of the element the error is about (each test puts it on line 4 or later).
    assert error.source.line is not None and error.source.line >= 4
    assert words in error.message


def test_every_problem_is_reported_at_once() -> None:
    body = ("<forward mode='hostdev'>\n<address type='pci' domain='0' bus='3' slot='0' "
            "function='1'/>\n<address type='pci' domain='0' bus='3' slot='0' "
            "function='1'/>\n</forward>\n<ip address='10.0.0.1' prefix='24'/>\n<mac "
            "address='52:54:00:00:00:01'/>")
    with pytest.raises(SpecErrors) as caught:
        load_text(network(body), source="n.xml")
    assert [e.source.path for e in caught.value.errors if e.source] == [
        "ip", "mac", "forward/address"]


def test_a_yaml_network_is_checked_too() -> None:
    text = "kind: Network\nname: n\nforward:\n  mode: open\n  dev: eth0\n"
    with pytest.raises(SpecError) as caught:
        load_text(text, source="n.yaml")
    assert "mode 'open'" in str(caught.value) and "n.yaml" in str(caught.value)


@pytest.mark.parametrize("body", [
    pytest.param("<forward mode='bridge'/>\n<bridge name='br0'/>", id="host-bridge"),
    pytest.param("<forward dev='eth0'>\n<interface dev='eth0'/>\n</forward>\n"
                 "<ip address='10.0.0.1' prefix='24'/>", id="nat-dev-named-twice-the-same"),
    pytest.param("<forward mode='passthrough'>\n<pf dev='eth0'/>\n</forward>", id="pf"),
    pytest.param("<forward mode='hostdev' managed='yes'>\n<address type='pci' domain='0' "
                 "bus='3' slot='0' function='1'/>\n<address type='pci' domain='0' bus='3' "
                 "slot='0' function='2'/>\n</forward>", id="hostdev-two-functions"),
    pytest.param("<dns enable='no'/>\n<ip address='10.0.0.1' prefix='24'/>",
                 id="dns-disabled-empty"),
])
def test_what_libvirt_accepts_is_accepted(body: str) -> None:
    (spec,) = load_text(network(body), source="n.xml")
    assert spec.name == "n"


def test_every_network_of_the_reference_corpus_loads_but_the_older_passthrough_pf() -> None:
    if not CORPUS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: the reference corpus at {CORPUS}")
        pytest.skip(f"reference corpus not at {CORPUS}")
    refused = []
    for path in sorted(CORPUS.glob("*.in.xml")):
        try:
            load_text(path.read_text(), source=path.name)
        except SpecError:
            refused.append(path.name)
    # passthrough-pf comes from a release that accepted its <ip>; 11.3 refuses it.
    assert refused == ["passthrough-pf.in.xml"]


def iface(kind: str, mac: str, extra: str = "") -> str:
    source = "<source type='unix' path='/run/v.sock' mode='server'/>" \
        if kind == "vhostuser" else ""
    return f"<interface type='{kind}'><mac address='{mac}'/>{source}{extra}</interface>"


@pytest.mark.parametrize(("first", "second", "clash"), [
    pytest.param(iface("user", "52:54:00:00:00:01"), iface("user", "52:54:00:00:00:01"),
                 True, id="two-plain"),
    pytest.param(iface("vhostuser", "52:54:00:00:00:01"), iface("user", "52:54:00:00:00:01"),
                 False, id="vhost-user-and-plain"),
    pytest.param(iface("user", "52:54:00:00:00:01", "<backend type='passt'/>"),
                 iface("network", "52:54:00:00:00:01", "<source network='default'/>"),
                 False, id="passt-and-network"),
])
def test_a_mac_shared_with_a_vhost_user_or_passt_interface_is_accepted(
        first: str, second: str, clash: bool) -> None:
    def domain(name: str, devices: str) -> str:
        return (f"<domain type='kvm'><name>{name}</name><memory>1024</memory>"
                f"<os><type>hvm</type></os><devices>{devices}</devices></domain>")

    specs = [load_text(domain("a", first), source="a.xml")[0],
             load_text(domain("b", second), source="b.xml")[0]]
    errors = check_specs(specs)  # type: ignore[arg-type]
    assert bool(errors) is clash
    if clash:
        assert "MAC address" in errors[0].message
