"""A private libvirtd that listens on TCP 127.0.0.1 only, for remote-transport tests.

Used by the contract suite and the libvirt integration tests to reach a real daemon
through `qemu+tcp://127.0.0.1:PORT/system`. Debian 12 ships only the monolithic libvirtd
(9.0), whose stateful drivers lock their state directories, so a second daemon beside
the host's cannot share them: it runs in a private mount namespace (`unshare --mount`,
propagation private) with fresh, empty /run/libvirt, /var/lib/libvirt and /etc/libvirt
bind-mounted from a temp dir. It therefore sees none of the host daemon's guests or
networks and the host daemon sees none of its. The QEMU capabilities cache
(/var/cache/libvirt) stays shared: both daemons run the same binaries, so it is only read.

Its config file is the test's own: TCP on 127.0.0.1:PORT without auth, no TLS, its own
unix socket dir and pid file. Without systemd socket activation, libvirtd 9.0 opens the
TCP listener only when started with `--listen`; `--timeout` makes a forgotten daemon exit
by itself once idle. Needs root (mount namespaces, qemu:///system).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_PRIVATE_DIRS = {"run": "/run/libvirt", "lib": "/var/lib/libvirt", "etc": "/etc/libvirt"}
IDLE_TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(root: Path, port: int) -> str:
    return "\n".join(
        [
            "listen_tls = 0",
            "listen_tcp = 1",
            f'tcp_port = "{port}"',
            'listen_addr = "127.0.0.1"',
            'auth_tcp = "none"',
            f'unix_sock_dir = "{root / "sock"}"',
            f'log_outputs = "3:file:{root / "libvirtd.log"}"',
            "",
        ]
    )


def _launcher(root: Path) -> str:
    mounts = [f"mount --bind {root / src} {dst}" for src, dst in _PRIVATE_DIRS.items()]
    daemon = (
        f"exec libvirtd --listen --timeout {IDLE_TIMEOUT_S} "
        f"--config {root / 'libvirtd.conf'} --pid-file {root / 'libvirtd.pid'}"
    )
    return "set -e\n" + "\n".join(mounts) + "\n" + daemon + "\n"


@dataclass
class RemoteLibvirtd:
    """One private daemon; `start()` it, use `uri`, `stop()` it."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    def prepare(self) -> None:
        for sub in (*_PRIVATE_DIRS, "sock"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # The QEMU driver would log guest consoles through the host's virtlogd socket,
        # which the private /run/libvirt hides; plain files suffice for tests.
        (self.root / "etc" / "qemu.conf").write_text('stdio_handler = "file"\n')
        (self.root / "libvirtd.conf").write_text(_config(self.root, self.port))
        (self.root / "start.sh").write_text(_launcher(self.root))

    def start(self, *, timeout: float = 90.0) -> None:
        self.prepare()
        stderr = open(self.root / "stderr.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", str(self.root / "start.sh")],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
        stderr.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"private libvirtd exited early:\n{self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"private libvirtd did not answer in {timeout}s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        result = subprocess.run(
            ["virsh", "-c", self.uri, "version"],
            capture_output=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """SIGTERM the daemon (the exec'd child of unshare, same pid) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for name in ("stderr.log", "libvirtd.log"):
            path = self.root / name
            if path.exists():
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts)

    def describe(self) -> str:
        return f"libvirtd on {self.uri} ({shlex.quote(str(self.root))})"


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP listener on `port` (from /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(_decode_address(address))
    return found


def _decode_address(hex_address: str) -> str:
    if len(hex_address) == 8:
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_address)[::-1])
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, 32, 8)]
    return socket.inet_ntop(socket.AF_INET6, b"".join(words))
