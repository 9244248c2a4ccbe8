"""`virtctl` end to end on the sim driver: in-process through main(), and as a real process."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from virtctl.cli.commands import main
from virtctl.model import Kind

YAML_SPEC = """\
kind: Network
name: lan
active: true
forward: {mode: nat}
ips:
  - {address: 10.20.0.1, netmask: 255.255.255.0}
---
kind: Domain
name: web
type: kvm
memory: 256MiB
vcpus: 1
autostart: true
os: {type: hvm}
interfaces:
  - type: network
    source: {network: lan}
"""


@pytest.fixture
def lab(specs: Path, kit: SimpleNamespace) -> Path:
    kit.write(specs, "net.yaml", YAML_SPEC)
    kit.write(specs, "db.xml", kit.domain_xml("db", nets=("lan",), state="shutoff"))
    return specs


def state_files(state_dir: Path) -> dict[str, float]:
    """Every file in the sim state directory with its mtime (ns), but the locks: the sim's,
    which every connection touches, and the per-host locks of virtctl runs (locks/)."""
    return {str(p.relative_to(state_dir)): p.stat().st_mtime_ns
            for p in state_dir.rglob("*")
            if p.is_file() and p.name != "lock" and p.parent.name != "locks"}


def test_apply_then_reapply_makes_no_mutating_call(cli, lab: Path, state_dir: Path,
                                                   driver_calls: list[str]) -> None:
    first = cli("apply", "-f", str(lab))
    assert first.code == 0, first.err
    assert "Plan: 3 to create" in first.out and "0 failed, 0 skipped" in first.out
    assert driver_calls, "the first apply should have changed the host"
    driver_calls.clear()
    files = state_files(state_dir)
    events = (state_dir / "sim" / "default" / "events.log").read_bytes()
    again = cli("apply", "-f", str(lab))
    assert again.code == 0, again.err
    assert again.out == "No changes: the host matches the specs.\n"
    assert driver_calls == []
    assert state_files(state_dir) == files
    assert (state_dir / "sim" / "default" / "events.log").read_bytes() == events


def test_apply_reaches_the_declared_state(cli, lab: Path) -> None:
    assert cli("apply", "-f", str(lab)).code == 0
    doms = {d["name"]: d for d in cli("get", "domains", "-o", "json").json()}
    assert (doms["web"]["state"], doms["web"]["autostart"]) == ("running", True)
    assert doms["db"]["state"] == "shutoff"
    assert all(d["managed"] for d in doms.values())
    (lan,) = cli("get", "networks", "-o", "json").json()
    assert (lan["name"], lan["state"], lan["managed"]) == ("lan", "active", True)


def test_apply_says_each_action_as_it_starts_when_not_on_a_terminal(cli, lab: Path) -> None:
    first = cli("apply", "-f", str(lab))
    assert first.code == 0, first.err
    lines = first.err.splitlines()
    total = len(lines)
    assert f"Applied: {total} done, 0 failed" in first.out  # one line per action
    assert lines[0].startswith(f"virtctl: [1/{total}] define ")
    assert lines[-1].startswith(f"virtctl: [{total}/{total}] ")
    assert all(line.startswith("virtctl: [") for line in lines)
    assert cli("apply", "-f", str(lab)).err == ""  # nothing to do: nothing said


def test_diff_exit_codes(cli, lab: Path, kit: SimpleNamespace) -> None:
    pending = cli("diff", "-f", str(lab))
    assert pending.code == 2 and "+ domain/web" in pending.out
    assert cli("apply", "-f", str(lab)).code == 0
    in_sync = cli("diff", "-f", str(lab))
    assert in_sync.code == 0 and "No changes" in in_sync.out
    kit.write(lab, "db.xml", kit.domain_xml("db", nets=("lan",), state="shutoff",
                                            memory_mib=512))
    changed = cli("diff", "-f", str(lab))
    assert changed.code == 2
    assert "~ domain/db" in changed.out and "memory: 262144 KiB -> 524288 KiB" in changed.out
    kit.write(lab, "broken.xml", "<domain>")
    assert cli("diff", "-f", str(lab)).code == 1


def test_dry_run_exits_like_diff_and_changes_nothing(cli, lab: Path, state_dir: Path,
                                                     kit: SimpleNamespace,
                                                     driver_calls: list[str]) -> None:
    dry = cli("apply", "--dry-run", "-f", str(lab))
    assert dry.code == 2 and "Plan: 3 to create" in dry.out
    assert driver_calls == []
    assert kit.records(state_dir) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert cli("apply", "-f", str(lab)).code == 0
    assert cli("apply", "--dry-run", "-f", str(lab)).code == 0


def test_json_output_is_one_document(cli, lab: Path) -> None:
    for argv in (("diff", "-o", "json"), ("apply", "-o", "json"), ("apply", "-o", "json"),
                 ("apply", "--dry-run", "-o", "json")):
        result = cli(*argv, "-f", str(lab))
        doc = json.loads(result.out)  # raises if there is anything but one document
        assert doc["apiVersion"] == "virtctl/v1"
    applied = json.loads(cli("apply", "-o", "json", "-f", str(lab)).out)
    assert applied["inSync"] is True and applied["remaining"] == []


def test_json_errors_are_one_document_too(cli, specs: Path, kit: SimpleNamespace) -> None:
    kit.write(specs, "bad.xml", "<domain><name>x</name>")
    result = cli("apply", "-o", "json", "-f", str(specs))
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["kind"] == "Error" and doc["errors"][0]["source"]["file"].endswith("bad.xml")


def test_get_formats(cli, lab: Path) -> None:
    assert cli("apply", "-f", str(lab)).code == 0
    table = cli("get", "domains")
    header, *lines = table.out.splitlines()
    assert header.split() == ["NAME", "ID", "STATE", "AUTOSTART", "MANAGED", "PENDING"]
    assert [line.split()[0] for line in lines] == ["db", "web"]
    assert [line.split()[-1] for line in lines] == ["-", "-"]  # nothing restart-pending
    as_json = cli("get", "domains", "-o", "json").json()
    assert {"name", "uuid", "state", "autostart", "managed", "pending"} <= set(as_json[0])
    as_yaml = yaml.safe_load(cli("get", "domains", "-o", "yaml").out)
    assert as_yaml == as_json
    nets = cli("get", "networks", "-o", "yaml")
    assert yaml.safe_load(nets.out)[0]["state"] == "active"


def test_get_on_an_empty_host(cli) -> None:
    assert cli("get", "domains", "-o", "json").json() == []
    assert cli("get", "networks").out.split() == [
        "NAME", "STATE", "AUTOSTART", "MANAGED", "PENDING"]


def test_delete_removes_managed_objects_only(cli, lab: Path, sim, kit: SimpleNamespace) -> None:
    sim().define(Kind.DOMAIN, kit.domain_xml("theirs"))
    assert cli("apply", "-f", str(lab)).code == 0
    kit.write(lab, "theirs.xml", kit.domain_xml("theirs"))
    result = cli("delete", "-f", str(lab))
    assert result.code == 0, result.err
    assert "domain/theirs is not managed by virtctl; left alone" in result.out
    assert [d["name"] for d in cli("get", "domains", "-o", "json").json()] == ["theirs"]
    assert cli("get", "networks", "-o", "json").json() == []
    assert cli("delete", "-f", str(lab)).code == 0  # nothing left to delete is not an error


def test_delete_dry_run_changes_nothing(cli, lab: Path) -> None:
    assert cli("apply", "-f", str(lab)).code == 0
    dry = cli("delete", "--dry-run", "-f", str(lab))
    assert dry.code == 2 and "- domain/web" in dry.out
    assert len(cli("get", "domains", "-o", "json").json()) == 2


def test_validate(cli, lab: Path, kit: SimpleNamespace) -> None:
    ok = cli("validate", "-f", str(lab))
    assert ok.code == 0 and "2 domain(s) and 1 network(s) are valid" in ok.out
    kit.write(lab, "alien.xml", kit.domain_xml("alien", dom_type="lxc"))
    assert cli("validate", "--offline", "-f", str(lab)).code == 0
    online = cli("validate", "-f", str(lab))
    assert online.code == 1 and "alien.xml" in online.err and "lxc" in online.err


def test_capabilities(cli) -> None:
    result = cli("capabilities")
    assert result.code == 0 and result.out.startswith("<capabilities>")
    assert "<domain type='xen'/>" in result.out and "<domain type='kvm'/>" in result.out


def test_stdin_spec(cli, kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(kit.domain_xml("piped")))
    assert cli("apply", "-f", "-").code == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(YAML_SPEC))
    assert cli("apply", "-f", "-").code == 0
    names = {d["name"] for d in cli("get", "domains", "-o", "json").json()}
    assert names == {"piped", "web"}


def test_directories_are_walked_recursively_sorted_skipping_hidden(
        cli, specs: Path, kit: SimpleNamespace) -> None:
    kit.write(specs, "b/deep/z.xml", "<domain>")  # broken on purpose: reveals the order
    kit.write(specs, "a.xml", "<network>")
    kit.write(specs, "b/c.xml", kit.domain_xml("c"))
    kit.write(specs, ".hidden/broken.xml", "<domain>")
    kit.write(specs, ".broken.xml", "<domain>")
    kit.write(specs, "notes.txt", "not a spec")
    result = cli("validate", "--offline", "-f", str(specs))
    assert result.code == 1
    named = [line.split(":")[1].strip() for line in result.err.splitlines()]
    assert named == [str(specs / "a.xml"), str(specs / "b/deep/z.xml")]
    (specs / "a.xml").unlink()
    (specs / "b/deep/z.xml").unlink()
    ok = cli("validate", "--offline", "-f", str(specs))
    assert ok.code == 0 and "1 domain(s)" in ok.out


def test_repeated_f_combines_files(cli, specs: Path, kit: SimpleNamespace) -> None:
    a = kit.write(specs, "x/a.xml", kit.domain_xml("a"))
    b = kit.write(specs, "y/b.xml", kit.domain_xml("b"))
    assert cli("apply", "-f", str(a), "-f", str(b)).code == 0
    assert len(cli("get", "domains", "-o", "json").json()) == 2


@pytest.mark.parametrize(("flag", "env", "host"), [
    pytest.param(["-c", "sim:///flag"], {"VIRTCTL_CONNECT": "sim:///env",
                                         "LIBVIRT_DEFAULT_URI": "sim:///libvirt"}, "flag",
                 id="short-flag-wins"),
    pytest.param(["--connect", "sim:///flag"], {"VIRTCTL_CONNECT": "sim:///env"}, "flag",
                 id="long-flag-wins"),
    pytest.param([], {"VIRTCTL_CONNECT": "sim:///env",
                      "LIBVIRT_DEFAULT_URI": "sim:///libvirt"}, "env", id="VIRTCTL_CONNECT"),
    pytest.param([], {"LIBVIRT_DEFAULT_URI": "sim:///libvirt"}, "libvirt",
                 id="LIBVIRT_DEFAULT_URI"),
    pytest.param([], {}, "default", id="default"),
])
def test_connection_precedence(cli, specs: Path, kit: SimpleNamespace, state_dir: Path,
                               monkeypatch: pytest.MonkeyPatch, flag: list[str],
                               env: dict[str, str], host: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    kit.write(specs, "a.xml", kit.domain_xml("a"))
    assert cli("apply", *flag, "-f", str(specs)).code == 0
    hosts = sorted(p.name for p in (state_dir / "sim").iterdir())
    assert hosts == [host]
    assert kit.records(state_dir, host)["domains"] == ["a.json"]


def test_connect_flag_before_the_verb(cli, specs: Path, kit: SimpleNamespace,
                                      state_dir: Path) -> None:
    kit.write(specs, "a.xml", kit.domain_xml("a"))
    assert cli("-c", "sim:///early", "apply", "-f", str(specs)).code == 0
    assert kit.records(state_dir, "early")["domains"] == ["a.json"]


def test_invalid_uri_is_an_error(cli, specs: Path, kit: SimpleNamespace) -> None:
    kit.write(specs, "a.xml", kit.domain_xml("a"))
    result = cli("apply", "-c", "not a uri", "-f", str(specs))
    assert result.code == 1 and "invalid connection URI" in result.err


def test_prune(cli, lab: Path, sim, kit: SimpleNamespace) -> None:
    sim().define(Kind.DOMAIN, kit.domain_xml("theirs"))
    assert cli("apply", "-f", str(lab)).code == 0
    (lab / "db.xml").unlink()
    without = cli("apply", "-f", str(lab))
    assert without.code == 0 and "No changes" in without.out
    pruned = cli("apply", "--prune", "-f", str(lab))
    assert pruned.code == 0, pruned.err
    assert "- domain/db" in pruned.out
    assert [d["name"] for d in cli("get", "domains", "-o", "json").json()] == ["theirs", "web"]
    assert cli("diff", "--prune", "-f", str(lab)).code == 0


def test_adopt(cli, lab: Path, sim, kit: SimpleNamespace, state_dir: Path) -> None:
    sim().define(Kind.DOMAIN, kit.domain_xml("db", nets=()))
    before = state_files(state_dir)
    refused = cli("apply", "-f", str(lab))
    assert refused.code == 1
    assert "domain/db exists on the host but is not managed" in refused.err
    assert "--adopt" in refused.err and "db.xml" in refused.err
    assert state_files(state_dir) == before  # nothing applied, not even the other specs
    adopted = cli("apply", "--adopt", "-f", str(lab))
    assert adopted.code == 0, adopted.err
    doms = {d["name"]: d for d in cli("get", "domains", "-o", "json").json()}
    assert doms["db"]["managed"] and doms["web"]["managed"]
    assert cli("diff", "-f", str(lab)).code == 0  # adopted objects are now in sync


def test_real_process_apply_reapply_and_get(state_dir: Path, lab: Path,
                                            kit: SimpleNamespace) -> None:
    env = {"VIRTCTL_STATE_DIR": str(state_dir), "VIRTCTL_SIM_FSYNC": "0"}
    first = kit.run_virtctl("apply", "-f", str(lab), env=env)
    assert first.returncode == 0, first.stderr
    assert "Plan: 3 to create" in first.stdout
    second = kit.run_virtctl("apply", "-f", str(lab), env=env)
    assert second.returncode == 0 and "No changes" in second.stdout
    got = kit.run_virtctl("get", "domains", "-o", "json", env=env)
    assert sorted(d["name"] for d in json.loads(got.stdout)) == ["db", "web"]
    bad = kit.run_virtctl("apply", "-f", "-", env=env, stdin="<domain>")
    assert bad.returncode == 1 and "<stdin>" in bad.stderr


def test_plans_do_not_depend_on_hash_seed(state_dir: Path, lab: Path,
                                          kit: SimpleNamespace) -> None:
    outputs = {
        kit.run_virtctl("diff", "-o", "json", "-f", str(lab),
                        env={"VIRTCTL_STATE_DIR": str(state_dir), "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_progress_is_not_shown_when_piped(cli, lab: Path) -> None:
    result = cli("apply", "-f", str(lab))
    assert "\r" not in result.err and "\033" not in result.out + result.err


def test_progress_is_shown_on_a_terminal(lab: Path, state_dir: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out, err = io.StringIO(), Terminal()
    assert main(["apply", "-f", str(lab)], out=out, err=err) == 0
    shown = err.getvalue()
    assert "\r" in shown
    counters = [part.split("]")[0] for part in shown.split("[")[1:]]
    done, whole = counters[-1].split("/")
    assert done == whole and int(whole) >= 3  # ends on N/N for the N actions applied
    assert "\033" not in out.getvalue()  # the plan itself stays plain


def test_environment_is_isolated(state_dir: Path) -> None:
    # Guard for this suite itself: nothing from the developer's shell picks the host.
    assert os.environ["VIRTCTL_STATE_DIR"] == str(state_dir)
    assert "VIRTCTL_CONNECT" not in os.environ and "LIBVIRT_DEFAULT_URI" not in os.environ


def test_shipped_examples_apply_and_converge(cli, kit: SimpleNamespace,
                                             driver_calls: list[str]) -> None:
    examples = str(kit.REPO / "specs" / "examples")
    first = cli("apply", "-f", examples)
    assert first.code == 0, first.out + first.err
    driver_calls.clear()
    again = cli("apply", "-f", examples)
    assert again.code == 0 and "No changes" in again.out, again.out
    assert driver_calls == []
