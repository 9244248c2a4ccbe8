"""kind: DomainSet (issue 24): expansion, derived identities that survive scaling, per-host
names, bad input with file, line and field; `render` against golden output; selectors;
the ssh command line; the Ansible inventory."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from virtctl.cli.commands import main
from virtctl.errors import SpecErrors
from virtctl.coord.hosts import group_by_host
from virtctl.cli.inventory import inventory
from virtctl.model import DomainState, Live, LiveDomain, Ownership
from virtctl.cli.reach import Address, cloud_user, ssh_argv
from virtctl.reconciler.load.domainset import expand
from virtctl.reconciler.load.load import load_specs
from virtctl.selectors import parse_selector

REPO = Path(__file__).resolve().parents[4]
DATA = REPO / "tests" / "data" / "domainset"

HOSTS = 'kind: Hosts\nhosts: {a: "sim:///a", b: "sim:///b", c: "sim:///c"}\n'
NETS = "".join(f"---\nkind: Network\nname: lan\nconnect: {h}\n"
               "ips: [{address: 10.9.0.1, prefix: 24}]\n" for h in "abc")


def web_set(replicas: int, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        kind: DomainSet
        name: web
        replicas: {replicas}
        pattern: "web-{{index:02}}"
        hosts: [a, b, c]
        network: {{name: lan, range: {{start: 10.9.0.10, end: 10.9.0.29}}}}
        template:
          type: kvm
          memory: 64MiB
          os: {{type: hvm, arch: x86_64}}
          interfaces: [{{type: network, source: {{network: lan}}}}]
        """) + extra


def write(tmp: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp / name).write_text(text)
    return tmp


def identities(folder: Path) -> dict[str, tuple[str | None, tuple[str, ...], str]]:
    """instance -> (host, MACs, the DHCP entry's IP in its host's network)."""
    desired = load_specs([str(folder)])
    out = {}
    for dom in desired.domains.values():
        net = next(n for n in desired.networks.values() if n.connect == dom.connect)
        ip = net.xml.split(f'mac="{dom.macs[0]}"', 1)[1].split('ip="', 1)[1].split('"')[0]
        out[dom.name] = (dom.connect, dom.macs, ip)
    return out


def test_replicas_spread_round_robin_with_addresses_from_the_range(tmp_path: Path) -> None:
    found = identities(write(tmp_path, **{"hosts.yaml": HOSTS, "nets.yaml": NETS,
                                          "web.yaml": web_set(6)}))
    assert sorted(found) == [f"web-0{i}" for i in range(1, 7)]
    assert [found[f"web-0{i}"][0] for i in range(1, 7)] == ["a", "b", "c", "a", "b", "c"]
    assert [found[f"web-0{i}"][2] for i in range(1, 7)] == [f"10.9.0.{9 + i}"
                                                          for i in range(1, 7)]
    macs = [m for _, ms, _ in found.values() for m in ms]
    assert len(set(macs)) == 6 and all(m.startswith("52:54:00:") for m in macs)


def test_scale_down_and_up_gives_the_same_instances_the_same_identities(
        tmp_path: Path) -> None:
    base = {"hosts.yaml": HOSTS, "nets.yaml": NETS}
    (tmp_path / "six").mkdir()
    six = identities(write(tmp_path / "six", **base, **{"web.yaml": web_set(6)}))
    (tmp_path / "four").mkdir()
    four = identities(write(tmp_path / "four", **base, **{"web.yaml": web_set(4)}))
    assert sorted(four) == ["web-01", "web-02", "web-03", "web-04"]  # highest indices go
    assert {k: six[k] for k in four} == four
    (tmp_path / "again").mkdir()
    assert identities(write(tmp_path / "again", **base, **{"web.yaml": web_set(6)})) == six


def test_per_host_repeats_the_name_with_distinct_identities(tmp_path: Path) -> None:
    doc = {"kind": "DomainSet", "name": "mon", "perHost": True, "hosts": ["a", "b", "c"],
           "template": {"type": "kvm", "memory": "32MiB",
                        "interfaces": [{"type": "network", "source": {"network": "x"}}]}}
    expansion = expand(doc)
    docs = [d for _, d in expansion.documents]
    assert [(d["name"], d["connect"]) for d in docs] == [("mon", "a"), ("mon", "b"),
                                                         ("mon", "c")]
    assert len({d["uuid"] for d in docs}) == 3
    assert len({d["interfaces"][0]["mac"] for d in docs}) == 3
    # Loaded: three specs named mon, split per host by name again.
    folder = write(tmp_path, **{"hosts.yaml": HOSTS, "mon.yaml": textwrap.dedent("""\
        kind: DomainSet
        name: mon
        perHost: true
        hosts: [a, b, c]
        template: {type: kvm, memory: 32MiB, os: {type: hvm, arch: x86_64}}
        """)})
    desired = load_specs([str(folder)])
    assert sorted(desired.domains) == ["mon@a", "mon@b", "mon@c"]
    groups = group_by_host(desired, default_uri="sim:///default", aliases=desired.hosts)
    assert {uri: sorted(d.domains) for uri, d in groups.items()} == {
        "sim:///a": ["mon"], "sim:///b": ["mon"], "sim:///c": ["mon"]}


