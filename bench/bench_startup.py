"""Start-up benchmark (issue 23): what a one-shot `virtctl` command costs as a whole
process, interpreter start and imports included.

(a) qemu:///system: N (default 200) shut-off guests (type qemu, 64 MiB, no disk), named
    with a unique vctl-test-startup-XXXXXX- prefix, defined by `virtctl apply`. Then,
    taking turns, each timed --repeat times as a fresh process:
    - virtctl    `virtctl apply -f SPECS` on the unchanged host (plans nothing): the
                 no-op fast path (cli/noop.py) answers from the record of the run before;
    - full path  the same with VIRTCTL_FASTPATH=0: the whole load, memo and plan;
    - reads      bench/noop_reads.py: a minimal libvirt-python script making the reads
                 virtctl's no-op makes, one call at a time;
    - reads x4   the same, the domains read in four slices at once, as virtctl reads a
                 host this size (libvirt_driver.READERS);
    - python     `python -c pass`: the interpreter alone.
    The guests are undefined again at the end (only those with this run's prefix).
(b) `python -X importtime` of `virtctl --help`, `virtctl get domains` and the no-op
    apply of (a) (on the sim when --no-qemu): the import time in all and the biggest
    top-level imports.
(c) the sim: a no-op re-apply of --sim-n (default 1,000) domains and N/10 networks
    (bench_core's YAML specs), a whole process, --repeat times.

Targets (issue 23): (a) virtctl within 1.5x `reads`; (c) at most 0.4 s. Byte-compiled
modules are written and reused, as installed (PYTHONDONTWRITEBYTECODE is dropped).
Needs root and a running libvirtd for (a). Usage:
    python bench/bench_startup.py [-n 200] [--sim-n 1000] [--repeat 10] [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_core import write_specs  # noqa: E402 (bench/ is the script's folder)

URI = "qemu:///system"


def guest_xml(name: str) -> str:
    return (
        f"<domain type='qemu'><name>{name}</name>"
        "<metadata><virtctl:runtime xmlns:virtctl='https://virtctl.dev/xmlns/1' "
        "state='shutoff'/></metadata>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>\n"
    )


def environment(tmp: Path, uri: str) -> dict[str, str]:
    # A lock folder of its own: on a shared host, other virtctl runs hold the
    # machine-wide qemu:///system lock, and waiting for it is not start-up time.
    locks = tmp / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    # VIRTCTL_FASTPATH_DEBUG: a replay says so on stderr, so misses are counted apart.
    env = dict(os.environ, VIRTCTL_STATE_DIR=str(tmp / "state"),
               VIRTCTL_CACHE_DIR=str(tmp / "cache"), VIRTCTL_CONNECT=uri,
               VIRTCTL_LOCK_DIR=str(locks), PYTHONPATH=str(ROOT), VIRTCTL_FASTPATH_DEBUG="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode written, reused
    return env


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


REPLAYED = "virtctl-debug: no-op fast path"
replays: dict[str, list[bool]] = {}


def run(argv: Sequence[str], env: dict[str, str], label: str = "") -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one process. The CPU time is what the
    process itself spent, whatever else the machine was doing: it moves far less than
    the wall time on a busy machine (libvirtd's share of a call is not in it)."""
    began, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    replays.setdefault(label, []).append(REPLAYED in proc.stderr)
    return wall, _children_cpu() - cpu


def virtctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "virtctl", *args]


Times = dict[str, list[tuple[float, float]]]


FULL = "full path"  # virtctl without the no-op fast path (VIRTCTL_FASTPATH=0)


def taking_turns(bodies: dict[str, list[str]], env: dict[str, str], repeat: int) -> Times:
    times: Times = {label: [] for label in bodies}
    for _ in range(repeat):
        for label, argv in bodies.items():
            times[label].append(run(argv, dict(env, VIRTCTL_FASTPATH="0") if label == FULL
                                    else env, label))
    return times


