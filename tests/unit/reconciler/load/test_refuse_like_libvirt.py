"""Issue 20 C: what libvirt refuses (or only fails at start, or never converges) is
refused while loading, in every format, with the file, the line of the element (XML),
key (YAML) or key (xm/xl), and the field. The boundaries are tested both ways: what
libvirt takes is still taken."""

from __future__ import annotations

import ast

import pytest

from virtctl.errors import SpecError, SpecErrors
from virtctl.limits import (
    MAX_DOMAIN_DEVICES,
    MAX_XEN_LIST_ITEMS,
    ifname_problem,
    mac_problem,
    name_problem,
)
from virtctl.reconciler.load.load import load_text


def errors_of(text: str, source: str) -> list[SpecError]:
    with pytest.raises(SpecError) as caught:
        load_text(text, source=source)
    error = caught.value
    return list(error.errors) if isinstance(error, SpecErrors) else [error]


def where(error: SpecError) -> tuple[int | None, str | None]:
    assert error.source is not None
    return error.source.line, error.source.path


def xml_domain(body: str = "", memory: str = "<memory unit='MiB'>64</memory>") -> str:
    return (f"<domain type='qemu'>\n<name>d</name>\n{memory}\n<os><type>hvm</type></os>\n"
            f"<devices>\n{body}\n</devices>\n</domain>\n")


# -- names ----------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\ufeff", "\u2060", "\u2028", "\x85",
                                  "\u00ad", "\u061c"])
def test_a_name_with_an_invisible_or_format_character_is_refused(char: str) -> None:
    problem = name_problem(f"web{char}1")
    assert problem is not None and f"U+{ord(char):04X}" in problem
    # and it is printed escaped, never raw
    assert char not in problem


