"""The watcher's Catalog places DomainSets with their hosts' facts (watch/placing.py), as
apply does: the facts read once per reading; an instance it placed that no host holds
yet stays on the host it was given while the facts move (else two hosts' watchers could
both create it), and once a host holds it the facts alone decide; a host that cannot be
read leaves the file broken (its last good specs stand) until a reading places it. Real
files and the real SpecSet, Placer and Catalog; the facts are given, as a host would
answer them."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from virtctl.model import NodeInfo
from virtctl.reconciler.load.load import load_specs
from virtctl.reconciler.load.placement import HostFacts
from virtctl.watch.fleet import Catalog
from virtctl.watch.logs import Log, LogFormat
from virtctl.watch.metrics import WatchMetrics
from virtctl.watch.placing import Placer
from virtctl.watch.routing import Routed, settle_hosts
from virtctl.watch.specs import SpecSet
from virtctl.xmlutil import parse

GiB = 1024 * 1024
SET = """\
kind: Hosts
hosts: {a: "sim:///a", b: "sim:///b"}
---
kind: DomainSet
name: web
replicas: 1
pattern: "web-{index}"
hosts: [a, b]
placement: memory
template: {type: kvm, memory: 1GiB, description: "on {host}", os: {type: hvm, arch: x86_64}}
"""


def free(a: int, b: int, **living: str) -> dict[str, HostFacts | str]:
    """Facts of a and b: `a` and `b` GiB free (of 64), and where instances live."""
    return {f"sim:///{h}": HostFacts(
        instances={"web": frozenset(n for n, on in living.items() if on == h)},
        node=NodeInfo(memory_kib=64 * GiB, free_kib=gib * GiB, cpus=8))
        for h, gib in (("a", a), ("b", b))}


class Hosts:
    """The facts reader: answers what the hosts hold now, and counts the readings."""

    def __init__(self, facts: Mapping[str, HostFacts | str]) -> None:
        self.facts = facts
        self.asked: list[dict[str, bool]] = []

    def __call__(self, asked: Mapping[str, bool]) -> Mapping[str, HostFacts | str]:
        self.asked.append(dict(asked))
        return self.facts


def placed_on(files: SpecSet, placer: Placer) -> str | None:
    """The host web-1 is placed on in a reading of `files` (None: the file is broken)."""
    scan = files.read()
    hosts, _ = settle_hosts(scan, {})
    scan, _ = placer.place(scan, {a.name: a for f in hosts for a in hosts[f]})
    specs = [s for found in scan.parsed.values() for s in found if s.name == "web-1"]
    return specs[0].connect if specs else None


def test_a_new_instance_stays_where_it_was_placed_until_a_host_holds_it(
        tmp_path: Path) -> None:
    (tmp_path / "set.yaml").write_text(SET)
    files = SpecSet([str(tmp_path)])
    hosts = Hosts(free(3, 6))
    placer = Placer(hosts)
    assert placed_on(files, placer) == "b"  # the most free
    assert hosts.asked == [{"sim:///a": True, "sim:///b": True}]
    # Not created yet, and b's free memory fell meanwhile: placing it afresh would pick
    # a (as a new apply would); it stays on b, where a watcher may be creating it.
    hosts.facts = free(3, 2)
    assert placed_on(files, placer) == "b"
    # A host holds it (a): the facts decide from now on, as for apply; removed from a,
    # it is placed afresh by the facts of now (b), not kept on a.
    hosts.facts = free(3, 2, **{"web-1": "a"})
    assert placed_on(files, placer) == "a"
    hosts.facts = free(3, 6)
    assert placed_on(files, placer) == "b"
    assert len(hosts.asked) == 4  # one reading of the facts per reading of the files


def test_an_unreadable_host_breaks_the_file_until_a_resync_places_it(
        tmp_path: Path) -> None:
    (tmp_path / "set.yaml").write_text(SET)
    hosts = Hosts({**free(3, 6), "sim:///b": "connection refused"})
    catalog = Catalog([str(tmp_path)], default="sim:///default",
                      journal=Log(io.StringIO(), fmt=LogFormat("json")),
                      metrics=WatchMetrics(), facts=hosts)
    routed = catalog.refresh(report=False)
    (error,) = routed.broken[str(tmp_path / "set.yaml")]
    assert error.source is not None and error.source.path == "hosts[1]"
    assert error.source.line == 8 and "cannot read host 'b'" in error.message
    assert not any(s.name == "web-1" for f in routed.chosen.values() for s in f)
    # The host answers again; no file changed: the resync reads the facts again and
    # routes the placed instance.
    hosts.facts = free(3, 6)
    routed = catalog.resync()
    assert not routed.broken
    assert [s.connect for f in routed.chosen.values() for s in f if s.name == "web-1"] \
        == ["sim:///b"]
    # Nothing new anywhere: the same view (no routing again), though the facts are read.
    readings = catalog.readings
    catalog.resync()
    assert catalog.readings == readings and len(hosts.asked) == 3


def test_sets_that_place_nothing_read_no_host(tmp_path: Path) -> None:
    (tmp_path / "set.yaml").write_text(SET.replace("placement: memory\n", "perHost: true\n")
                                       .replace('pattern: "web-{index}"\n', "")
                                       .replace("replicas: 1\n", ""))
    hosts = Hosts(free(3, 6))
    placer = Placer(hosts)
    scan = SpecSet([str(tmp_path)]).read()
    assert placer.place(scan, {})[0] is scan and hosts.asked == [] and placer.readings == 0


NET = "kind: Network\nname: lan\nips: [{address: 10.9.0.1, prefix: 24}]\n"
NET_SET = """\
kind: DomainSet
name: web
replicas: 2
pattern: "web-{index}"
network: {name: lan, range: {start: 10.9.0.10, end: 10.9.0.20}}
template:
  type: kvm
  memory: 64MiB
  os: {type: hvm, arch: x86_64}
  interfaces: [{type: network, source: {network: lan}}]