def test_one_name_twice_on_one_host_is_refused_even_through_an_alias_and_a_uri(
        tmp_path: Path) -> None:
    dom = "---\nkind: Domain\nname: db\ntype: kvm\nmemory: 32MiB\nconnect: {}\n"
    folder = write(tmp_path, **{"hosts.yaml": HOSTS,
                                "x.yaml": dom.format("a") + dom.format("sim:///a")})
    desired = load_specs([str(folder)])  # as written, two hosts: the URIs decide
    with pytest.raises(SpecErrors, match="domain/db is declared twice for host sim:///a"):
        group_by_host(desired, default_uri="sim:///default", aliases=desired.hosts)
    write(tmp_path, **{"x.yaml": dom.format("a") + dom.format("a")})
    with pytest.raises(SpecErrors, match="duplicate domain name 'db'"):
        load_specs([str(folder)])


def errors_of(tmp_path: Path, text: str, *, hosts: bool = True) -> list[str]:
    files = {"set.yaml": text, "nets.yaml": NETS}
    if hosts:
        files["hosts.yaml"] = HOSTS
    with pytest.raises(SpecErrors) as caught:
        load_specs([str(write(tmp_path, **files))])
    return [str(e) for e in caught.value.errors]


def test_a_pattern_without_index_names_its_line_and_field(tmp_path: Path) -> None:
    text = web_set(3).replace('"web-{index:02}"', '"web"')
    [error] = errors_of(tmp_path, text)
    assert error.startswith(f"{tmp_path}/set.yaml:4: pattern: ") and "{index}" in error


def test_two_instances_with_one_name_on_one_host(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        kind: DomainSet
        name: db
        instances:
          - {name: db-1, host: a}
          - {name: db-2, host: b}
          - {name: db-1, host: a}
        template: {type: kvm, memory: 32MiB}
        """)
    [error] = errors_of(tmp_path, text)
    assert error.startswith(f"{tmp_path}/set.yaml:6: instances[2].name: ")
    assert "two instances are named 'db-1' on host a" in error
    # The same name on two hosts is allowed.
    ok = text.replace("  - {name: db-1, host: a}\ntemplate", "  - {name: db-1, host: c}\n"
                      "template")
    assert "host: c" in ok
    assert sorted(load_specs([str(write(tmp_path, **{"set.yaml": ok}))]).domains) == [
        "db-1@a", "db-1@c", "db-2"]


def test_an_address_range_too_small_for_the_replicas(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path, web_set(21))  # 10.9.0.10 - .29: 20 addresses
    assert error.startswith(f"{tmp_path}/set.yaml:6: network.range: ")
    assert "holds 20 address(es), too few for 21 instance(s)" in error


def test_a_host_not_declared(tmp_path: Path) -> None:
    text = web_set(3).replace("hosts: [a, b, c]", "hosts: [a, b, z]")
    errors = errors_of(tmp_path, text)
    assert any(e.startswith(f"{tmp_path}/set.yaml:5: hosts[2]: ")
               and "host 'z' is not declared in a 'kind: Hosts' document" in e
               for e in errors), errors


def test_a_template_error_names_the_template_key_and_the_instance(tmp_path: Path) -> None:
    text = web_set(2).replace("memory: 64MiB", "memory: lots")
    errors = errors_of(tmp_path, text)
    assert errors and all(f"{tmp_path}/set.yaml:9: template.memory: " in e for e in errors)
    assert "instance web-01" in errors[0]


def test_placeholders_are_replaced_never_formatted() -> None:
    doc = {"kind": "DomainSet", "name": "s", "replicas": 1, "pattern": "n-{index:03}",
           "template": {"description": "{name} {index} {vars.x} {name.__class__} {0} {{x}}"}}
    [(_, dom)] = expand(doc).documents
    assert dom["name"] == "n-001"
    assert dom["description"] == "n-001 1 {vars.x} {name.__class__} {0} {{x}}"


def test_cloud_init_gets_hostname_and_instance_id() -> None:
    doc = {"kind": "DomainSet", "name": "s", "replicas": 2, "pattern": "c-{index}",
           "template": {"cloudInit": {"pool": "p", "userData": {"users": [{"name": "ops"}]}}}}
    docs = [d for _, d in expand(doc).documents]
    assert [d["cloudInit"]["metaData"] for d in docs] == [
        {"instance-id": "c-1", "local-hostname": "c-1"},
        {"instance-id": "c-2", "local-hostname": "c-2"}]
    assert cloud_user(docs[0]["cloudInit"]["userData"]) == "ops"
    assert cloud_user("#cloud-config\nsystem_info: {default_user: {name: deb}}\n") == "deb"
    assert cloud_user({"users": ["default"]}) is None


def test_volume_template_gives_each_instance_its_overlay(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        kind: DomainSet
        name: vm
        replicas: 2
        pattern: vm-{index}
        volumeTemplate: {pool: images, backingVolume: base.qcow2, capacity: 1GiB}
        template: {type: kvm, memory: 32MiB}
        """)
    desired = load_specs([str(write(tmp_path, **{"set.yaml": text}))])
    assert sorted(desired.volumes) == ["images/vm-1.qcow2", "images/vm-2.qcow2"]
    vol = desired.volumes["images/vm-1.qcow2"]
    assert "virtctl-volume:base.qcow2" in vol.xml and vol.delete_policy == "retain"
    assert "volume=\"vm-1.qcow2\"" in desired.domains["vm-1"].xml


