"""Host locks through etcd (--coordination, docs/fleet.md), against a real 3-member etcd
cluster on loopback (etcdcluster.py) and real `virtctl apply` processes:

- two runs with separate local lock directories on one libvirt host (qemu:///system)
  serialise through etcd: their defines never interleave;
- a holder killed with SIGKILL frees the host within the lease TTL, and the waiter named
  it while it waited;
- a run that loses its lease mid-run (quorum lost: 2 of 3 members killed) stops before
  its next action and reports what ran;
- with one member killed, or one stopped with SIGSTOP, locks still work.

Progress is read from the host (the sim's event log, libvirt's events) and from etcd;
waits are for conditions, each bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, purge_libvirt, require_connection
from tests.integration.etcdcluster import EtcdCluster
from virtctl.coord.backend import EtcdLocks
from virtctl.coord.etcd import Credentials, EtcdClient
from virtctl.drivers import connect

REPO = Path(__file__).resolve().parents[2]
HOST = "sim:///lab"


def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def env_for(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTCTL_CONNECT", "LIBVIRT_DEFAULT_URI", "VIRTCTL_COORDINATION",
                        "VIRTCTL_ETCD_USER", "VIRTCTL_ETCD_PASSWORD", "VIRTCTL_LOCK_DIR")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0",
               VIRTCTL_SIM_FSYNC="0", **extra)
    return env


def start(state: Path, *args: str, err: Path | None = None,
          **extra: str) -> subprocess.Popen[str]:
    """`virtctl ARGS` in the background (stderr to `err`, if given, to be read while it
    runs)."""
    stderr = subprocess.PIPE if err is None else err.open("w")
    try:
        return subprocess.Popen([sys.executable, "-m", "virtctl", *args],
                                env=env_for(state, **extra), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    finally:
        if err is not None:
            stderr.close()  # type: ignore[union-attr]


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"virtctl did not finish in {timeout:g} s:\n{out}\n{err}")
    return proc.returncode, out, err


def sim_specs(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vms.yaml").write_text("".join(
        f"---\nkind: Domain\nname: {name}\ntype: kvm\nmemory: 64MiB\nstate: shutoff\n"
        "os: {type: hvm}\n" for name in names))
    return folder


def stall(state: Path, name: str, seconds: float, **more: float) -> None:
    """The sim's define of domain `name` (and of each in `more`) sleeps that many seconds
    first (sim.py, faults.json; replaces the faults set before)."""
    folder = state / "sim" / HOST.rsplit("/", 1)[1]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faults.json").write_text(json.dumps([
        {"op": "define", "kind": "domain", "name": each, "action": "stall",
         "seconds": wait} for each, wait in {name: seconds, **more}.items()]))


def defined(state: Path) -> list[str]:
    """Domains the sim defined, in order (its event log)."""
    log = state / "sim" / HOST.rsplit("/", 1)[1] / "events.log"
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [doc["name"] for doc in map(json.loads, lines)
            if doc["kind"] == "domain" and doc["type"] == "defined"]


def lock_keys(client: EtcdClient) -> list[str]:
    return [kv.key for kv in client.range("/virtctl/locks/").kvs]


def test_a_holder_killed_with_sigkill_frees_the_host_within_the_ttl(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    state = tmp_path / "state"
    client = etcd_cluster.client()
    # The holder never finishes by itself; the waiter holds the lock long enough to be
    # seen with it (both set now: the holder reads them once it has the lock).
    stall(state, "d0", 120, e0=2)
    ttl = 6
    holder = start(state, "apply", "-c", HOST, "-f", str(sim_specs(tmp_path / "a", ["d0"])),
                   "--coordination", etcd_cluster.url, "--lease-ttl", str(ttl))
    waiter = None
    try:
        until(lambda: lock_keys(client), 60, "the holder's lock in etcd")
        (key,) = lock_keys(client)
        assert key.startswith("/virtctl/locks/sim-lab-")
        # The waiter shares the holder's state directory, so it first waits on the local
        # lock (an flock, dropped by the kernel at the kill), then on etcd's.
        waiter = start(state, "apply", "-c", HOST, "-f",
                       str(sim_specs(tmp_path / "b", ["e0"])), "--coordination",
                       etcd_cluster.url, "--lock-timeout", "60", err=tmp_path / "waiter.err")
        until(lambda: "waiting for the lock" in (tmp_path / "waiter.err").read_text(), 60,
              "the waiter to wait")
        holder.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        holder.wait(timeout=30)
        # The moment the waiter holds the lock (its pid in the key), as etcd shows it.
        taker = waiter
        until(lambda: any(json.loads(kv.value).get("pid") == taker.pid
                          for kv in client.range("/virtctl/locks/").kvs)
              or taker.poll() is not None, 60, "the waiter to take the lock")
        freed = time.monotonic() - killed
        code, out, _ = finish(waiter)
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    err = (tmp_path / "waiter.err").read_text()
    assert code == 0, out + err
    # It waited for the dead holder's etcd lock, naming it as today's lock does...
    assert f"waiting for the lock on {HOST} held by pid {holder.pid} on " in err, err
    assert "(virtctl apply, since " in err
    # ...and got the host within the TTL (plus etcd's once-a-half-second expiry check).
    assert freed <= ttl + 2, freed
    assert "e0" in defined(state) and lock_keys(client) == []


def test_a_run_that_loses_its_lease_stops_before_the_next_action(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    state = tmp_path / "state"
    names = ["d0", "d1", "d2", "d3"]
    stall(state, "d1", 9)  # longer than the TTL: the lease ends while d1 is defined
    proc = start(state, "apply", "-c", HOST, "-f", str(sim_specs(tmp_path / "s", names)),
                 "--coordination", etcd_cluster.url, "--lease-ttl", "3")
    until(lambda: "d0" in defined(state), 60, "the first define")
    etcd_cluster.kill(1)
    etcd_cluster.kill(2)  # no quorum: the lease cannot be renewed
    code, out, err = finish(proc)
    assert code == 1, out + err
    # d1 was in flight when the lease ended (the documented window); nothing after it ran.
    assert defined(state) == ["d0", "d1"]
    assert f"Stopped: lost the lock on {HOST}" in out, out
    for name in ("d2", "d3"):
        assert f"skipped define domain/{name}: not run: lost the lock on {HOST}" in out, out
    assert "Applied: 2 done, 0 failed, 2 skipped." in out
    assert f"error: lost the lock on {HOST}: " in err and "the rest was not run" in err


def test_locks_work_with_one_member_killed_or_stopped(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    state = tmp_path / "state"
    client = etcd_cluster.client()
    for step, fault in enumerate(("kill", "pause")):
        getattr(etcd_cluster, fault)(0)  # the first endpoint every run tries first
        stall(state, f"d{step}", 2)
        proc = start(state, "apply", "-c", HOST, "-f",
                     str(sim_specs(tmp_path / f"s{step}", [f"d{step}"])),
                     "--coordination", etcd_cluster.url)
        seen: list[str] = []
        until(lambda: seen.extend(lock_keys(client)) or seen or proc.poll() is not None,
              60, "the run's lock in etcd")
        code, out, err = finish(proc)
        assert code == 0, out + err
        assert seen and seen[0].startswith("/virtctl/locks/sim-lab-")  # held while it ran
        assert lock_keys(client) == []  # and released at the end
        assert f"d{step}" in defined(state)
        if fault == "pause":
            etcd_cluster.resume(0)
        else:
            etcd_cluster.restart(0)


@pytest.fixture
def prefix() -> Iterator[str]:
    require_connection("qemu:///system")
    prefix = f"{PREFIX}{secrets.token_hex(3)}-"
    yield prefix
    purge_libvirt("qemu:///system", prefix=prefix)


def test_two_runners_with_their_own_lock_dirs_serialise_through_etcd(
        etcd_cluster: EtcdCluster, tmp_path: Path, prefix: str) -> None:
    """Two `virtctl apply` processes on qemu:///system, as two CI runners would: each has
    its own lock directory, so only etcd can keep them apart. While the test holds the
    host's etcd lock both wait; released, one runs, then the other: libvirt's own
    event stream shows their defines never interleave."""
    uri = "qemu:///system"
    count = 8
    runners = {}
    for runner in ("a", "b"):
        folder = tmp_path / f"specs-{runner}"
        folder.mkdir()
        (folder / "vms.yaml").write_text("".join(
            f"---\nkind: Domain\nname: {prefix}{runner}{i}\ntype: qemu\nmemory: 32MiB\n"
            "state: shutoff\nos: {type: hvm, arch: x86_64, machine: pc}\n"
            for i in range(count)))
        runners[runner] = folder
    events = subprocess.Popen(["virsh", "-c", uri, "event", "--loop", "--event", "lifecycle",
                               "--timestamp"], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.DEVNULL)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(events.stdout.readline, "")),
                              daemon=True)  # type: ignore[union-attr]
    reader.start()
    procs = {}
    try:
        # The listener is registered once it reports a define of the test's own (it
        # registers some time after it starts: define again until one is reported).
        def heard_marker() -> bool:
            marker = f"{prefix}marker{secrets.token_hex(2)}"
            subprocess.run(["virsh", "-c", uri, "define", "/dev/stdin"], check=True,
                           capture_output=True, text=True, input=(
                               f"<domain type='qemu'><name>{marker}</name><memory unit='MiB'>"
                               "32</memory><os><type arch='x86_64' machine='pc'>hvm</type>"
                               "</os></domain>"))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if any(f"'{marker}'" in line for line in lines):
                    return True
                time.sleep(0.05)
            return False

        until(heard_marker, 60, "virsh event to report a define")
        client = etcd_cluster.client()
        with connect(uri) as driver, EtcdLocks(client).hold(driver, command="virtctl apply"):
            for runner, folder in runners.items():
                procs[runner] = start(
                    tmp_path / f"state-{runner}", "apply", "-c", uri, "-f", str(folder),
                    "--coordination", etcd_cluster.url, err=tmp_path / f"{runner}.err",
                    VIRTCTL_LOCK_DIR=str(tmp_path / f"locks-{runner}"))
            # Both wait for the test's lock (each says so at once), and define nothing.

            def both_wait() -> bool:
                for runner, proc in procs.items():
                    if proc.poll() is not None:
                        pytest.fail(f"{runner} ran while the lock was held: "
                                    f"{proc.communicate()}")
                return all("waiting for the lock on qemu:///system held by pid "
                           f"{os.getpid()} on " in (tmp_path / f"{r}.err").read_text()
                           for r in procs)

            until(both_wait, 90, "both runners waiting for the lock")
            assert not [line for line in lines if f"'{prefix}a" in line or f"'{prefix}b" in line]
        results = {r: finish(p) for r, p in procs.items()}
        for runner, (code, out, err) in results.items():
            assert code == 0, (runner, out, err)
        until(lambda: sum(f"'{prefix}" in line and "Defined" in line for line in lines)
              >= 2 * count + 1, 30, "every define's event")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        events.kill()
        events.wait(timeout=30)
    order = [line.split(f"'{prefix}", 1)[1][0] for line in lines
             if "Defined" in line and f"'{prefix}" in line and "marker" not in line]
    assert sorted(order) == ["a"] * count + ["b"] * count
    switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
    assert switches == 1, order  # all of one runner's defines, then all of the other's



def enable_auth(cluster: EtcdCluster, user: str, password: str) -> None:
    admin = cluster.client()
    admin.call("/v3/auth/user/add", {"name": "root", "password": password + "-root"})
    admin.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    admin.call("/v3/auth/role/add", {"name": "virtctl"})
    admin.call("/v3/auth/role/grant", {"name": "virtctl", "perm": {
        "permType": "READWRITE", "key": "L3ZpcnRjdGwv", "range_end": "L3ZpcnRjdGww"}})
    admin.call("/v3/auth/user/add", {"name": user, "password": password})
    admin.call("/v3/auth/user/grant", {"user": user, "role": "virtctl"})
    admin.call("/v3/auth/enable", {})


def test_credentials_never_show(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    """etcd auth from a password file or the environment: the runs work, and the
    password is in no output, error, or command line (/proc/PID/cmdline, what ps shows)."""
    password = "pw-" + secrets.token_hex(8)
    enable_auth(etcd_cluster, "ci", password)
    state = tmp_path / "state"
    secret = tmp_path / "etcd-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    user_url = etcd_cluster.url.replace("etcd://", "etcd://ci@")
    stall(state, "d0", 3)
    proc = start(state, "apply", "-c", HOST, "-f", str(sim_specs(tmp_path / "a", ["d0"])),
                 "--coordination", user_url, "--etcd-password-file", str(secret))
    client = etcd_cluster.client(credentials=Credentials("ci", password))
    until(lambda: lock_keys(client) or proc.poll() is not None, 60, "the run's lock")
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    code, out, err = finish(proc)
    assert code == 0, out + err
    assert lock_keys(client) == [] and "d0" in defined(state)
    assert b"--etcd-password-file" in cmdline and password.encode() not in cmdline
    outputs = [out, err]
    # From the environment, JSON output.
    proc = start(state, "apply", "-c", HOST, "-f", str(sim_specs(tmp_path / "b", ["d1"])),
                 "-o", "json", VIRTCTL_COORDINATION=etcd_cluster.url, VIRTCTL_ETCD_USER="ci",
                 VIRTCTL_ETCD_PASSWORD=password)
    code, out, err = finish(proc)
    assert code == 0, out + err
    outputs += [out, err]
    # Refusals: a wrong password, no credentials, a password in the URL.
    wrong = start(state, "apply", "-c", HOST, "-f", str(tmp_path / "a"), "--coordination",
                  user_url, VIRTCTL_ETCD_PASSWORD=password + "-wrong")
    code, out, err = finish(wrong)
    assert code == 1 and "etcd refused user 'ci'" in err, out + err
    outputs += [out, err]
    anonymous = start(state, "apply", "-c", HOST, "-f", str(tmp_path / "a"),
                      "--coordination", etcd_cluster.url)
    code, out, err = finish(anonymous)
    assert code == 1 and "etcd refused" in err, out + err
    outputs += [out, err]
    in_url = start(state, "apply", "-c", HOST, "-f", str(tmp_path / "a"), "--coordination",
                   etcd_cluster.url.replace("etcd://", f"etcd://ci:{password}@"))
    code, out, err = finish(in_url)
    assert code == 1 and "holds a password" in err, out + err
    outputs += [out, err]
    # A watcher's log (JSON lines) with a wrong password: it says so, never the password.
    log = tmp_path / "watch.log"
    watch = start(state, "watch", "-c", HOST, "-f", str(tmp_path / "a"), "--coordination",
                  user_url, "--log-format", "json", err=log,
                  VIRTCTL_ETCD_PASSWORD=password + "-wrong")
    until(lambda: "lock-unavailable" in log.read_text(), 60, "the watcher's lock error")
    watch.send_signal(signal.SIGTERM)
    code, out, _ = finish(watch, timeout=60)
    assert code == 0 and "etcd refused user 'ci'" in log.read_text()
    outputs += [out, log.read_text()]
    for text in outputs:
        assert password not in text


def test_watch_takes_the_etcd_lock_for_each_pass(etcd_cluster: EtcdCluster,
                                                 tmp_path: Path) -> None:
    """`virtctl watch --coordination`: a pass waits for the host's etcd lock (logging
    who holds it) and acts only once it has it; SIGTERM while waiting stops it."""
    from virtctl.drivers.sim.driver import SimDriver
    from virtctl.uri import parse_uri

    state = tmp_path / "state"
    client = etcd_cluster.client()
    sim = SimDriver(parse_uri(HOST), env={"VIRTCTL_STATE_DIR": str(state)})
    log = tmp_path / "watch.log"
    with EtcdLocks(client).hold(sim, command="virtctl apply"):
        watch = start(state, "watch", "-c", HOST, "-f",
                      str(sim_specs(tmp_path / "w", ["w0"])), "--coordination",
                      etcd_cluster.url, err=log)
        until(lambda: f"held by pid {os.getpid()} on " in log.read_text(), 60,
              "the watcher to wait for the lock")
        assert defined(state) == [] and watch.poll() is None
    until(lambda: "w0" in defined(state), 60, "the watcher's define once the lock is free")
    watch.send_signal(signal.SIGTERM)
    code, _, _ = finish(watch, timeout=60)
    assert code == 0, log.read_text()
    assert lock_keys(client) == []
    # Stopped while waiting: SIGTERM ends the wait.
    (tmp_path / "w" / "vms.yaml").write_text(
        "kind: Domain\nname: w1\ntype: kvm\nmemory: 64MiB\nstate: shutoff\nos: {type: hvm}\n")
    log2 = tmp_path / "watch2.log"
    with EtcdLocks(client).hold(sim, command="virtctl apply"):
        watch = start(state, "watch", "-c", HOST, "-f", str(tmp_path / "w"),
                      "--coordination", etcd_cluster.url, err=log2)
        until(lambda: "waiting for the lock" in log2.read_text(), 60, "the second wait")
        watch.send_signal(signal.SIGTERM)
        code, _, _ = finish(watch, timeout=30)
        assert code == 0, log2.read_text()
        assert "w1" not in defined(state)


class _SameHost:
    """A connection that reports a given host UUID (two URIs of one machine)."""

    def __init__(self, uri: str, uuid: str) -> None:
        self.uri = uri
        self._uuid = uuid

    def capabilities(self) -> str:
        return f"<capabilities><host><uuid>{self._uuid}</uuid></host></capabilities>"


def test_two_uris_of_one_host_are_one_lock(etcd_cluster: EtcdCluster) -> None:
    """Keyed by identity: another process (another EtcdLocks) holding the host through
    one URI keeps a run out through another; within one run the second URI shares it."""
    from virtctl.coord.hostlock import LockTimeout

    uuid = "4c4c4544-0042-3510-8057-b4c04f4e3132"
    ssh = _SameHost("qemu+ssh://root@web1/system", uuid)
    tls = _SameHost("qemu+tls://web1.example.com/system", uuid)
    other = _SameHost("qemu+tls://web2.example.com/system", uuid[:-1] + "3")
    ours, theirs = EtcdLocks(etcd_cluster.client()), EtcdLocks(etcd_cluster.client())
    heard: list[str] = []
    with ours.hold(ssh, command="virtctl apply") as held:
        with pytest.raises(LockTimeout, match="qemu\\+tls://web1.example.com/system"):
            with theirs.hold(tls, timeout=1.5, on_wait=heard.append):
                pytest.fail("one host, two URIs: the lock is held")
        assert heard and heard[0].startswith(
            "waiting for the lock on qemu+tls://web1.example.com/system held by pid "
            f"{os.getpid()} on ")
        with theirs.hold(other, timeout=5):
            pass  # another host: free
        with ours.hold(tls, timeout=1.5) as shared:  # the same run: shared, no wait
            shared.check()
        held.check()  # still held after the shared use ended
        assert [kv.key for kv in etcd_cluster.client().range("/virtctl/locks/").kvs] == [
            f"/virtctl/locks/{uuid}"]
    with theirs.hold(tls, timeout=5):
        pass  # released


def test_two_uris_of_one_libvirt_daemon_are_one_identity(
        daemons: list) -> None:  # type: ignore[type-arg]
    """Real libvirt: one daemon reached as qemu+tcp://127.0.0.1:PORT/system and through
    its unix socket (qemu+unix:///system?socket=...) is one identity, hence one lock;
    another daemon (its own guests, in its own mount namespace) is another host."""
    from virtctl.coord.hostid import host_identity

    daemon = daemons[0]
    unix = f"qemu+unix:///system?socket={daemon.root / 'sock' / 'libvirt-sock'}"
    with connect(daemon.uri) as tcp, connect(unix) as local, \
            connect(daemons[1].uri) as second:
        a, b, c = host_identity(tcp), host_identity(local), host_identity(second)
    assert a == b and a.how == "uuid", (a, b)
    assert c != a


def test_tls_etcd(tmp_path: Path) -> None:
    """etcd+https with client certificates: a run holds its lock over TLS; without the
    client certificate, or trusting another CA, it is refused and applies nothing."""
    from tests.integration.etcdcluster import make_tls, require_etcd

    require_etcd()
    files = make_tls(tmp_path / "tls")
    cluster = EtcdCluster(tmp_path / "etcd", tls=files)
    try:
        cluster.start()
        client = cluster.client()
        state = tmp_path / "state"
        stall(state, "t0", 2)
        tls = ["--etcd-ca", str(files.ca), "--etcd-cert", str(files.client_cert),
               "--etcd-key", str(files.client_key)]
        proc = start(state, "apply", "-c", HOST, "-f", str(sim_specs(tmp_path / "a", ["t0"])),
                     "--coordination", cluster.url, *tls)
        seen: list[str] = []
        until(lambda: seen.extend(lock_keys(client)) or seen or proc.poll() is not None, 60,
              "the lock over TLS")
        code, out, err = finish(proc)
        assert code == 0 and seen and "t0" in defined(state), out + err
        # No client certificate: etcd refuses the handshake; another CA: virtctl does.
        other = make_tls(tmp_path / "other")
        for argv, words in (
                (["--etcd-ca", str(files.ca)], "no etcd endpoint answered"),
                (["--etcd-ca", str(other.ca), "--etcd-cert", str(files.client_cert),
                  "--etcd-key", str(files.client_key)], "CERTIFICATE_VERIFY_FAILED")):
            proc = start(state, "apply", "-c", HOST, "-f",
                         str(sim_specs(tmp_path / "b", ["t1"])), "--coordination",
                         cluster.url, *argv)
            code, out, err = finish(proc)
            assert code == 1 and words in err, out + err
            assert "t1" not in defined(state)
    finally:
        cluster.stop()


def test_locks_under_one_shared_lease(etcd_cluster: EtcdCluster) -> None:
    """A member's own lease for all its locks: released by deleting the key (the lease
    lives on), and every lock goes when the lease ends."""
    from virtctl.coord.hostlock import LockTimeout

    client = etcd_cluster.client()
    keeper = client.keeper(client.lease_grant(3))
    member = EtcdLocks(client, keeper=keeper)
    other = EtcdLocks(etcd_cluster.client())
    web1 = _SameHost("qemu+ssh://web1/system", "4c4c4544-0042-3510-8057-b4c04f4e3132")
    web2 = _SameHost("qemu+ssh://web2/system", "4c4c4544-0042-3510-8057-b4c04f4e3133")
    with member.hold(web1) as held:
        held.check()
        kv = client.get("/virtctl/locks/" + web1._uuid)
        assert kv is not None and kv.lease == keeper.lease.id
        with pytest.raises(LockTimeout):
            with other.hold(web1, timeout=1):
                pass
    assert keeper.alive and lock_keys(client) == []  # the key went, the lease stays
    with other.hold(web1, timeout=5):
        pass
    # The member dies holding web2 (its keeper stops, nothing revoked): freed within TTL.
    with member.hold(web2):
        keeper.stop(revoke=False)
        began = time.monotonic()
        with other.hold(web2, timeout=15):
            assert time.monotonic() - began <= 3 + 3


def test_a_watcher_without_quorum_takes_no_action_and_resumes(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    """Quorum lost during a watcher's pass: the pass stops before its next action
    (`lock-lost`), later passes do nothing without a lock (`lock-unavailable`), and once
    quorum returns the watcher finishes the job."""
    state = tmp_path / "state"
    stall(state, "d1", 9)  # longer than the TTL: the lease ends while d1 is defined
    log = tmp_path / "watch.log"
    watch = start(state, "watch", "-c", HOST, "-f",
                  str(sim_specs(tmp_path / "s", ["d0", "d1", "d2", "d3"])), "--coordination",
                  etcd_cluster.url, "--lease-ttl", "3", "--log-format", "json", err=log)
    try:
        until(lambda: "d0" in defined(state), 60, "the first define")
        etcd_cluster.kill(1)
        etcd_cluster.kill(2)
        until(lambda: "lock-lost" in log.read_text(), 60, "lock-lost in the log")
        until(lambda: "lock-unavailable" in log.read_text(), 60, "a pass without a lock")
        assert defined(state) == ["d0", "d1"]  # d1 was in flight; nothing after it ran
        etcd_cluster.restart(1)
        etcd_cluster.restart(2)
        until(lambda: {"d2", "d3"} <= set(defined(state)), 120, "the watcher to resume")
        watch.send_signal(signal.SIGTERM)
        code, _, _ = finish(watch, timeout=60)
        assert code == 0, log.read_text()
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate(timeout=30)
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    lost = [e for e in events if e.get("event") == "lock-lost"]
    assert lost and "lost the lock on sim:///lab" in lost[0]["msg"], lost
