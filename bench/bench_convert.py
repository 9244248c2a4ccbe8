"""Benchmark: convert 1,000 xm files to domain XML in one process (target: under 1 s).

Run: python bench/bench_convert.py [--files N] [--repeat R]
Prints the best of R runs for xm->XML and for XML->xm; exits 1 if xm->XML misses 1 s.
The inputs are generated in memory (varied PV and HVM guests with disks, NICs, graphics),
so the measurement is the converter alone, not disk I/O.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from virtctl.converters.xen.xm import xm_to_xml, xml_to_xm

HVM = """# HVM guest {i}
name = "hvm-{i}"
uuid = "c7a5fdb2-cdaf-9455-926a-{i:012d}"
builder = "hvm"
kernel = "/usr/lib/xen/boot/hvmloader"
device_model = "/usr/lib/xen/bin/qemu-dm"
memory = {mem}
maxmem = {maxmem}
vcpus = 2
boot = "dc"
hpet = 1
localtime = 0
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
disk = [ "phy:/dev/vg0/hvm-{i},hda,w",
         "file:/srv/iso/install.iso,hdc:cdrom,r", ]
vif = [ "mac=00:16:3e:00:{a:02x}:{b:02x},bridge=xenbr0,script=vif-bridge,model=e1000" ]
vnc = 1
vncunused = 1
vnclisten = "127.0.0.1"
serial = "pty"
usbdevice = "tablet"
soundhw = "ac97"
"""

PV = """name = 'pv-{i}'
memory = {mem}
vcpus = 4
vcpu_avail = 3
bootloader = "/usr/bin/pygrub"
root = "/dev/xvda2"
extra = 'console=hvc0'
disk = [ 'phy:/dev/vg0/pv-{i},xvda,w', 'tap:aio:/srv/xen/pv-{i}-swap.img,xvdb,w' ]
vif = [ 'mac=00:16:3e:01:{a:02x}:{b:02x},bridge=xenbr1,vifname=pv{i}',
        'ip=10.0.{a}.{b},script=vif-route' ]
vfb = [ 'type=vnc,vncunused=1,keymap=de' ]
"""


def make_files(count: int) -> list[str]:
    files = []
    for i in range(count):
        template = HVM if i % 2 else PV
        files.append(template.format(i=i, mem=256 + i % 7 * 128, maxmem=2048, a=i // 256,
                                     b=i % 256))
    return files


def best_of(repeat: int, run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    files = make_files(args.files)
    xmls = [xm_to_xml(text).text for text in files]
    to_xml = best_of(args.repeat, lambda: [xm_to_xml(text) for text in files])
    to_xm = best_of(args.repeat, lambda: [xml_to_xm(xml) for xml in xmls])
    print(f"xm -> XML: {args.files} files in {to_xml:.3f} s "
          f"({to_xml / args.files * 1e6:.0f} us/file, best of {args.repeat})")
    print(f"XML -> xm: {args.files} files in {to_xm:.3f} s "
          f"({to_xm / args.files * 1e6:.0f} us/file, best of {args.repeat})")
    ok = to_xml < 1.0 * args.files / 1000
    print("target (1,000 files < 1 s):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