@pytest.mark.parametrize("name", ["web-1", "caf\u00e9", "\u65e5\u672c", "a b", "x.y_z"])
def test_ordinary_names_are_taken(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(("text", "source", "line"), [
    ("kind: Domain\nname: \"a\\u202eb\"\ntype: qemu\nmemory: 64MiB\nos: {type: hvm}\n",
     "d.yaml", 2),
    ("<network>\n<uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid>\n<name>n\u200b</name>\n"
     "</network>\n", "n.xml", 3),
    ("kind: Volume\nname: \"v\\u200d.img\"\npool: p\ncapacity: 1GiB\n", "v.yaml", 2),
    ("kind: StoragePool\ntype: dir\nname: \"p\\ufeff\"\ntarget: {path: /x}\n", "p.yaml", 3),
    ('memory = 64\nname = "x\\u200by"\n', "x.cfg", 2),
])
def test_every_kind_and_format_refuses_such_a_name_at_its_line(text: str, source: str,
                                                               line: int) -> None:
    (error,) = errors_of(text, source)
    assert where(error) == (line, "name") and "invisible or format" in error.message


# -- MACs and interface names --------------------------------------------------------------

@pytest.mark.parametrize(("mac", "words"), [
    ("52:54:00:zz:00:01", "malformed"), ("ff:ff:ff:ff:ff:ff", "multicast"),
    ("01:00:5e:00:00:01", "multicast"), ("52:54:00:1:2:3", "'52:54:00:01:02:03'"),
    ("52-54-00-00-00-01", "malformed"), ("52:54:00:00:00", "malformed"), ("", "malformed"),
])
def test_macs_libvirt_refuses_or_rewrites(mac: str, words: str) -> None:
    problem = mac_problem(mac)
    assert problem is not None and words in problem


@pytest.mark.parametrize("mac", ["52:54:00:12:34:56", "52:54:00:AB:CD:EF", "00:16:3e:00:00:01",
                                 "fe:ff:ff:ff:ff:ff"])
def test_unicast_macs_are_taken(mac: str) -> None:
    assert mac_problem(mac) is None


@pytest.mark.parametrize(("name", "ok"), [
    ("a" * 15, True), ("a" * 16, False), ("br0", True), ("br/0", False), ("br:0", False),
    ("br 0", False), ("br\t0", False), (".", False), ("..", False), ("", False),
    ("br\u200b0", False),
])
def test_interface_names_are_what_linux_takes(name: str, ok: bool) -> None:
    assert (ifname_problem(name) is None) is ok


def test_a_bridge_name_template_counts_its_number_as_a_digit() -> None:
    net = ("<network>\n<name>n</name>\n<bridge name='{}'/>\n"
           "<ip address='10.0.0.1' prefix='24'/>\n</network>\n")
    (spec,) = load_text(net.format("virbr-test%d"), source="n.xml")
    assert spec.name == "n"
    (error,) = errors_of(net.format("virbr-testingxy%d"), "n.xml")
    assert where(error) == (3, "bridge/@name") and "'virbr-testingxy%d'" in error.message


@pytest.mark.parametrize(("iface", "path"), [
    ("<interface type='bridge'>\n<source bridge='br-0123456789abcdef'/>\n</interface>",
     "devices/interface/source/@bridge"),
    ("<interface type='ethernet'>\n<target dev='tap/0'/>\n</interface>",
     "devices/interface/target/@dev"),
    ("<interface type='direct'>\n<source dev='eth0 1' mode='bridge'/>\n</interface>",
     "devices/interface/source/@dev"),
])
def test_a_domain_interface_name_linux_refuses_is_refused_at_its_line(iface: str,
                                                                      path: str) -> None:
    (error,) = errors_of(xml_domain(iface), "d.xml")
    assert where(error) == (7, path)


# -- sizes ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("memory", "words"), [
    ("<memory unit='KiB'>-1</memory>", "'-1' is not a whole number"),
    ("<memory unit='EiB'>1e309</memory>", "'1e309' is not a whole number"),
    ("<memory unit='EiB'>8</memory>", "8 EiB or more"),
    ("<memory>9007199254740992</memory>", "8 EiB or more"),
    ("<memory unit='GiB'>0.5</memory>", "'0.5' is not a whole number"),
    ("<memory unit='lightyears'>1</memory>", "unknown unit"),
    ("<memory unit='MiB'>0</memory>", "needs some memory"),
    ("<memory unit='MiB'>64</memory>\n<currentMemory unit='MiB'>65</currentMemory>",
     "exceeds memory"),
    ("<maxMemory slots='2' unit='MiB'>32</maxMemory>\n<memory unit='MiB'>64</memory>",
     "exceeds maxMemory"),
    ("<memory unit='MiB'>64</memory>\n<currentMemory>0</currentMemory>",
     "currentMemory 0 is taken as all of memory"),
    ("<memory unit='MiB'>64</memory>\n<memtune><soft_limit>-1</soft_limit></memtune>",
     "'-1' is not a whole number"),
])
def test_xml_sizes_libvirt_refuses_are_refused(memory: str, words: str) -> None:
    (error,) = errors_of(xml_domain(memory=memory), "d.xml")
    assert error.source is not None and error.source.line in (3, 4)
    assert words in error.message


@pytest.mark.parametrize("memory", [
    "<memory unit='EiB'>7</memory>", "<memory>9007199254740991</memory>",
    "<memory unit='MiB'>64</memory>\n<currentMemory unit='MiB'>64</currentMemory>",
    "<memory unit='b'>1</memory>", "<memory unit='G'> 2 </memory>",
])
def test_xml_sizes_libvirt_takes_are_taken(memory: str) -> None:
    (spec,) = load_text(xml_domain(memory=memory), source="d.xml")
    assert spec.name == "d"


@pytest.mark.parametrize(("memory", "line"), [
    ("-1", 4), ("1e309EiB", 4), ("8EiB", 4), ("0", 4), ("1.5GiB", 4), ("'-1'", 4),
    ("9223372036854775807b", 4), ("64MiB\ncurrentMemory: 0", 5),
    ("64MiB\ncurrentMemory: 65MiB", 5),
])
def test_yaml_sizes_have_parity_with_xml(memory: str, line: int) -> None:
    text = f"kind: Domain\nname: d\ntype: qemu\nmemory: {memory}\nos: {{type: hvm}}\n"
    (error,) = errors_of(text, "d.yaml")
    assert where(error)[0] == line


def test_a_volume_capacity_libvirt_refuses_is_refused_at_its_line() -> None:
    text = ("<volume>\n<name>v.img</name>\n<capacity unit='GiB'>-1</capacity>\n<metadata>"
            "<virtctl:runtime xmlns:virtctl='https://virtctl.dev/xmlns/1' pool='p'/>"
            "</metadata>\n</volume>\n")
    (error,) = errors_of(text, "v.xml")
    assert where(error) == (3, "capacity")


