"""DomainSets across three sim hosts (issue 24): 6 instances, scaled 6 -> 4 -> 6 with the
same MACs and addresses back; perHost; selectors on apply, diff, delete, get and
--prune (never outside the selector, never an unmarked object); addresses from the
network's DHCP host entries; the ssh command line; the console's refusal on the sim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from virtctl.drivers import connect
from virtctl.model import Kind
from virtctl.xmlutil import parse

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("a", "b", "c")


def virtctl(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0")
    return subprocess.run([sys.executable, "-m", "virtctl", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)


def specs(folder: Path, replicas: int, *, monitoring: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "hosts.yaml").write_text(
        "kind: Hosts\nhosts: {" + ", ".join(f'{h}: "sim:///{h}"' for h in HOSTS) + "}\n")
    (folder / "nets.yaml").write_text("".join(
        f"---\nkind: Network\nname: lan\nconnect: {h}\nlabels: {{role: net}}\n"
        "ips: [{address: 10.30.0.1, prefix: 24}]\n" for h in HOSTS))
    text = textwrap.dedent(f"""\
        kind: DomainSet
        name: web
        replicas: {replicas}
        pattern: "web-{{index:02}}"
        hosts: [a, b, c]
        labels: {{role: web}}
        network: {{name: lan, range: {{start: 10.30.0.100, end: 10.30.0.199}}}}
        template:
          type: kvm
          memory: 64MiB
          os: {{type: hvm, arch: x86_64}}
          interfaces: [{{type: network, source: {{network: lan}}}}]
          cloudInit: {{pool: seeds, userData: {{users: [{{name: ops}}]}}}}
        """)
    if monitoring:
        text += textwrap.dedent("""\
            ---
            kind: DomainSet
            name: mon
            perHost: true
            hosts: [a, b, c]
            labels: {role: monitoring}
            template:
              type: kvm
              memory: 32MiB
              os: {type: hvm, arch: x86_64}
            """)
    (folder / "guests.yaml").write_text(text)
    pools = "".join(f"---\nkind: StoragePool\nname: seeds\nconnect: {h}\ntype: dir\n"
                    f"target: {{path: {folder.parent / 'pools' / h}}}\n" for h in HOSTS)
    (folder / "pools.yaml").write_text(pools)
    return folder


def live(state: Path, host: str) -> dict[str, tuple[str, ...]]:
    """guest -> (its MACs..., the address the host's network gives each MAC)."""
    driver = connect(f"sim:///{host}", env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        snap = driver.snapshot()
        net = snap.networks.get("lan")
        out = {}
        hosts = {} if net is None else {
            (h.get("mac") or "").lower(): h.get("ip")
            for h in parse(net.xml).iterfind("ip/dhcp/host")}
        for name, dom in snap.domains.items():
            macs = tuple(sorted((m.get("address") or "").lower()
                                for m in parse(dom.xml).iterfind("devices/interface/mac")))
            out[name] = (*macs, *(hosts.get(m, "") for m in macs))
        return out
    finally:
        driver.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_six_across_three_hosts_scaled_down_and_up_keep_their_identities(
        tmp_path: Path, state: Path) -> None:
    folder = specs(tmp_path / "specs", 6)
    first = virtctl(state, "apply", "-f", str(folder))
    assert first.returncode == 0, first.stderr
    assert "[DomainSet web]" in first.stdout and "[DomainSet mon]" in first.stdout
    six = {h: live(state, h) for h in HOSTS}
    assert {h: sorted(g) for h, g in six.items()} == {
        "a": ["mon", "web-01", "web-04"], "b": ["mon", "web-02", "web-05"],
        "c": ["mon", "web-03", "web-06"]}
    assert six["a"]["web-01"][1] == "10.30.0.100" and six["c"]["web-06"][1] == "10.30.0.105"
    assert len({v[0] for g in six.values() for n, v in g.items() if n != "mon"}) == 6

    specs(folder.parent / "specs", 4)
    down = virtctl(state, "apply", "--prune", "-f", str(folder))
    assert down.returncode == 0, down.stderr
    four = {h: live(state, h) for h in HOSTS}
    assert sorted(four["b"]) == ["mon", "web-02"] and sorted(four["c"]) == ["mon", "web-03"]
    assert all(four[h][g] == six[h][g] for h in HOSTS for g in four[h])
    for host in ("b", "c"):  # the removed instances' DHCP entries went with them
        snap = connect(f"sim:///{host}", env={"VIRTCTL_STATE_DIR": str(state)}).snapshot()
        assert "web-05" not in snap.networks["lan"].xml and "web-06" not in \
            snap.networks["lan"].xml
    # The pools stay (--prune never takes a pool still holding managed volumes).
    storage = connect("sim:///b", env={"VIRTCTL_STATE_DIR": str(state)}).storage()
    assert "seeds" in storage.pools and any("web-02-cidata" in k for k in storage.volumes)

    specs(folder.parent / "specs", 6)
    up = virtctl(state, "apply", "--prune", "-f", str(folder))
    assert up.returncode == 0, up.stderr
    assert {h: live(state, h) for h in HOSTS} == six
    again = virtctl(state, "diff", "--prune", "-f", str(folder))
    assert again.returncode == 0, again.stdout + again.stderr


def test_addresses_ssh_line_inventory_and_console_on_the_sim(
        tmp_path: Path, state: Path) -> None:
    folder = specs(tmp_path / "specs", 3)
    assert virtctl(state, "apply", "-f", str(folder)).returncode == 0
    found = virtctl(state, "-c", "sim:///b", "addresses", "web-02", "-o", "json")
    assert found.returncode == 0, found.stderr
    mac = live(state, "b")["web-02"][0]
    assert json.loads(found.stdout) == {"web-02": [
        {"ip": "10.30.0.101", "prefix": 24, "mac": mac, "source": "dhcp-host"}]}
    wide = virtctl(state, "-c", "sim:///b", "get", "domains", "-o", "wide")
    assert "domainset=web,role=web" in wide.stdout and "10.30.0.101" in wide.stdout
    line = virtctl(state, "-c", "sim:///b", "ssh", "-f", str(folder), "--print", "web-02",
                   "--", "echo", "$(hostname)")
    assert line.returncode == 0, line.stderr
    assert json.loads(line.stdout) == ["ssh", "-l", "ops", "--", "10.30.0.101", "echo",
                                       "$(hostname)"]
    inv = virtctl(state, "-c", "sim:///a", "export", "-o", "ansible-inventory", "-l",
                  "role=web")
    doc = json.loads(inv.stdout)
    assert doc["role_web"]["hosts"] == ["web-01"]
    assert doc["_meta"]["hostvars"]["web-01"]["ansible_host"] == "10.30.0.100"
    console = virtctl(state, "-c", "sim:///a", "console", "web-01")
    assert console.returncode == 1 and "the sim runs no guest" in console.stderr


def test_selectors_narrow_apply_prune_delete_and_get(tmp_path: Path, state: Path) -> None:
    folder = specs(tmp_path / "specs", 3)
    only_mon = virtctl(state, "apply", "-l", "role=monitoring", "-f", str(folder))
    assert only_mon.returncode == 0, only_mon.stderr
    assert {h: sorted(live(state, h)) for h in HOSTS} == {h: ["mon"] for h in HOSTS}
    assert virtctl(state, "apply", "-f", str(folder)).returncode == 0
    # An unmarked guest on host a: no selector, prune or delete ever touches it.
    driver = connect("sim:///a", env={"VIRTCTL_STATE_DIR": str(state)})
    driver.define(Kind.DOMAIN, "<domain type='kvm'><name>stray</name><memory>65536</memory>"
                  "<os><type arch='x86_64'>hvm</type></os></domain>")
    driver.close()

    get = virtctl(state, "-c", "sim:///a", "get", "domains", "-l", "role in (web)")
    assert get.returncode == 0 and "web-01" in get.stdout
    assert "mon" not in get.stdout and "stray" not in get.stdout
    unlabeled = virtctl(state, "-c", "sim:///a", "get", "domains", "-l", "!role")
    assert "stray" not in unlabeled.stdout  # unmarked: no recorded labels to select

    # web scaled to 1 and mon dropped from the files: --prune with -l role=web prunes
    # web-02 and web-03 only; mon (not selected) and stray (unmarked) stay. Hosts b and
    # c then have no selected spec: emptying a host needs --prune-all, as always.
    specs(folder.parent / "specs", 1, monitoring=False)
    diff = virtctl(state, "diff", "--prune", "-l", "role=web", "-f", str(folder))
    assert diff.returncode == 2 and "- domain/web-02" in diff.stdout
    assert "domain/mon" not in diff.stdout and "network/lan" not in diff.stdout
    assert "the specs declare nothing for this host" in diff.stderr
    refused = virtctl(state, "apply", "--prune", "-l", "role=web", "-f", str(folder))
    assert refused.returncode == 1 and sorted(live(state, "b")) == ["mon", "web-02"]
    pruned = virtctl(state, "apply", "--prune", "--prune-all", "-l", "role=web", "-f",
                     str(folder))
    assert pruned.returncode == 0, pruned.stderr
    assert sorted(live(state, "a")) == ["mon", "stray", "web-01"]
    assert sorted(live(state, "b")) == ["mon"] and sorted(live(state, "c")) == ["mon"]

    # delete -l: only the selected specs' objects.
    specs(folder.parent / "specs", 1)
    gone = virtctl(state, "delete", "-l", "role=monitoring", "-f", str(folder))
    assert gone.returncode == 0, gone.stderr
    assert sorted(live(state, "a")) == ["stray", "web-01"]
    assert sorted(live(state, "b")) == [] and sorted(live(state, "c")) == []


def test_a_selector_with_prune_never_prunes_what_unselected_specs_declare(
        tmp_path: Path, state: Path) -> None:
    """A guest relabeled in its spec (web -> canary) still carries role=web in its mark:
    `apply -l role=web --prune` must not take it for an absent web guest."""
    folder = specs(tmp_path / "specs", 2, monitoring=False)
    assert virtctl(state, "apply", "-f", str(folder)).returncode == 0
    text = (folder / "guests.yaml").read_text().replace("labels: {role: web}",
                                                       "labels: {role: canary}")
    (folder / "guests.yaml").write_text(text)
    run = virtctl(state, "apply", "--prune", "-l", "role=web", "-f", str(folder))
    assert run.returncode == 0, run.stderr
    assert sorted(live(state, "a")) == ["web-01"] and sorted(live(state, "b")) == ["web-02"]
    relabel = virtctl(state, "apply", "-f", str(folder))
    assert relabel.returncode == 0 and "record the spec's labels" in relabel.stdout
    get = virtctl(state, "-c", "sim:///a", "get", "domains", "-l", "role=canary")
    assert "web-01" in get.stdout
