"""Diff benchmark: a no-op `virtctl diff` over N running domains whose live XML carries
what libvirt adds (PCI and drive addresses, aliases, controllers, USB/serial/console/
input/video/memballoon devices, a CPU model, seclabels, the versioned machine, KiB
units), against the no-op `virtctl apply` of bench_core on the same specs.

Target (issue 4): the diff stays within 1.5x of the core no-op apply time.

    python bench/bench_diff.py               # 1,000 domains, 100 networks
    python bench/bench_diff.py --sizes 1000 5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import run_apply, write_specs  # noqa: E402

LIBVIRT_DEVICES = """\
<devices xmlns:x="x">
  <emulator>/usr/bin/qemu-system-x86_64</emulator>
  <controller type='usb' index='0' model='piix3-uhci'><alias name='usb'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/></controller>
  <controller type='pci' index='0' model='pci-root'><alias name='pci.0'/></controller>
  <controller type='ide' index='0'><alias name='ide'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/></controller>
  <controller type='virtio-serial' index='0'><alias name='virtio-serial0'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></controller>
  <serial type='pty'><source path='/dev/pts/3'/><target type='isa-serial' port='0'>
    <model name='isa-serial'/></target><alias name='serial0'/></serial>
  <console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/>
    <target type='serial' port='0'/><alias name='serial0'/></console>
  <channel type='unix'>\
<source mode='bind' path='/run/libvirt/qemu/channel/1/org.qemu.guest_agent.0'/>
    <target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/>
    <alias name='channel0'/>\
<address type='virtio-serial' controller='0' bus='0' port='1'/></channel>
  <input type='tablet' bus='usb'><alias name='input0'/>\
<address type='usb' bus='0' port='1'/></input>
  <input type='mouse' bus='ps2'><alias name='input1'/></input>
  <input type='keyboard' bus='ps2'><alias name='input2'/></input>
  <audio id='1' type='none'/>
  <video><model type='cirrus' vram='16384' heads='1' primary='yes'/><alias name='video0'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></video>
  <memballoon model='virtio'><alias name='balloon0'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/></memballoon>
</devices>
"""

TAIL = """\
<root>
  <cpu mode='custom' match='exact' check='full'><model fallback='forbid'>qemu64</model>
    <feature policy='require' name='x2apic'/><feature policy='require' name='hypervisor'/>
    <feature policy='require' name='lahf_lm'/><feature policy='disable' name='svm'/></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64055</label>
    <imagelabel>+64055:+64055</imagelabel></seclabel>
</root>
"""


def libvirt_like(xml: str, *, running: bool, serial: int) -> str:
    """A sim definition rewritten the way qemu:///system reports it."""
    parser = etree.XMLParser(remove_blank_text=True)
    root = etree.fromstring(xml.encode(), parser)
    if running:
        root.set("id", str(serial))
    os_type = root.find("os/type")
    if os_type is not None:
        os_type.set("machine", "pc-i440fx-7.2")
    devices = root.find("devices")
    assert devices is not None
    for i, dev in enumerate(list(devices)):
        if dev.tag == "interface":
            source = dev.find("source")
            if source is not None and running:
                source.set("portid", f"7f1c0a2e-0000-4000-8000-{serial:012d}")
                source.set("bridge", "virbr1")
            etree.SubElement(dev, "target", dev=f"vnet{serial}")
        if dev.tag == "graphics" and running:
            dev.set("port", str(5900 + serial))
            etree.SubElement(dev, "listen", type="address", address="127.0.0.1")
        etree.SubElement(dev, "alias", name=f"{dev.tag}{i}")
        etree.SubElement(dev, "address", type="pci", domain="0x0000", bus="0x00",
                         slot=f"0x{i + 3:02x}", function="0x0")
    for extra in etree.fromstring(LIBVIRT_DEVICES.encode(), parser):
        devices.append(extra)
    devices[:] = sorted(devices, key=lambda d: str(d.tag))  # libvirt's own device order
    for extra in etree.fromstring(TAIL.encode(), parser):
        root.append(extra)
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def roughen(state: Path) -> int:
    """Rewrite every domain record of the sim host under `state` with libvirt's noise."""
    count = 0
    for serial, record_path in enumerate(sorted((state / "domains").glob("*.json"))):
        record = json.loads(record_path.read_text())
        running = record["running_xml"] is not None
        record["xml"] = libvirt_like(record["xml"], running=False, serial=serial)
        if running:
            record["running_xml"] = libvirt_like(record["running_xml"], running=True,
                                                 serial=serial)
        record_path.write_text(json.dumps(record))
        count += 1
    return count


def run_diff(specs: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "virtctl", "diff", "-f", str(specs)],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"virtctl diff is not a no-op (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return wall


def bench(n: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "specs"
        write_specs(specs, n, "yaml")
        env = dict(os.environ, VIRTCTL_STATE_DIR=str(Path(tmp) / "state"),
                   VIRTCTL_CONNECT="sim:///bench", VIRTCTL_SIM_FSYNC="0")
        run_apply(specs, env)
        apply_noop = min(run_apply(specs, env)[0] for _ in range(repeat))
        roughen(Path(tmp) / "state" / "sim" / "bench")
        diff_noop = min(run_diff(specs, env) for _ in range(repeat))
        return {"apply": apply_noop, "diff": diff_noop}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'domains':>8} {'no-op apply s':>14} {'no-op diff s':>13} {'ratio':>6}"
          "  (target <= 1.5)")
    for n in args.sizes:
        r = bench(n, args.repeat)
        print(f"{n:>8} {r['apply']:>14.3f} {r['diff']:>13.3f} {r['diff'] / r['apply']:>6.2f}")


if __name__ == "__main__":
    main()