# -- disk targets, cloud-init --------------------------------------------------------------

def test_two_disks_on_one_target_are_refused_at_the_second() -> None:
    disks = "\n".join(f"<disk type='file'>\n<source file='/{n}'/>\n<target dev='vda'/>\n</disk>"
                      for n in "ab")
    (error,) = errors_of(xml_domain(disks), "d.xml")
    assert where(error) == (12, "devices/disk/target/@dev")


@pytest.mark.parametrize(("machine", "disk", "cloud", "line", "path"), [
    ("pc", "{type: file, device: cdrom, target: hdd, bus: ide}", "", 8, "cloudInit"),
    ("q35", "{type: file, device: cdrom, target: sdz, bus: sata}", "", 8, "cloudInit"),
    ("pc", "{type: file, source: /x, target: vdb}", "  target: vdb\n", 11, "cloudInit.target"),
])
def test_a_cloud_init_seed_on_a_declared_target_is_refused(
        machine: str, disk: str, cloud: str, line: int, path: str) -> None:
    text = (f"kind: Domain\nname: web\ntype: qemu\nmemory: 64MiB\n"
            f"os: {{type: hvm, machine: {machine}}}\ndisks:\n  - {disk}\ncloudInit:\n"
            f"  pool: images\n  userData: {{users: [default]}}\n{cloud}")
    (error,) = errors_of(text, "web.yaml")
    assert where(error) == (line, path) and "disks[0] has already" in error.message


def test_a_cloud_init_seed_beside_other_disks_is_taken() -> None:
    text = ("kind: Domain\nname: web\ntype: qemu\nmemory: 64MiB\nos: {type: hvm}\n"
            "disks:\n  - {type: file, source: /x, target: vda, bus: virtio}\n"
            "  - {type: file, device: cdrom, target: hdc, bus: ide}\n"
            "cloudInit:\n  pool: images\n  userData: {users: [default]}\n")
    domain, seed = load_text(text, source="web.yaml")
    assert "hdd" in domain.xml and seed.name == "web-cidata.iso"  # type: ignore[union-attr]


# -- YAML: duplicate keys, lines of converted elements ---------------------------------

@pytest.mark.parametrize(("text", "line", "path"), [
    ("kind: Domain\nname: d\ntype: qemu\nvcpus: 2\nvcpus: 1\n", 5, "vcpus"),
    ("kind: Network\nname: n\nforward:\n  mode: nat\n  mode: route\n", 5, "forward.mode"),
    ("kind: Hosts\nhosts:\n  a: qemu:///system\n  a: test:///default\n", 4, "hosts.a"),
    ("x: 1\n---\nkind: Volume\nname: v\npool: p\ncapacity: 1GiB\npool: q\n", 7, "pool"),
    ("kind: Domain\nname: d\ndisks:\n  - {target: vda, target: vdb}\n", 4, "disks[0].target"),
    # An int and a string differ (a crash before: the schema error sorted them).
    ("kind: Domain\nname: d\n1: a\n'1': b\n", None, None),
])
def test_a_yaml_key_given_twice_is_refused_at_the_second(text: str, line: int | None,
                                                         path: str | None) -> None:
    found = errors_of(text, "s.yaml")
    if line is None:
        assert all("given twice" not in e.message for e in found)
        return
    (error,) = found
    assert where(error) == (line, path) and "given twice" in error.message


def test_a_merge_key_may_still_be_overridden() -> None:
    text = ("kind: Domain\nname: d\ntype: qemu\nmemory: 64MiB\nos: {type: hvm}\ninterfaces:\n"
            "  - &nic {type: user, model: e1000}\n  - <<: *nic\n    model: virtio\n")
    (spec,) = load_text(text, source="d.yaml")
    assert spec.xml.count("<interface") == 2


def test_convert_refuses_a_yaml_key_given_twice_too() -> None:
    from virtctl.converters.convert import convert

    text = "kind: Domain\nname: c\ntype: qemu\nmemory: 64MiB\nmemory: 32MiB\nos: {type: hvm}\n"
    with pytest.raises(SpecError) as caught:
        convert(text, src="yaml", dst="xml", source="c.yaml")
    assert caught.value.source is not None and caught.value.source.line == 5
    assert "'memory' is given twice" in caught.value.message


