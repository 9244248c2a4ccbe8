"""Each definition is parsed once per run (issue 23): on a no-op plan, a domain's declared
XML is parsed once (by loading) and each of the host's definitions of it once, however
many checks and rules read them; the trees they share are never edited."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtctl import api
from virtctl.drivers.base import Driver
from virtctl.model import Desired, Live
from virtctl.reconciler.plan.plan import Plan, Policy
from virtctl.reconciler.trees import live_tree, running_tree, spec_tree
from virtctl.xmlutil import counting_parses, parse, tostring

N = 24  # domains: half in XML files, half in one YAML file
NETS = 3

XML = """\
<domain type='kvm'>
  <name>{name}</name>
  <metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1" \
autostart="{autostart}"/></metadata>
  <memory unit='MiB'>{mib}</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/{name}.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><source network='net{net}'/><model type='virtio'/></interface>
    {extra}
    <graphics type='vnc' autoport='yes'/>
  </devices>
</domain>
"""

YAML = """\
---
kind: Domain
name: {name}
type: kvm
memory: {mib}MiB
vcpus: 2
os: {{type: hvm, arch: x86_64, machine: pc}}
disks:
  - {{type: file, device: disk, source: /var/lib/libvirt/images/{name}.qcow2, target: vdb,
     bus: virtio}}
interfaces:
  - {{type: network, source: {{network: net{net}}}, model: virtio}}
"""

NETWORK = """\
<network>
  <name>net{i}</name>
  <ip address='10.9.{i}.1' netmask='255.255.255.0'/>
</network>
"""


def write_specs(folder: Path, *, mib: int = 512, extra: str = "") -> None:
    folder.mkdir(exist_ok=True)
    docs = []
    for i in range(N):
        name, net = f"po{i:03d}", i % NETS
        if i % 2:
            docs.append(YAML.format(name=name, net=net, mib=mib))
        else:
            (folder / f"{name}.xml").write_text(XML.format(
                name=name, net=net, mib=mib, autostart="yes" if i % 4 else "no",
                extra=extra))
    (folder / "guests.yaml").write_text("".join(docs))
    for i in range(NETS):
        (folder / f"net{i}.xml").write_text(NETWORK.format(i=i))


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A sim host with the specs applied; their folder."""
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    specs = tmp_path / "specs"
    write_specs(specs)
    with api.connect("sim:///parse-once") as driver:
        result = api.reconcile(api.load([str(specs)]), driver)
    assert result.return_code == 0 and not result.plan.empty
    yield specs


def per_domain(counts: Counter[str]) -> dict[str, int]:
    """Parses of each domain's documents (declared or the host's), by domain name."""
    found: Counter[str] = Counter()
    for text, times in counts.items():
        match = re.search(r"<name>(po\d{3})</name>", text)
        if match and text.lstrip().startswith("<domain"):
            found[match.group(1)] += times
    return dict(found)


def test_a_no_op_plan_parses_each_document_once(host: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the caches, every check and the planner read every object: the whole path.
    monkeypatch.setenv("VIRTCTL_CACHE", "0")
    with counting_parses() as counts:
        desired = api.load([str(host)])
        with api.connect("sim:///parse-once") as driver:
            planned = api.plan(desired, driver)
    with api.connect("sim:///parse-once") as driver:
        live = driver.snapshot()
    assert planned.empty, planned.actions
    assert len(desired.domains) == N
    assert all(d.state.active and d.running_xml for d in live.domains.values())
    assert max(counts.values()) == 1, [t[:60] for t, n in counts.items() if n > 1]
    # A guest declared in an XML file: its file once; in YAML, none (the converter
    # builds the tree). The host's persistent and running definitions: once each.
    want = {f"po{i:03d}": 2 if i % 2 else 3 for i in range(N)}
    assert per_domain(counts) == want


def test_with_the_caches_a_no_op_plan_parses_nothing(host: Path) -> None:
    def noop() -> Counter[str]:
        with counting_parses() as counts:
            desired = api.load([str(host)])
            with api.connect("sim:///parse-once") as driver:
                assert api.plan(desired, driver).empty
        return counts

    noop()  # fills the spec cache and the sync memo
    assert per_domain(noop()) == {}


class _Fixed:
    """The sim host, with one snapshot for the whole run: the same live objects (and
    their trees) are planned against twice."""

    def __init__(self, driver: Driver, live: Live) -> None:
        self._driver, self._live = driver, live

    def snapshot(self) -> Live:
        return self._live

    def __getattr__(self, name: str) -> object:
        return getattr(self._driver, name)


def _unchanged(desired: Desired, live: Live) -> list[str]:
    """Objects whose carried tree no longer says what their XML says."""
    def same(tree: object, text: str) -> bool:
        return tostring(tree, pretty=False) == tostring(parse(text), pretty=False)  # type: ignore[arg-type]

    bad = [f"spec {s.name}" for s in (*desired.domains.values(), *desired.networks.values())
           if "xml" in s.parsed and not same(spec_tree(s), s.xml)]
    for obj in (*live.domains.values(), *live.networks.values()):
        if "xml" in obj.parsed and not same(live_tree(obj), obj.xml):
            bad.append(f"live {obj.name}")
        running = obj.parsed.get("running")
        if running is not None and obj.running_xml and not same(running_tree(obj),
                                                                obj.running_xml):
            bad.append(f"running {obj.name}")
    return bad


def test_shared_trees_are_never_edited(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning real changes (memory, a device to hot-plug, a guest to restart) twice over
    the same objects gives the same plan, and leaves every shared tree as parsed."""
    monkeypatch.setenv("VIRTCTL_CACHE", "0")
    write_specs(host, mib=1024, extra="<interface type='network'><source network='net0'/>"
                                      "<model type='virtio'/></interface>")
    desired = api.load([str(host)])
    with api.connect("sim:///parse-once") as driver:
        fixed = _Fixed(driver, driver.snapshot())
        policy = Policy(allow_restart=True)
        first: Plan = api.plan(desired, fixed, policy=policy)  # type: ignore[arg-type]
        again: Plan = api.plan(desired, fixed, policy=policy)  # type: ignore[arg-type]
    assert not first.empty
    assert again == first
    assert _unchanged(desired, fixed.snapshot()) == []
