"""Benchmark: uploading an image into a volume, virtctl versus `virsh vol-upload`
(issue 14's target: virtctl at >= 80% of virsh's speed on the same host).

A dir pool in a temporary directory on qemu:///system; a file of --size MiB (default
1024) of random bytes. Each run, after an untimed removal of the volume:

- virsh     `virsh vol-create-as` (untimed) then `virsh vol-upload` of the file;
- virtctl   the CreateVolume action as `virtctl apply` performs it: create the volume,
            upload the file through libvirt's stream API, write virtctl's record in the
            pool's state volume;
- +sum      the same with the image's sha256 verified: virtctl hashes it while it
            uploads (as a spec with `checksum:` makes it); virsh is followed by
            `sha256sum`, as an operator checks an image.

SHA-256 runs at about the speed of a local upload here, so a verified upload cannot be
as fast as an unverified one: compare like with like.

Speeds are MiB/s of the best and the median run; `cores` is how busy the machine was
meanwhile (all processes, from /proc/stat: 2.0 is both cores of this machine), which says
whether a run was held back by the CPU. The pool and its folder (under /var/tmp) are
named vctl-test-upload-XXXXXX and removed at the end. Needs root and a running libvirtd.
Usage: python bench/bench_upload.py [--size 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt

from virtctl.drivers.libvirt.driver import LibvirtDriver
from virtctl.model import Kind, VolumeContent
from virtctl.reconciler.plan.actions import CreateVolume
from virtctl.reconciler.apply.applystorage import perform_storage

URI = "qemu:///system"


def make_file(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            block = secrets.token_bytes(1 << 20)
            digest.update(block)
            out.write(block)
    return "sha256:" + digest.hexdigest()


def busy() -> float:
    """Seconds of CPU the whole machine has spent busy (not idle, not waiting on I/O)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def remove(conn: libvirt.virConnect, pool: str, name: str) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.storagePoolLookupByName(pool).storageVolLookupByName(name).delete(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    name = "vctl-test-upload-" + secrets.token_hex(3)
    folder = Path(tempfile.mkdtemp(prefix=name + "-", dir="/var/tmp"))
    folder.chmod(0o755)
    pool_dir = folder / "pool"
    image = folder / "image.raw"
    conn = libvirt.open(URI)
    try:
        checksum = make_file(image, args.size)
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{name}</name><target><path>{pool_dir}</path></target>"
            "</pool>")
        pool.build(0)
        pool.create(0)
        size = image.stat().st_size
        times: dict[str, list[float]] = {
            "virsh": [], "virtctl": [], "virsh+sum": [], "virtctl+sum": []}
        cores: dict[str, list[float]] = {label: [] for label in times}
        driver = LibvirtDriver(URI)
        for _ in range(args.repeat):
            for verified in (False, True):
                remove(conn, name, "v.raw")
                subprocess.run(["virsh", "-q", "-c", URI, "vol-create-as", name, "v.raw",
                                str(size), "--format", "raw"], check=True, capture_output=True)
                label = "virsh+sum" if verified else "virsh"
                began, cpu = time.perf_counter(), busy()
                subprocess.run(["virsh", "-q", "-c", URI, "vol-upload", "--pool", name,
                                "v.raw", str(image)], check=True)
                if verified:  # what an operator runs to check the image
                    subprocess.run(["sha256sum", str(image)], check=True,
                                   capture_output=True)
                times[label].append(time.perf_counter() - began)
                cores[label].append((busy() - cpu) / times[label][-1])
                remove(conn, name, "v.raw")
                action = CreateVolume(
                    kind=Kind.VOLUME, name=f"{name}/v.raw",
                    xml="<volume><name>v.raw</name><target><format type='raw'/></target>"
                        "</volume>",
                    content=VolumeContent(file=str(image),
                                          checksum=checksum if verified else None))
                label = "virtctl+sum" if verified else "virtctl"
                began, cpu = time.perf_counter(), busy()
                perform_storage(action, driver)
                times[label].append(time.perf_counter() - began)
                cores[label].append((busy() - cpu) / times[label][-1])
        driver.close()
        mib = size / (1 << 20)
        print(f"# upload of {mib:.0f} MiB into a dir pool on {URI} ({args.repeat} runs)")
        speeds = {}
        for label, found in times.items():
            best, median = mib / min(found), mib / statistics.median(found)
            speeds[label] = (best, median)
            print(f"{label:>11}  best {best:7.1f} MiB/s  median {median:7.1f} MiB/s  "
                  f"cores {statistics.median(cores[label]):.2f}")
        for top, bottom in (("virtctl", "virsh"), ("virtctl+sum", "virsh+sum"),
                            ("virtctl+sum", "virsh")):
            ratio = speeds[top][0] / speeds[bottom][0]
            median_ratio = speeds[top][1] / speeds[bottom][1]
            print(f"{top} / {bottom} speed: {ratio:.2f} (best), {median_ratio:.2f} (median)"
                  f"  {'>= 0.80' if ratio >= 0.8 else '< 0.80'}")
    finally:
        try:
            pool = conn.storagePoolLookupByName(name)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()
            pool.undefine()
        except libvirt.libvirtError:
            pass
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)
        os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
