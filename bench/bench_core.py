"""Core benchmark: full apply and no-op re-apply of N domains + N/10 networks on `sim`.

Each measurement runs the real `virtctl apply` command in a fresh process (so wall time
includes interpreter start and imports, as a user sees it) against a fresh sim state
directory. Targets (issue 2): no-op re-apply of 1,000 domains + 100 networks under 1 s
wall on 2 cores; 10x the objects costs at most 12x the time; under 200 MB at 10,000.

    python bench/bench_core.py                 # 1,000 and 10,000, YAML specs
    python bench/bench_core.py --sizes 100 1000 --format xml
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOMAIN_YAML = """\
---
kind: Domain
name: {name}
type: kvm
memory: 512MiB
vcpus: 2
autostart: {autostart}
os:
  type: hvm
  arch: x86_64
  machine: pc
  boot: [hd]
disks:
  - type: file
    device: disk
    source: /var/lib/libvirt/images/{name}.qcow2
    target: vda
    bus: virtio
    driver: {{name: qemu, type: qcow2}}
interfaces:
  - type: network
    source: {{network: net{net}}}
    model: virtio
graphics:
  - type: vnc
    autoport: true
"""

NETWORK_YAML = """\
---
kind: Network
name: net{i}
autostart: true
ips:
  - address: 10.{hi}.{lo}.1
    netmask: 255.255.255.0
"""

DOMAIN_XML = """\
<domain type='kvm'>
  <name>{name}</name>
  <metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1" \
autostart="{autostart}"/></metadata>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/{name}.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><source network='net{net}'/><model type='virtio'/></interface>
    <graphics type='vnc' autoport='yes'/>
  </devices>
</domain>
"""

NETWORK_XML = """\
<network>
  <name>net{i}</name>
  <metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1" \
autostart="yes"/></metadata>
  <ip address='10.{hi}.{lo}.1' netmask='255.255.255.0'/>
</network>
"""


def write_specs(folder: Path, n_domains: int, fmt: str) -> None:
    n_networks = max(1, n_domains // 10)
    folder.mkdir(parents=True)
    if fmt == "yaml":
        # 100 domains per file, as a team would group them.
        for start in range(0, n_domains, 100):
            docs = [
                DOMAIN_YAML.format(name=f"vm{i:05d}", net=i % n_networks,
                                   autostart="true" if i % 2 else "false")
                for i in range(start, min(start + 100, n_domains))
            ]
            (folder / f"domains-{start:05d}.yaml").write_text("".join(docs))
        nets = [NETWORK_YAML.format(i=i, hi=i // 250, lo=i % 250) for i in range(n_networks)]
        (folder / "networks.yaml").write_text("".join(nets))
        return
    for i in range(n_domains):
        (folder / f"vm{i:05d}.xml").write_text(DOMAIN_XML.format(
            name=f"vm{i:05d}", net=i % n_networks, autostart="yes" if i % 2 else "no"))
    for i in range(n_networks):
        (folder / f"net{i:04d}.xml").write_text(NETWORK_XML.format(i=i, hi=i // 250, lo=i % 250))


def run_apply(specs: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `virtctl apply` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "virtctl", "apply", "-f", str(specs)],
        env=env, capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"virtctl apply failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def bench(n: int, fmt: str, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "specs"
        write_specs(specs, n, fmt)
        env = dict(os.environ, VIRTCTL_STATE_DIR=str(Path(tmp) / "state"),
                   VIRTCTL_CONNECT="sim:///bench", VIRTCTL_CACHE_DIR=str(Path(tmp) / "cache"))
        # As installed: byte-compiled modules are written once and reused.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        full, _ = run_apply(specs, env)
        noop = []
        rss = 0.0
        for _ in range(repeat):
            wall, peak = run_apply(specs, env)
            noop.append(wall)
            rss = max(rss, peak)
        return {"objects": n + max(1, n // 10), "full": full, "noop": min(noop), "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--format", choices=("yaml", "xml"), default="yaml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = []
    print(f"{'domains':>8} {'networks':>8} {'full apply s':>13} {'no-op s':>9} {'peak MB':>8}")
    for n in args.sizes:
        r = bench(n, args.format, args.repeat)
        results.append((n, r))
        print(f"{n:>8} {max(1, n // 10):>8} {r['full']:>13.2f} {r['noop']:>9.3f} "
              f"{r['rss_mb']:>8.0f}")
    if len(results) >= 2:
        (n1, r1), (n2, r2) = results[0], results[-1]
        print(f"no-op scaling {n1}->{n2}: x{r2['noop'] / r1['noop']:.1f} "
              f"for x{n2 / n1:.0f} objects")


if __name__ == "__main__":
    main()