@pytest.mark.parametrize(("devices", "line", "path"), [
    ("disks:\n  - {type: file, source: /x, target: vda, bootOrder: 1}\n"
     "interfaces:\n  - type: user\n    bootOrder: 1\n", 10, "interfaces[0].bootOrder"),
    ("interfaces:\n  - {type: user}\n  - type: user\n    mac: 'ff:ff:ff:ff:ff:ff'\n", 9,
     "interfaces[1].mac"),
    ("disks:\n  - {type: file, source: /x, target: vda}\nextraDevices:\n  - <interface "
     "type='user'/>\n  - <disk type='file'><target dev='vda'/></disk>\n", 10,
     "extraDevices[1]"),
])
def test_a_yaml_error_found_in_the_converted_xml_names_the_key(devices: str, line: int,
                                                               path: str) -> None:
    text = f"kind: Domain\nname: d\ntype: qemu\nmemory: 64MiB\nos: {{type: hvm}}\n{devices}"
    (error,) = errors_of(text, "d.yaml")
    assert where(error) == (line, path)


# -- counts --------------------------------------------------------------------------------

def test_a_million_item_vif_list_is_refused_before_it_is_parsed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'name = "big"\nmemory = 64\nvif = [' + ",".join(['""'] * 1_000_000) + "]\n"

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ast.parse was reached")

    monkeypatch.setattr(ast, "parse", no_parse)
    (error,) = errors_of(text, "big.cfg")
    assert where(error) == (3, "vif") and "more than 10,000 values" in error.message


@pytest.mark.parametrize("items", [MAX_XEN_LIST_ITEMS, MAX_XEN_LIST_ITEMS + 1])
def test_one_xen_list_holds_at_most_the_limit(items: int) -> None:
    vifs = ",\n".join(f'"mac=00:16:3e:00:{i // 256:02x}:{i % 256:02x}"' for i in range(items))
    text = f'name = "many"\nmemory = 64\nbuilder = "hvm"\nvif = [\n{vifs}\n]\n'
    if items <= MAX_XEN_LIST_ITEMS:
        (spec,) = load_text(text, source="many.cfg")
        assert spec.xml.count("<interface") == items
    else:
        (error,) = errors_of(text, "many.cfg")
        assert where(error) == (4, "vif") and "1,025 items" in error.message


def test_an_xen_error_in_the_converted_xml_names_the_key_line() -> None:
    text = 'name = "x"\nbuilder = "hvm"\n\nmemory = 100000000000000\n'
    found = errors_of(text, "x.cfg")
    assert {where(e) for e in found} == {(4, "memory")} and len(found) == 1


@pytest.mark.parametrize("count", [MAX_DOMAIN_DEVICES, MAX_DOMAIN_DEVICES + 1])
def test_a_domain_holds_at_most_the_device_limit(count: int) -> None:
    body = "\n".join("<input type='mouse' bus='usb'/>" for _ in range(count))
    if count <= MAX_DOMAIN_DEVICES:
        (spec,) = load_text(xml_domain(body), source="d.xml")
        assert spec.name == "d"
    else:
        (error,) = errors_of(xml_domain(body), "d.xml")
        assert where(error) == (5, "devices") and f"{count:,} devices" in error.message