def test_render_matches_the_golden_output() -> None:
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        code = main(["render", "--offline", "-f", "tests/data/domainset/specs"], out=out,
                    err=err)
    finally:
        os.chdir(cwd)
    assert code == 0, err.getvalue()
    assert out.getvalue() == (DATA / "render.golden.yaml").read_text()
    # Every document names its host, and mon is there once per host.
    assert out.getvalue().count("# host: sim:///") == 3 * (1 + 1) + 4
    assert out.getvalue().count("name: mon\n") == 3


def test_render_with_a_selector() -> None:
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        assert main(["render", "--offline", "-l", "role=monitoring", "-f",
                     "tests/data/domainset/specs"], out=out, err=io.StringIO()) == 0
    finally:
        os.chdir(cwd)
    assert out.getvalue().count("kind: Domain\n") == 3
    assert "web-01" not in out.getvalue() and "kind: Network" not in out.getvalue()


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ("role=web", {"role": "web"}, True),
    ("role==web", {"role": "db"}, False),
    ("role!=web", {}, True),
    ("role!=web,team=a", {"role": "db", "team": "a"}, True),
    ("env in (prod, stage)", {"env": "stage"}, True),
    ("env in (prod,stage),role", {"env": "prod"}, False),
    ("env notin (prod)", {}, True),
    ("env notin (prod)", {"env": "prod"}, False),
    ("role", {"role": ""}, True),
    ("!role", {"role": "x"}, False),
    ("!role", {}, True),
])
def test_selectors(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


@pytest.mark.parametrize("bad", ["role=we b", "=x", "env in ()", "a,,b", "role=web)"])
def test_bad_selectors_are_refused(bad: str) -> None:
    with pytest.raises(Exception, match="selector: cannot read"):
        parse_selector(bad)


def test_the_ssh_command_line_is_an_argument_list() -> None:
    assert ssh_argv("10.0.0.5", "ops", ["uname", "-a", "$(id); rm -rf /"]) == [
        "ssh", "-l", "ops", "--", "10.0.0.5", "uname", "-a", "$(id); rm -rf /"]
    assert ssh_argv("10.0.0.5", None, []) == ["ssh", "--", "10.0.0.5"]


def _dom(name: str, labels: dict[str, str] | None, apply_set: str = "git:x:specs") -> LiveDomain:
    owner = None if labels is None else Ownership(apply_set=apply_set,
                                                  labels=tuple(sorted(labels.items())))
    return LiveDomain(name=name, uuid="00000000-0000-0000-0000-000000000001",
                      xml=f"<domain><name>{name}</name></domain>",
                      state=DomainState.RUNNING, owner=owner)


def test_the_inventory_has_ansibles_documented_shape() -> None:
    lives = {"qemu:///system": Live(domains={
        "web-01": _dom("web-01", {"role": "web"}), "odd": _dom("odd", None),
        "mon": _dom("mon", {"role": "mon"})}),
        "sim:///b": Live(domains={"mon": _dom("mon", {"role": "mon"})})}
    addresses = {"qemu:///system": {"web-01": (Address("10.0.0.7", "lease"),)}}
    doc = inventory(lives, None, addresses)
    # ansible-inventory --list: _meta.hostvars, all.children, groups with hosts lists.
    assert set(doc["all"]) == {"children"} and doc["all"]["children"][0] == "ungrouped"
    for group in doc["all"]["children"]:
        assert set(doc[group]) <= {"hosts", "children", "vars"}
        assert all(h in doc["_meta"]["hostvars"] for h in doc[group].get("hosts", []))
    assert doc["_meta"]["hostvars"]["web-01"]["ansible_host"] == "10.0.0.7"
    assert doc["host_qemu_system"]["hosts"] == ["mon@qemu_system", "odd", "web-01"]
    assert doc["host_sim_b"]["hosts"] == ["mon@sim_b"]
    assert doc["role_mon"]["hosts"] == ["mon@qemu_system", "mon@sim_b"]
    assert doc["set_git_x_specs"]["hosts"] == ["mon@qemu_system", "mon@sim_b", "web-01"]
    selected = inventory(lives, "role=web", addresses)
    assert sorted(selected["_meta"]["hostvars"]) == ["web-01"]


def test_the_inventory_is_what_ansible_inventory_reads(tmp_path: Path) -> None:
    tool = shutil.which("ansible-inventory") or str(
        Path(os.sys.executable).parent / "ansible-inventory")
    if not Path(tool).exists():
        if os.environ.get("CI"):
            pytest.fail("ansible-inventory missing: pip install -e '.[test]' (ansible-core)")
        pytest.skip("ansible-core not installed")
    lives = {"sim:///a": Live(domains={"web-01": _dom("web-01", {"role": "web"}),
                                       "db": _dom("db", {"role": "db"})})}
    doc = inventory(lives, None, {"sim:///a": {"web-01": (Address("10.0.0.7", "lease"),)}})
    # The format is a script inventory's (what `ansible-inventory --list` prints): an
    # executable that prints it, read by Ansible's `script` plugin.
    (tmp_path / "inv.json").write_text(json.dumps(doc))
    script = tmp_path / "inventory.sh"
    script.write_text(f"#!/bin/sh\nexec cat {tmp_path / 'inv.json'}\n")
    script.chmod(0o755)
    done = subprocess.run([tool, "-i", str(script), "--list"], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path),
                               "ANSIBLE_HOME": str(tmp_path),
                               "ANSIBLE_INVENTORY_ENABLED": "script"})
    assert done.returncode == 0, done.stderr
    read = json.loads(done.stdout)
    assert read["_meta"]["hostvars"]["web-01"]["ansible_host"] == "10.0.0.7"
    assert read["role_web"]["hosts"] == ["web-01"]
    assert sorted(read["host_sim_a"]["hosts"]) == ["db", "web-01"]


