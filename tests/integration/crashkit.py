"""Helpers of the crash-consistency tests (test_crash_consistency.py): a fleet of ~100
specs, an `apply` killed with SIGKILL once it has made K changes, and the checks run
after each kill.

A kill point is a count of changes the run has made, read from the host while it runs
(the sim's event log, or libvirt's listing); the test kills as soon as it sees the count
reached, so the exact point varies by a few changes from run to run, which only spreads
the points further.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fleet_yaml(prefix: str, *, networks: int, domains: int, memory: str = "64MiB",
               running: int | None = None, octet: int = 10) -> str:
    """`networks` isolated networks and `domains` guests, each on one of the networks;
    the first `running` guests run (all by default), the others are only defined."""
    running = domains if running is None else running
    docs = [
        f"---\nkind: Network\nname: {prefix}n{n:02d}\n"
        f"ips: [{{address: 10.{octet}.{n}.1, prefix: 24}}]\n"
        for n in range(networks)
    ]
    docs += [
        f"---\nkind: Domain\nname: {prefix}d{d:02d}\ntype: qemu\nmemory: {memory}\n"
        f"state: {'running' if d < running else 'shutoff'}\n"
        "os: {type: hvm, arch: x86_64, machine: pc}\n"
        f"interfaces: [{{type: network, source: {{network: {prefix}n{d % networks:02d}}}}}]\n"
        for d in range(domains)
    ]
    return "".join(docs)


def virtctl_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0")
    return env


def virtctl(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virtctl", *args], capture_output=True,
                          text=True, env=virtctl_env(state), timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


@dataclass
class Tally:
    """Per scenario: tries, kills that landed mid-run, failures (with what failed)."""

    tries: int = 0
    killed: int = 0
    failures: list[str] = field(default_factory=list)

    def row(self, name: str) -> str:
        return f"| {name} | {self.tries} | {self.killed} | {len(self.failures)} |"


def apply_killed_after(state: Path, argv: list[str], progress: Callable[[], int],
                       changes: int, *, deadline: float = 600) -> bool:
    """Run `virtctl ARGV` and SIGKILL it once `progress()` has grown by `changes`; True
    when it was killed before finishing by itself."""
    start = progress()
    return apply_killed_when(state, argv, lambda: progress() - start >= changes,
                             deadline=deadline)


def sim_events(state: Path, host: str = "default") -> Callable[[], int]:
    log = state / "sim" / host / "events.log"

    def count() -> int:
        try:
            with open(log, "rb") as handle:
                return sum(1 for _ in handle)
        except FileNotFoundError:
            return 0

    return count


def sim_store_problems(state: Path, host: str = "default") -> list[str]:
    """What is wrong with a sim store on disk: a record that does not parse, or an index
    entry that is not a plain name. Leftover `.tmp` files of a killed write are allowed
    (readers skip them) and counted by `leftovers`."""
    root = state / "sim" / host
    problems = []
    for path in root.rglob("*.json"):
        if path.name.startswith(".tmp-"):
            continue
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{path.relative_to(root)}: {exc}")
    for path in (root / "index").rglob("*"):
        if path.is_file() and not path.name.endswith(".tmp"):
            text = path.read_text()
            if not text or "\n" in text:
                problems.append(f"{path.relative_to(root)}: index entry {text!r}")
    return problems


def leftovers(state: Path, host: str = "default") -> int:
    return sum(1 for _ in (state / "sim" / host).rglob(".tmp-*"))


def apply_killed_when(state: Path, argv: list[str], reached: Callable[[], bool], *,
                      deadline: float = 300, module: str = "virtctl",
                      env: dict[str, str] | None = None) -> bool:
    """Run `virtctl ARGV` (`python -m MODULE ARGV`, with `env` added: heldrun.py holds
    a call open) and SIGKILL it as soon as `reached()` (read from the host and virtctl's
    state while it runs); True when it was killed before finishing."""
    proc = subprocess.Popen([sys.executable, "-m", module, *argv],
                            env=virtctl_env(state) | (env or {}),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    end = time.monotonic() + deadline
    try:
        while proc.poll() is None and time.monotonic() < end:
            if reached():
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                return proc.returncode == -signal.SIGKILL
            time.sleep(0.002)  # polling the host's state, not a wait for time to pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    return False