@pytest.mark.parametrize(("lists", "line", "path", "words"), [
    ("interfaces:\n" + "  - {type: user}\n" * 4097, 6, "interfaces", "4,097 devices"),
    ("disks:\n" + "  - {type: file, source: /x}\n" * 2097 + "inputs:\n"
     + "  - {type: mouse, bus: usb}\n" * 2000, 6, "disks", "4,097 devices"),
    ("clock:\n  timers:\n" + "    - {name: rtc}\n" * 10_001, 7, "clock.timers",
     "10,001 items"),
])
def test_long_yaml_lists_are_refused_before_the_schema_walks_them(
        lists: str, line: int, path: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtctl.reconciler.load import load

    monkeypatch.setattr(load, "_validator", lambda *a: pytest.fail("schema reached"))
    text = f"kind: Domain\nname: d\ntype: qemu\nmemory: 64MiB\nos: {{type: hvm}}\n{lists}"
    (error,) = errors_of(text, "d.yaml")
    assert where(error) == (line, path) and words in error.message


@pytest.mark.parametrize(("given", "others"), [("prod\u202e", []), ("prod", ["old\u200b"])])
def test_a_set_name_with_an_invisible_character_is_refused(given: str,
                                                           others: list[str]) -> None:
    import argparse

    from virtctl.cli.options import apply_sets

    args = argparse.Namespace(apply_set=given, prune=True, prune_sets=others)
    with pytest.raises(ValueError, match="invisible format characters"):
        apply_sets(args, lambda: pytest.fail("the default set is not asked"))
    args = argparse.Namespace(apply_set="prod", prune=True, prune_sets=["old"])
    assert apply_sets(args, lambda: pytest.fail("not asked")) == ("prod", ("old",))


@pytest.mark.parametrize(("vcpu", "path", "ok"), [
    ("<vcpu>1</vcpu>", "vcpu", True), ("<vcpu>16384</vcpu>", "vcpu", True),
    ("<vcpu>0</vcpu>", "vcpu", False), ("<vcpu>-1</vcpu>", "vcpu", False),
    ("<vcpu>16385</vcpu>", "vcpu", False), ("<vcpu>2.5</vcpu>", "vcpu", False),
    ("<vcpu current='0'>2</vcpu>", "vcpu/@current", False),
    ("<vcpu current='-1'>2</vcpu>", "vcpu/@current", False),
    ("<vcpu>2</vcpu><iothreads>0</iothreads>", "iothreads", True),
    ("<vcpu>2</vcpu><iothreads>-1</iothreads>", "iothreads", False),
    ("<vcpu>2</vcpu><iothreads>4294967295</iothreads>", "iothreads", False),
])
def test_vcpu_and_iothread_counts_that_bring_libvirtd_down_are_refused(
        vcpu: str, path: str, ok: bool) -> None:
    text = xml_domain(memory=f"<memory unit='MiB'>64</memory>\n{vcpu}")
    if ok:
        (spec,) = load_text(text, source="d.xml")
        assert spec.name == "d"
    else:
        (error,) = errors_of(text, "d.xml")
        assert where(error) == (4, path)


@pytest.mark.parametrize(("disk", "flavor"), [
    ('"phy:/dev/vg/a,hda,w"', "xm"), ('"file:/img,hdc:cdrom,r"', "xm"),
    ('"/img,raw,hda,w"', "xl"), ('"format=raw,vdev=hda,access=rw,target=/img"', "xl"),
])
def test_an_xl_disk_string_makes_an_xl_file(disk: str, flavor: str) -> None:
    """Read as xm, two xl disks `/a,raw,hda,w` and `/b,raw,hdc,r` were both on target
    'raw' (which libvirt refuses): the loader now reads such a file as xl."""
    from virtctl.converters.xen.xl import guess_flavor

    assert guess_flavor(f'name = "g"\ndisk = [ {disk} ]\n') == flavor
    second = disk.replace("hda", "hdb").replace("hdc", "hdd")
    text = f'name = "g"\nmemory = 64\nbuilder = "hvm"\ndisk = [ {disk}, {second} ]\n'
    (spec,) = load_text(text, source="g.cfg")
    assert spec.xml.count("<disk") == 2 and "'raw'" not in spec.xml


@pytest.mark.parametrize(("bandwidth", "ok"), [
    ("<inbound average='1000' peak='2000' burst='1024'/>", True),
    ("<inbound average='-1'/>", False), ("<outbound average='1.5'/>", False),
    ("<inbound average='18446744073709551616'/>", False),
])
def test_bandwidth_rates_are_whole_numbers(bandwidth: str, ok: bool) -> None:
    iface = f"<interface type='user'>\n<bandwidth>\n{bandwidth}\n</bandwidth>\n</interface>"
    if ok:
        (spec,) = load_text(xml_domain(iface), source="d.xml")
        assert spec.name == "d"
    else:
        (error,) = errors_of(xml_domain(iface), "d.xml")
        assert error.source is not None and error.source.line == 8


def test_a_host_name_with_an_invisible_character_is_refused() -> None:
    text = "kind: Hosts\nhosts:\n  lab: qemu:///system\n  \"lab\\u200b\": test:///default\n"
    (error,) = errors_of(text, "hosts.yaml")
    assert error.source is not None and error.source.line == 4  # the schema: names are ASCII
    assert "does not match" in error.message
