"""`watch` places DomainSets exactly as `apply` does (issue 24): with the hosts' facts
(where each set's instances live; node memory for `placement: memory`), so a host
added moves no instance, and the new ones go where apply puts them. The same specs go
through the watcher's rounds (driven in-process: its Catalog and one Watcher per host,
as the watch tests do) over one set of sim hosts and through `virtctl apply` over
another; after every step both hold the same guests on the same hosts, `render` shows
them there, and `diff --prune` finds the watcher's hosts in sync with apply's plan."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_domainset_placement_sim import virtctl, where
from tests.integration.test_domainset_placement_sim import write as write_with_network
from virtctl import api
from virtctl.drivers import connect
from virtctl.drivers.base import Driver
from virtctl.reconciler.load.gitinfo import default_set
from virtctl.reconciler.placefacts import read_placement_facts
from virtctl.reconciler.plan.plan import Policy
from virtctl.watch.fleet import Catalog, HostSpecs
from virtctl.watch.logs import Log, LogFormat
from virtctl.watch.loop import Watcher
from virtctl.watch.metrics import WatchMetrics
from virtctl.watch.sources import Debouncer, Expectations, Inbox, Trigger
from virtctl.xmlutil import parse

ABCD = ("a", "b", "c", "d")


def write(folder: Path, hosts: tuple[str, ...], replicas: int, *, placement: str = "",
          memory: str = "64MiB") -> None:
    folder.mkdir(exist_ok=True)
    (folder / "hosts.yaml").write_text(
        "kind: Hosts\nhosts: {" + ", ".join(f'{h}: "sim:///{h}"' for h in hosts) + "}\n")
    (folder / "web.yaml").write_text(textwrap.dedent(f"""\
        kind: DomainSet
        name: web
        replicas: {replicas}
        pattern: "web-{{index:02}}"
        hosts: [{", ".join(hosts)}]
        template:
          type: kvm
          memory: {memory}
          description: "web {{index}} on {{host}}"
          os: {{type: hvm, arch: x86_64}}
        """).replace("template:", placement + "template:", 1))


class Watch:
    """The watcher's rounds over the sim hosts of `state`, run in this thread."""

    def __init__(self, folder: Path, state: Path) -> None:
        self.state = state
        # As `virtctl watch -f FOLDER --prune` runs: the apply set named after the folder.
        self.policy = Policy(prune=True, apply_set=default_set([str(folder)]).name)
        self.env = {"VIRTCTL_STATE_DIR": str(state), "VIRTCTL_SIM_FSYNC": "0"}
        self.log = io.StringIO()
        self.catalog = Catalog([str(folder)], default="sim:///default",
                               journal=Log(self.log, fmt=LogFormat("json")),
                               metrics=WatchMetrics(),
                               facts=lambda asked: read_placement_facts(asked, env=self.env))
        self.watchers: dict[str, Watcher] = {}
        self.drivers: list[Driver] = []

    def round(self) -> None:
        """The files changed: every host the specs target runs a round, to in sync."""
        self.catalog.changed()
        for uri in self.catalog.refresh(report=False).targets("sim:///default"):
            first = uri not in self.watchers
            if first:
                driver = connect(uri, env=self.env)
                self.drivers.append(driver)
                self.watchers[uri] = Watcher(
                    uri, HostSpecs(self.catalog, uri),
                    Inbox(debounce=Debouncer(), expectations=Expectations()),
                    journal=Log(self.log, fmt=LogFormat("json")), metrics=WatchMetrics(),
                    policy=self.policy, interval=300.0, driver=driver,
                    lock_root=self.state)
            retry = self.watchers[uri]._round({Trigger.START if first else Trigger.SPEC})
            assert retry == float("inf"), (uri, self.log.getvalue())
        invalid = [r for r in map(json.loads, self.log.getvalue().splitlines())
                   if r["event"] == "spec-invalid"]
        assert not invalid, [r.get("errors") for r in invalid]

    def close(self) -> None:
        for watcher in self.watchers.values():
            watcher.close()
        for driver in self.drivers:
            driver.close()


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[Path, Path, Watch]]:
    """The specs folder, apply's state and the watcher (over its own state)."""
    folder = tmp_path / "specs"
    watch = Watch(folder, tmp_path / "watched")
    yield folder, tmp_path / "applied", watch
    watch.close()


def step(folder: Path, applied: Path, watch: Watch) -> dict[str, str]:
    """Run the watcher's rounds and `apply --prune` on the specs as they are now; both
    must place alike. Returns instance -> host."""
    watch.round()
    done = virtctl(applied, "apply", "--prune", "-f", str(folder))
    assert done.returncode == 0, done.stderr
    watched = where(watch.state, ABCD)
    assert watched == where(applied, ABCD)
    return watched