"""


def catalog_of(folder: Path) -> Catalog:
    return Catalog([str(folder)], default="sim:///x", journal=Log(io.StringIO(),
                   fmt=LogFormat("json")), metrics=WatchMetrics(), facts=Hosts({}))


def entries(routed: object) -> list[tuple[str | None, str | None]]:
    """Network lan's DHCP host entries (name, ip) in a routed reading."""
    (net,) = [s for f in routed.chosen.values() for s in f  # type: ignore[attr-defined]
              if s.name == "lan"]
    return sorted((h.get("name"), h.get("ip")) for h in parse(net.xml).iterfind("ip/dhcp/host"))


def test_a_set_with_a_network_writes_its_entries_into_another_files_network(
        tmp_path: Path) -> None:
    """The Catalog reads every file, then writes the set's DHCP host entries into the
    network another file declares (as load_specs does); a scale change, or the
    network's file edited, writes them again."""
    (tmp_path / "net.yaml").write_text(NET)
    (tmp_path / "set.yaml").write_text(NET_SET)
    catalog = catalog_of(tmp_path)
    routed = catalog.refresh()
    assert not routed.broken
    assert entries(routed) == [("web-1", "10.9.0.10"), ("web-2", "10.9.0.11")]
    assert entries(routed) == entries(_applied(tmp_path))
    (tmp_path / "set.yaml").write_text(NET_SET.replace("replicas: 2", "replicas: 3"))
    catalog.changed()
    assert entries(catalog.refresh())[-1] == ("web-3", "10.9.0.12")
    (tmp_path / "net.yaml").write_text(NET.replace("name: lan\n", "name: lan\nmtu: 1400\n"))
    catalog.changed()
    routed = catalog.refresh()
    assert len(entries(routed)) == 3 and entries(routed) == entries(_applied(tmp_path))


def _applied(folder: Path) -> object:
    """What apply loads from `folder`, in the routed shape `entries` reads."""
    desired = load_specs([str(folder)])
    return Routed(chosen={"all": tuple(desired.networks.values())}, broken={}, hosts={})


def test_a_set_naming_an_undeclared_network_breaks_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "set.yaml").write_text(NET_SET)
    routed = catalog_of(tmp_path).refresh()
    (error,) = routed.broken[str(tmp_path / "set.yaml")]
    assert "network 'lan' is not declared" in error.message
    assert error.source is not None and error.source.path == "network.name" \
        and error.source.line == 5


def test_while_the_sets_file_is_broken_its_network_keeps_its_last_good_entries(
        tmp_path: Path) -> None:
    """A network never loses the entries of instances that still stand: the set's file
    broken, the network's file is held at its last good spec (with the entries) and
    says why, until the set's file is valid again."""
    (tmp_path / "net.yaml").write_text(NET)
    (tmp_path / "set.yaml").write_text(NET_SET)
    catalog = catalog_of(tmp_path)
    before = entries(catalog.refresh())
    (tmp_path / "set.yaml").write_text(NET_SET.replace("replicas: 2", "replicas: [2"))
    catalog.changed()
    routed = catalog.refresh()
    (held,) = routed.broken[str(tmp_path / "net.yaml")]
    assert f"DomainSet web ({tmp_path / 'set.yaml'}), which is invalid" in held.message
    assert entries(routed) == before
    assert sorted(s.name for f in routed.chosen.values() for s in f) == [
        "lan", "web-1", "web-2"]
    (tmp_path / "set.yaml").write_text(NET_SET.replace("replicas: 2", "replicas: 1"))
    catalog.changed()
    routed = catalog.refresh()
    assert not routed.broken and entries(routed) == [("web-1", "10.9.0.10")]


def test_a_set_placed_the_same_way_again_is_not_expanded_again(tmp_path: Path) -> None:
    """A reading that places the set as the last one did reuses its expansion (a set of
    1,000 costs seconds to expand); another placement expands it anew."""
    (tmp_path / "set.yaml").write_text(SET.replace("replicas: 1", "replicas: 2"))
    files = SpecSet([str(tmp_path)])
    hosts = Hosts(free(3, 6, **{"web-1": "b", "web-2": "b"}))  # on empty hosts: a, b
    placer = Placer(hosts)

    def specs() -> dict[str, object]:
        scan = files.read()
        found, _ = settle_hosts(scan, {})
        scan, _ = placer.place(scan, {a.name: a for f in found for a in found[f]})
        return {s.name: s for f in scan.parsed.values() for s in f}

    first = specs()
    assert {n: s.connect for n, s in first.items()} == {"web-1": "b", "web-2": "b"}
    again = specs()
    assert all(again[n] is first[n] for n in first)
    hosts.facts = free(3, 6, **{"web-1": "a", "web-2": "b"})
    moved = specs()
    assert moved["web-1"].connect == "a" and moved["web-1"] is not first["web-1"]
