"""virtctl.coord without etcd: host identity (one lock per host, not per URI string),
the --coordination URL and its credentials (never shown), the lock holder's text, and
the applier's guard (a lost lock stops the run before its next action)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from virtctl import api
from virtctl.coord.backend import LockLost, describe
from virtctl.coord.config import CoordinationError, parse_coordination
from virtctl.coord.etcd import Credentials, KeyValue, prefix_end
from virtctl.coord.hostid import host_identity, identify
from virtctl.drivers.sim.driver import SimDriver
from virtctl.cli.options import coordination, coordination_options
from virtctl.reconciler.apply.apply import Outcome
from virtctl.render.report import report_json, report_text
from virtctl.uri import parse_uri

UUID = "4c4c4544-0042-3510-8057-b4c04f4e3132"


def caps(uuid: str) -> str:
    return f"<capabilities><host><uuid>{uuid}</uuid><cpu/></host></capabilities>"


def test_two_spellings_of_one_host_are_one_identity() -> None:
    ssh = identify("qemu+ssh://root@web1/system", caps(UUID.upper()))
    tls = identify("qemu+tls://web1.example.com/system", caps(UUID))
    assert ssh == tls and ssh.key == UUID and ssh.how == "uuid"
    other = identify("qemu+tls://web2.example.com/system",
                     caps("4c4c4544-0042-3510-8057-b4c04f4e3133"))
    assert other != ssh


@pytest.mark.parametrize("uuid", ["00000000-0000-0000-0000-000000000000",
                                  "ffffffff-ffff-ffff-ffff-ffffffffffff",
                                  "03000200-0400-0500-0006-000700080009", "not-a-uuid", ""])
def test_a_placeholder_uuid_falls_back_to_host_name_and_driver(uuid: str) -> None:
    found = identify("qemu+ssh://root@Web1/system", caps(uuid))
    assert found.how == "name" and found.key == "name-web1-qemu"
    assert identify("xen+ssh://web1/system", caps(uuid)).key == "name-web1-xen"
    local = identify("qemu:///system", caps(uuid), local_name="hv7.example")
    assert local.key == "name-hv7.example-qemu"
    # Whatever a host name holds, the key is one safe etcd path segment.
    odd = identify("qemu+ssh://[fe80::1]/system", caps(uuid))
    assert "/" not in odd.key and odd.key.startswith("name-")


def test_sim_hosts_are_their_state_directories() -> None:
    asked: list[int] = []

    def never() -> str:
        asked.append(1)
        return caps(UUID)

    one = identify("sim:///lab", never, state_dir="/a/sim/lab")
    assert one == identify("sim:///lab", never, state_dir="/a/sim/lab")
    assert one != identify("sim:///lab", never, state_dir="/b/sim/lab")
    assert one != identify("sim:///lab2", never, state_dir="/a/sim/lab2")
    assert one.key.startswith("sim-lab-") and asked == []  # every sim has one caps uuid
    # The same path on another machine is another sim.
    assert one != identify("sim:///lab", never, state_dir="/a/sim/lab", local_name="other")


def test_identity_is_cached_per_connection(tmp_path: Path) -> None:
    driver = SimDriver(parse_uri("sim:///cached"), env={"VIRTCTL_STATE_DIR": str(tmp_path)})
    calls: list[int] = []

    class Counting:
        uri = "qemu+ssh://web1/system"

        def capabilities(self) -> str:
            calls.append(1)
            return caps(UUID)

    counting = Counting()
    assert host_identity(counting).key == UUID
    assert host_identity(counting).key == UUID
    assert calls == [1]
    assert host_identity(driver).key.startswith("sim-cached-")


def test_coordination_url() -> None:
    found = parse_coordination("etcd://h1:2379,h2,[::1]:3379", env={})
    assert found.endpoints == ("h1:2379", "h2:2379", "[::1]:3379") and not found.tls
    assert found.credentials is None and found.lease_ttl == 15
    tls = parse_coordination("etcd+https://h1:2379", env={}, ca="/ca.pem",
                             cert="/c.pem", key="/k.pem")
    assert tls.tls and tls.url == "etcd+https://h1:2379"
    for bad, words in [("http://h1:2379", "etcd://"), ("etcd://", "no etcd endpoint"),
                       ("etcd://h1:99999", "not an etcd endpoint"),
                       ("etcd://h1:2379/path", "endpoints only")]:
        with pytest.raises(CoordinationError, match=words):
            parse_coordination(bad, env={})
    with pytest.raises(CoordinationError, match="need etcd\\+https"):
        parse_coordination("etcd://h1", env={}, ca="/ca.pem")


def test_a_password_never_comes_from_the_command_line_nor_shows(tmp_path: Path) -> None:
    with pytest.raises(CoordinationError) as refused:
        parse_coordination("etcd://alice:hunter2-s3cret@h1:2379", env={})
    assert "hunter2" not in str(refused.value) and "--etcd-password-file" in str(refused.value)
    secret = tmp_path / "pw"
    secret.write_text("hunter2-s3cret\n")
    found = parse_coordination("etcd://alice@h1:2379", env={}, password_file=str(secret))
    assert found.credentials == Credentials("alice", "hunter2-s3cret")
    assert "hunter2" not in repr(found) and "hunter2" not in repr(found.credentials)
    assert "hunter2" not in found.url and "hunter2" not in repr(found.client())
    by_env = parse_coordination("etcd://h1", env={"VIRTCTL_ETCD_USER": "bob",
                                                  "VIRTCTL_ETCD_PASSWORD": "pw-from-env"})
    assert by_env.credentials == Credentials("bob", "pw-from-env")
    with pytest.raises(CoordinationError, match="needs a password"):
        parse_coordination("etcd://alice@h1", env={})
    with pytest.raises(CoordinationError, match="needs a user"):
        parse_coordination("etcd://h1", env={"VIRTCTL_ETCD_PASSWORD": "pw-from-env"})
    with pytest.raises(CoordinationError, match="empty"):
        (tmp_path / "empty").write_text("")
        parse_coordination("etcd://alice@h1", env={}, password_file=str(tmp_path / "empty"))


def test_options_and_environment() -> None:
    parser = argparse.ArgumentParser()
    coordination_options(parser)
    assert coordination(parser.parse_args([]), {}) is None
    found = coordination(parser.parse_args(["--lease-ttl", "5"]),
                         {"VIRTCTL_COORDINATION": "etcd://h1:1"})
    assert found is not None and found.endpoints == ("h1:1",) and found.lease_ttl == 5
    with pytest.raises(CoordinationError, match="--etcd-ca needs --coordination"):
        coordination(parser.parse_args(["--etcd-ca", "/x"]), {})
    with pytest.raises(CoordinationError, match="at least 2"):
        coordination(parser.parse_args(["--coordination", "etcd://h", "--lease-ttl", "1"]), {})


def test_holder_text_is_escaped_and_cut() -> None:
    value = ('{"pid": 42, "machine": "ci-7", "command": "virtctl apply\\u001b[2J' + "x" * 100
             + '", "since": 0}').encode()
    text = describe(KeyValue("/virtctl/locks/x", value, 1, 1, 1))
    assert text.startswith("pid 42 on ci-7 (virtctl apply\\x1b[2J") and "..." in text
    assert "\x1b" not in text
    assert describe(KeyValue("k", b"garbage", 1, 1, 1)) == "another virtctl run"


def test_prefix_end() -> None:
    assert prefix_end("/a/") == b"/a0" and prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_a_lost_lock_stops_the_run_before_its_next_action(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIRTCTL_CACHE", "0")
    specs = "".join(f"---\nkind: Domain\nname: d{i}\ntype: kvm\nmemory: 64MiB\n"
                    "state: shutoff\nos: {type: hvm}\n" for i in range(4))
    desired = api.load(["-"], stdin=io.StringIO(specs), use_cache=False)
    checks: list[int] = []

    def guard() -> None:
        checks.append(1)
        if len(checks) > 2:
            raise LockLost("lost the lock on sim:///g: etcd did not renew the lease")

    with api.connect("sim:///g") as driver:
        planned = api.plan(desired, driver)
        report = api.apply(planned, driver, guard=guard)
        names = sorted(driver.snapshot().domains)
    assert len(checks) == 3  # before each action until it failed, never after
    assert [r.outcome for r in report.results] == [Outcome.DONE, Outcome.DONE,
                                                   Outcome.SKIPPED, Outcome.SKIPPED]
    assert names == ["d0", "d1"]
    assert report.return_code == 1 and report.lost_lock.startswith("lost the lock")
    text = report_text(report)
    assert "Stopped: lost the lock on sim:///g" in text
    assert "skipped define domain/d2: not run: lost the lock on sim:///g" in text
    assert report_json(report)["stopped"].startswith("lost the lock")
