"""A private 3-member etcd cluster on loopback, for the fleet tests (docs/fleet.md).

    cluster = EtcdCluster(tmp_path / "etcd")
    cluster.start()                  # 3 members, their own free ports and data dirs
    client = cluster.client()        # a virtctl.coord.etcd.EtcdClient on every member
    cluster.url                      # "etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
    cluster.kill(1); cluster.restart(1); cluster.pause(2); cluster.resume(2)
    cluster.stop()                   # every member, whatever state it is in

Or as the pytest fixture `etcd_cluster` (tests/integration/conftest.py), stopped at the
end of the test. Debian's `etcd-server` provides /usr/bin/etcd (ci/install-etcd.sh);
without it a test skips, and fails with CI set. Members log to DIR/memberN.log; their
election timing is etcd's default (100 ms heartbeats, 1 s elections).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.libvirtd_tcp import free_port
from virtctl.coord.etcd import EtcdClient

START_TIMEOUT = 60.0  # seconds for a cluster to elect a leader on a slow, busy box


@dataclass(frozen=True)
class TlsFiles:
    """A private CA, the members' certificate (IP 127.0.0.1) and a client's."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(folder: Path) -> TlsFiles:
    """A CA and two certificates signed by it, made with the openssl command (EC keys:
    quick to make)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=virtctl test CA")
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        (folder / f"{name}.ext").write_text(
            f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=virtctl-{name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
            f"{name}.ext")
    return TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                    folder / "client.pem", folder / "client.key")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, however it dies (a
    killed pytest never leaves a cluster running)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def etcd_binary() -> str | None:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK)
                                     else None)
    return found


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class EtcdCluster:
    root: Path
    size: int = 3
    members: list[Member] = field(default_factory=list)
    extra: tuple[str, ...] = ()  # more etcd flags for every member
    tls: TlsFiles | None = None  # https for clients, client certificates required

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        used: set[int] = set()

        def port() -> int:
            while True:
                found = free_port()
                if found not in used:
                    used.add(found)
                    return found

        for i in range(self.size):
            self.members.append(Member(f"m{i}", port(), port(), self.root / f"m{i}.data",
                                       self.root / f"m{i}.log"))

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        return ("etcd+https://" if self.tls else "etcd://") + ",".join(self.endpoints)

    def client_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return context

    def client(self, **kwargs: object) -> EtcdClient:
        if self.tls is not None:
            kwargs.setdefault("tls", self.client_context())
        return EtcdClient(self.endpoints, **kwargs)  # type: ignore[arg-type]

    def start(self) -> None:
        for i in range(self.size):
            self._launch(i, state="new")
        self.wait_healthy()

    def _launch(self, i: int, *, state: str) -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd is not installed (bash ci/install-etcd.sh)")
        member = self.members[i]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        scheme = "https" if self.tls else "http"
        tls = [] if self.tls is None else [
            "--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
            "--client-cert-auth", "--trusted-ca-file", str(self.tls.ca)]
        argv = [
            binary, "--name", member.name, "--data-dir", str(member.data),
            "--listen-client-urls", f"{scheme}://{member.endpoint}",
            "--advertise-client-urls", f"{scheme}://{member.endpoint}", *tls,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", f"virtctl-test-{os.getpid()}-{id(self)}",
            *self.extra,
        ]
        with member.log.open("ab") as log:
            member.process = subprocess.Popen(argv, stdout=log, stderr=log,
                                              stdin=subprocess.DEVNULL,
                                              start_new_session=True,
                                              preexec_fn=_die_with_parent)
        member.paused = False

    def healthy(self, i: int) -> bool:
        """Whether member `i` answers /health with a leader in its cluster."""
        member = self.members[i]
        if not member.running() or member.paused:
            return False
        scheme = "https" if self.tls else "http"
        try:
            with urllib.request.urlopen(f"{scheme}://{member.endpoint}/health", timeout=2,
                                        context=self.client_context()) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, members: list[int] | None = None,
                     timeout: float = START_TIMEOUT) -> None:
        wanted = list(range(self.size)) if members is None else members
        deadline = time.monotonic() + timeout
        while True:
            for i in wanted:
                member = self.members[i]
                if member.process is not None and member.process.poll() is not None:
                    raise RuntimeError(f"etcd member {member.name} exited "
                                       f"({member.process.returncode}):\n{self.log_tail(i)}")
            if all(self.healthy(i) for i in wanted):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd members {wanted} not healthy after {timeout:g} s:\n"
                                   + "\n".join(self.log_tail(i) for i in wanted))
            time.sleep(0.1)

    def log_tail(self, i: int, lines: int = 15) -> str:
        try:
            text = self.members[i].log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, i: int) -> None:
        """SIGKILL member `i` (its data stays: `restart(i)` brings it back)."""
        member = self.members[i]
        if member.process is not None and member.process.poll() is None:
            if member.paused:
                os.kill(member.process.pid, signal.SIGCONT)
            member.process.kill()
            member.process.wait(timeout=30)
        member.paused = False

    def stop_member(self, i: int) -> None:
        """SIGTERM member `i` and wait for it to exit."""
        member = self.members[i]
        if member.process is not None and member.process.poll() is None:
            if member.paused:
                os.kill(member.process.pid, signal.SIGCONT)
            member.process.terminate()
            try:
                member.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait(timeout=30)
        member.paused = False

    def pause(self, i: int) -> None:
        """SIGSTOP member `i`: its connections stay open and nothing answers."""
        member = self.members[i]
        assert member.process is not None and member.running()
        os.kill(member.process.pid, signal.SIGSTOP)
        member.paused = True

    def resume(self, i: int) -> None:
        member = self.members[i]
        assert member.process is not None
        os.kill(member.process.pid, signal.SIGCONT)
        member.paused = False

    def restart(self, i: int, *, wait: bool = True) -> None:
        """Start member `i` again on its data directory (after kill or stop_member)."""
        self.kill(i)
        self._launch(i, state="existing")
        if wait:
            self.wait_healthy([i])

    def stop(self) -> None:
        for i in range(self.size):
            try:
                self.kill(i)
            except (OSError, subprocess.TimeoutExpired):
                pass


def require_etcd() -> str:
    """The etcd binary; skips without one, fails with CI set (CI installs it)."""
    import pytest

    binary = etcd_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("etcd is missing: CI must install Debian's etcd-server "
                        "(bash ci/install-etcd.sh)")
        pytest.skip("etcd is not installed (bash ci/install-etcd.sh)")
    return binary
