"""Watcher benchmark: spec-save-to-applied latency, and the idle cost of watching.

Runs the real `virtctl watch` in a subprocess against a fresh `sim` state directory.
Targets (issue 6): from a spec file saved to the change applied on sim, median under
300 ms; a watcher over 1,000 domains idles under 2% of one core and 150 MB.

1. Latency: N domains (default 20); edit one spec file ~20 times (save by rename, as
   editors do) and time each save until the new definition is in the sim's record.
   The same measurement is then repeated on the 1,000-domain watcher.
2. Idle: the watcher over 1,000 domains, after its first reconcile, left alone for
   20 s; CPU time from /proc/PID/stat, resident memory from /proc/PID/status.

    python bench/bench_watch.py
    python bench/bench_watch.py --domains 1000 --edits 20 --idle-seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOMAIN_XML = (
    "<domain type='kvm'><name>{name}</name><memory unit='MiB'>{memory}</memory>"
    "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><metadata>"
    "<virtctl:runtime xmlns:virtctl='https://virtctl.dev/xmlns/1' state='running'/>"
    "</metadata></domain>\n"
)


def _command() -> list[str]:
    """`virtctl watch` through the CLI once it knows the verb, else the package entry."""
    sys.path.insert(0, str(REPO))
    import contextlib
    import io

    from virtctl.cli.commands import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["watch", "-f", "x"])
    except SystemExit:
        return [sys.executable, "-m", "virtctl.watch"]
    return [sys.executable, "-m", "virtctl", "watch"]


class Watch:
    def __init__(self, root: Path, domains: int) -> None:
        self.root = root
        self.specs = root / "specs"
        self.specs.mkdir(parents=True)
        for i in range(domains):
            self.save(f"dom{i:04d}", 64)
        self.env = dict(os.environ, VIRTCTL_STATE_DIR=str(root / "state"),
                        PYTHONPATH=str(REPO), VIRTCTL_SIM_FSYNC="0")
        self.env.pop("VIRTCTL_CONNECT", None)
        self.env.pop("LIBVIRT_DEFAULT_URI", None)
        self.log_path = root / "watch.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [*_command(), "-f", "specs", "--log-format", "json"],
            cwd=root, env=self.env, stdout=subprocess.DEVNULL, stderr=self._log,
        )

    def save(self, name: str, memory: int) -> None:
        tmp = self.specs / f".{name}.xml.tmp"
        tmp.write_text(DOMAIN_XML.format(name=name, memory=memory))
        os.replace(tmp, self.specs / f"{name}.xml")

    def rounds(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") == "reconciled":
                out.append(record)
        return out

    def wait_rounds(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.rounds()) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"watcher did not reconcile in {timeout}s; see {self.log_path}")
            time.sleep(0.05)

    def memory_kib(self, name: str) -> int | None:
        path = self.root / "state" / "sim" / "default" / "domains" / f"{name}.json"
        try:
            xml = json.loads(path.read_bytes())["xml"]
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return int(xml.split("<memory", 1)[1].split(">", 1)[1].split("<", 1)[0])

    def close(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self._log.close()
        return code


def latency(watch: Watch, edits: int) -> list[float]:
    """Seconds from each save to the new memory size being in the sim's record."""
    samples = []
    for i in range(edits):
        memory = 100 + i
        before = len(watch.rounds())
        started = time.perf_counter()
        watch.save("dom0000", memory)
        while watch.memory_kib("dom0000") != memory * 1024:
            if time.perf_counter() - started > 10:
                raise SystemExit(f"edit {i} not applied within 10 s")
            time.sleep(0.002)
        samples.append(time.perf_counter() - started)
        watch.wait_rounds(before + 1, timeout=30)  # let the round finish before the next edit
        time.sleep(0.05)
    return samples


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def idle(watch: Watch, seconds: float) -> tuple[float, float, float]:
    """(share of one core, RSS MB, peak RSS MB) over `seconds` of leaving it alone."""
    pid = watch.proc.pid
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = _cpu_seconds(pid), time.monotonic()
    rss = _status_kib(pid, "VmRSS") / 1024
    peak = _status_kib(pid, "VmHWM") / 1024
    return (cpu1 - cpu0) / (t1 - t0), rss, peak


def _summary(label: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return (f"{label}: median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, "
            f"max {ms[-1]:.0f} ms over {len(ms)} edits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-domains", type=int, default=20)
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="virtctl-bench-watch-") as tmp:
        small = Watch(Path(tmp) / "small", args.latency_domains)
        small.wait_rounds(1, timeout=60)
        print(_summary(f"save -> applied, {args.latency_domains} domains",
                       latency(small, args.edits)), flush=True)
        print(f"  watcher exit status on SIGTERM: {small.close()}")

        started = time.monotonic()
        big = Watch(Path(tmp) / "big", args.domains)
        big.wait_rounds(1, timeout=600)
        print(f"first reconcile of {args.domains} domains: "
              f"{time.monotonic() - started:.1f} s (including interpreter start)", flush=True)
        time.sleep(2.0)  # let the echo of its own 2,000 actions drain
        share, rss, peak = idle(big, args.idle_seconds)
        print(f"idle over {args.domains} domains for {args.idle_seconds:g} s: "
              f"{share * 100:.2f}% of one core, RSS {rss:.0f} MB (peak {peak:.0f} MB)",
              flush=True)
        print(_summary(f"save -> applied, {args.domains} domains",
                       latency(big, args.edits)))
        print(f"  watcher exit status on SIGTERM: {big.close()}")


if __name__ == "__main__":
    main()