def agrees(folder: Path, watch: Watch, placed: dict[str, str]) -> None:
    """`render` shows each instance on the host the watcher put it on, and apply's
    plan for the watcher's hosts is empty."""
    rendered = virtctl(watch.state, "render", "-f", str(folder))
    assert rendered.returncode == 0, rendered.stderr
    shown = {}
    for doc in rendered.stdout.split("---\n")[1:]:
        host = doc.split("# host: sim:///", 1)[1].split("\n", 1)[0]
        shown[doc.split("\nname: ", 1)[1].split("\n", 1)[0]] = host
    assert shown == placed
    diff = virtctl(watch.state, "diff", "--prune", "-f", str(folder))
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_round_robin_watch_places_as_apply_and_a_host_added_moves_nothing(
        both: tuple[Path, Path, Watch], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, applied, watch = both
    write(folder, ("a", "b", "c"), 6)
    six = step(folder, applied, watch)
    assert six == {f"web-{i:02}": "abc"[(i - 1) % 3] for i in range(1, 7)}

    # Host d added: by index, round-robin on empty hosts would put web-04 on d; the
    # watcher reads where the instances live, as apply does, and moves none.
    write(folder, ABCD, 6)
    assert step(folder, applied, watch) == six
    readings = watch.catalog._placer.readings
    # Scaled to 8: the new ones go to the host with the fewest (d), the rest stay.
    write(folder, ABCD, 8)
    eight = step(folder, applied, watch)
    assert eight == {**six, "web-07": "d", "web-08": "d"}
    # The facts were read once for that reading, not per host round or per spec.
    assert watch.catalog._placer.readings == readings + 1
    agrees(folder, watch, eight)
    # The Python API places the same way by default; only place=False is offline (as on
    # empty hosts: web-04 on d).
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(watch.state))
    loaded = api.load([str(folder)], use_cache=False)
    assert {n: s.connect for n, s in loaded.domains.items()} == eight
    offline = api.load([str(folder)], use_cache=False, place=False)
    assert offline.domains["web-04"].connect == "d"


def test_memory_placement_in_watch_weighs_the_hosts_as_apply_does(
        both: tuple[Path, Path, Watch]) -> None:
    folder, applied, watch = both
    sizes = {"a": 1024, "b": 3072, "c": 2048, "d": 4096}  # MiB
    for state in (applied, watch.state):
        for host, mib in sizes.items():
            driver = connect(f"sim:///{host}", env={"VIRTCTL_STATE_DIR": str(state)})
            driver.set_node(memory_kib=mib * 1024, cpus=4)
            driver.close()
    memory = {"placement": "placement: memory\n", "memory": "768MiB"}
    write(folder, ("a", "b", "c"), 4, **memory)
    four = step(folder, applied, watch)
    # b 3072, 2304 (> c 2048), c 2048, b 1536 (> c 1280): the guests run, taking it.
    assert four == {"web-01": "b", "web-02": "b", "web-03": "c", "web-04": "b"}

    # d (4096 MiB, empty) added and two more: the four stay; the new ones go to d, the
    # freest (4096, then 3328); on empty hosts web-01 would have gone to d too.
    write(folder, ABCD, 6, **memory)
    six = step(folder, applied, watch)
    assert six == {**four, "web-05": "d", "web-06": "d"}
    agrees(folder, watch, six)


def leases(state: Path, hosts: tuple[str, ...]) -> dict[str, list[tuple[str, str, str]]]:
    """Per host, network lan's DHCP host entries (name, ip, mac), and the MAC of each
    guest's interface: each instance's address as the network will give it."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for host in hosts:
        driver = connect(f"sim:///{host}", env={"VIRTCTL_STATE_DIR": str(state)})
        try:
            snap = driver.snapshot()
            macs = {name: parse(dom.xml).find("devices/interface/mac").get("address")
                    for name, dom in snap.domains.items()}
            entries = sorted((h.get("name"), h.get("ip"), h.get("mac")) for h in
                             parse(snap.networks["lan"].xml).iterfind("ip/dhcp/host"))
        finally:
            driver.close()
        assert sorted(macs.items()) == [(name, mac) for name, _, mac in entries]
        out[host] = entries
    return out


@pytest.mark.parametrize("hosts", [("a",), ("a", "b")], ids=["one-host", "two-hosts"])
def test_a_set_with_a_network_gets_the_dhcp_entries_apply_writes(
        both: tuple[Path, Path, Watch], hosts: tuple[str, ...]) -> None:
    """The set's DHCP host entries go into the network another file declares (per
    host), in the watcher as in apply; a scale change rewrites both the instances and
    the entries; an edit of the network's file keeps them."""
    folder, applied, watch = both
    write_with_network(folder, hosts, 3)
    step(folder, applied, watch)
    three = leases(watch.state, hosts)
    assert three == leases(applied, hosts)
    assert sorted(e[:2] for h in hosts for e in three[h]) == [
        (f"web-{i:02}", f"10.40.0.{99 + i}") for i in range(1, 4)]

    write_with_network(folder, hosts, 5)
    step(folder, applied, watch)
    five = leases(watch.state, hosts)
    assert five == leases(applied, hosts)
    assert sorted(e[:2] for h in hosts for e in five[h]) == [
        (f"web-{i:02}", f"10.40.0.{99 + i}") for i in range(1, 6)]

    # The network's file edited (a second address range): re-derived with the entries.
    nets = folder / "nets.yaml"
    nets.write_text(nets.read_text().replace(
        "ips: [{address: 10.40.0.1, prefix: 24}]",
        "ips: [{address: 10.40.0.1, prefix: 24}, {address: 10.41.0.1, prefix: 24}]"))
    step(folder, applied, watch)
    assert leases(watch.state, hosts) == leases(applied, hosts) == five

    write_with_network(folder, hosts, 2)
    step(folder, applied, watch)
    two = leases(watch.state, hosts)
    assert two == leases(applied, hosts)
    assert sorted(e[:2] for h in hosts for e in two[h]) == [
        ("web-01", "10.40.0.100"), ("web-02", "10.40.0.101")]
    assert where(watch.state, hosts) == where(applied, hosts)
    # apply's plan for the watcher's hosts is empty: the same network, the same guests.
    diff = virtctl(watch.state, "diff", "--prune", "-f", str(folder))
    assert diff.returncode == 0, diff.stdout + diff.stderr