def show(times: Times, ratios: Sequence[tuple[str, str]]) -> None:
    print(f"  {'':<10} {'wall best':>10} {'median':>8} {'cpu best':>9} {'median':>8}  (ms)")
    for label, found in times.items():
        wall, cpu = [w for w, _ in found], [c for _, c in found]
        print(f"  {label:<10} {min(wall) * 1000:10.0f} {statistics.median(wall) * 1000:8.0f} "
              f"{min(cpu) * 1000:9.0f} {statistics.median(cpu) * 1000:8.0f}")
    print(f"  load average now: {os.getloadavg()[0]:.1f}")
    if "virtctl" in times:
        hit = replays.get("virtctl", [])[-len(times["virtctl"]):]
        fast = [t for t, h in zip(times["virtctl"], hit, strict=True) if h]
        print(f"  virtctl replayed {sum(hit)} of {len(hit)} runs (a miss: the host or a "
              "file changed, e.g. another session's guest)")
        if fast:
            print(f"  virtctl replays only: wall best {min(w for w, _ in fast) * 1000:.0f}, "
                  f"median {statistics.median(w for w, _ in fast) * 1000:.0f}; cpu best "
                  f"{min(c for _, c in fast) * 1000:.0f} ms")
    for top, bottom in ratios:
        for what, index in (("wall", 0), ("cpu", 1)):
            a = [t[index] for t in times[top]]
            b = [t[index] for t in times[bottom]]
            print(f"  {top} / {bottom} ({what}): {min(a) / min(b):.2f}x (best), "
                  f"{statistics.median(a) / statistics.median(b):.2f}x (median)")


def importtime(label: str, argv: list[str], env: dict[str, str], *, top: int = 8) -> None:
    """The import time in all (the sum of every module's own time) and the packages that
    cost most (their modules' own times summed)."""
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    rows = [(int(own), name) for own, name in re.findall(
        r"^import time:\s+(\d+) \|\s+\d+ \| *(\S+)$", proc.stderr, re.MULTILINE)]
    packages: dict[str, int] = {}
    for own, name in rows:
        packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0) + own
    biggest = sorted(((us, name) for name, us in packages.items()), reverse=True)[:top]
    print(f"  {label:<12} {len(rows):3d} modules, {sum(us for us, _ in rows) / 1000:4.0f} ms; "
          + ", ".join(f"{name} {us / 1000:.0f}" for us, name in biggest))


def bench_qemu(n: int, repeat: int) -> None:
    import libvirt

    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    prefix = f"vctl-test-startup-{secrets.token_hex(3)}-"
    conn = libvirt.open(URI)
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            specs = tmp / "specs"
            specs.mkdir()
            for i in range(n):
                (specs / f"{i:04d}.xml").write_text(guest_xml(f"{prefix}{i:04d}"))
            env = environment(tmp, URI)
            run(virtctl("apply", "-f", str(specs)), env)  # defines them
            run(virtctl("apply", "-f", str(specs)), env)  # the first no-op records it
            reads = [sys.executable, str(HERE / "noop_reads.py"), URI]
            times = taking_turns({
                "virtctl": virtctl("apply", "-f", str(specs)),
                FULL: virtctl("apply", "-f", str(specs)),
                "reads": reads, "reads x4": [*reads, "4"],
                "python": [sys.executable, "-c", "pass"]}, env, repeat)
            print(f"# (a) no-op re-apply of {n} shut-off guests on {URI}, whole processes, "
                  f"{repeat} runs each")
            show(times, (("virtctl", "reads"), ("virtctl", "reads x4"), (FULL, "reads")))
            print("# (b) python -X importtime")
            importtime("--help", virtctl("--help"), env)
            importtime("get domains", virtctl("get", "domains"), env)
            run(virtctl("apply", "-f", str(specs)), env)  # (records again after any churn)
            importtime("no-op apply", virtctl("apply", "-f", str(specs)), env)
    finally:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        conn.close()


def bench_sim(n: int, repeat: int, *, imports: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        specs = tmp / "specs"
        write_specs(specs, n, "yaml")
        env = environment(tmp, "sim:///startup")
        run(virtctl("apply", "-f", str(specs)), env)
        run(virtctl("apply", "-f", str(specs)), env)
        times = taking_turns({"virtctl": virtctl("apply", "-f", str(specs)),
                              FULL: virtctl("apply", "-f", str(specs)),
                              "python": [sys.executable, "-c", "pass"]}, env, repeat)
        print(f"# (c) no-op re-apply of {n} domains and {max(1, n // 10)} networks on the "
              f"sim, whole process, {repeat} runs")
        show(times, ())
        if imports:
            print("# (b) python -X importtime (sim)")
            importtime("--help", virtctl("--help"), env)
            importtime("get domains", virtctl("get", "domains"), env)
            run(virtctl("apply", "-f", str(specs)), env)  # (records again after any churn)
            importtime("no-op apply", virtctl("apply", "-f", str(specs)), env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--sim-n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-qemu", action="store_true", help="the sim only")
    args = parser.parse_args()
    if not args.no_qemu:
        bench_qemu(args.n, args.repeat)
    bench_sim(args.sim_n, args.repeat, imports=args.no_qemu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