def test_a_set_with_a_network_is_refused_where_files_load_one_by_one() -> None:
    """The watcher loads each file alone (load_text without `sets`): a set's DHCP entries
    belong in a network another file declares, so it says so instead of dropping them."""
    from virtctl.reconciler.load.load import load_text

    text = (DATA / "specs" / "web.yaml").read_text()
    with pytest.raises(SpecErrors, match="network: needs all spec files loaded together"):
        load_text(text, source="web.yaml")
    mon = text.split("---\n", 1)[1]  # no network: fine alone
    assert [s.name for s in load_text(mon, source="mon.yaml")] == ["mon", "mon", "mon"]


def test_labels_survive_the_spec_cache(tmp_path: Path) -> None:
    """A cached spec must come back equal (labels a tuple, not a JSON list): otherwise
    every run after the first would redefine it to 'record the spec's labels'."""
    from virtctl.reconciler.speccache import SpecCache

    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "d.yaml").write_text("kind: Domain\nname: d\ntype: kvm\nmemory: 32MiB\n"
                                   "labels: {role: web, team: a}\n")
    first = load_specs([str(folder)], cache=SpecCache(tmp_path / "cache"))
    again = load_specs([str(folder)], cache=SpecCache(tmp_path / "cache"))
    assert again.domains["d"].labels == (("role", "web"), ("team", "a"))
    assert again.domains["d"] == first.domains["d"]
    assert again.domains["d"].digest == first.domains["d"].digest
