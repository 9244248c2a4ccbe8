"""Storage end to end on qemu:///system (issue 14), the scenarios of test_storage.py on
a real daemon: a dir pool, a base volume uploaded from a local qcow2 file (checksum
verified), a qcow2 overlay whose backing file is the base volume's path, a bad checksum
that fails and leaves nothing behind, a raw volume grown but never shrunk, prune keeping
data unless deletePolicy says delete, a format change refused without --allow-recreate,
and a guest (no OS needed) running on the overlay with its cloud-init seed as a CD-ROM.

Names are vctl-stq-<random>; the pool's directory is /var/tmp/vctl-stq-<random>/images
(0755: QEMU runs as libvirt-qemu). The domain, the volumes, the pool and the directory
are removed afterwards, however a test ends."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import (
    libvirt_module,
    purge_libvirt,
    require_connection,
    unavailable,
)
from virtctl.xmlutil import parse

URI = "qemu:///system"


@dataclass
class Lab:
    name: str  # the pool's and the domain's
    directory: Path  # /var/tmp/vctl-stq-<random>
    specs: Path
    image: Path  # a tiny local qcow2: the base volume's content
    cli: Callable[..., Any]

    @property
    def target(self) -> Path:
        return self.directory / "images"

    def write(self, *, sum_: str | None = None, data_size: str = "16MiB",
              data_format: str = "raw", with_data: bool = True, extra: str = "",
              web_size: str = "64MiB") -> None:
        sum_ = sum_ or checksum(self.image.read_bytes())
        text = textwrap.dedent(f"""\
            kind: StoragePool
            name: {self.name}
            type: dir
            target: {{path: {self.target}, permissions: {{mode: "0755"}}}}
            ---
            kind: Volume
            pool: {self.name}
            name: base.qcow2
            format: qcow2
            content: {{file: {self.image}, checksum: "{sum_}"}}
            ---
            kind: Volume
            pool: {self.name}
            name: web.qcow2
            format: qcow2
            capacity: {web_size}
            backingStore: {{volume: base.qcow2, format: qcow2}}
            deletePolicy: delete
            """)
        if with_data:
            text += textwrap.dedent(f"""\
                ---
                kind: Volume
                pool: {self.name}
                name: data.img
                format: {data_format}
                capacity: {data_size}
                """)
        (self.specs / "all.yaml").write_text(text + extra)

    def apply(self, *flags: str) -> Any:
        return self.cli("apply", "-c", URI, *flags, "-f", str(self.specs))

    def diff(self) -> Any:
        return self.cli("diff", "-c", URI, "-f", str(self.specs))


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def block_paths(libvirt: Any, conn: Any, dom: Any) -> dict[str, list[str]]:
    """Each disk's files as the running domain has them (its backing chain in order):
    a `type: volume` disk's live XML names the pool and volume, not the path."""
    flags = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING
    [(_, stats)] = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_BLOCK, flags)
    chains: dict[str, list[tuple[int, str]]] = {}
    for i in range(stats["block.count"]):
        if f"block.{i}.path" in stats:
            chains.setdefault(stats[f"block.{i}.name"], []).append(
                (stats.get(f"block.{i}.backingIndex", 0), stats[f"block.{i}.path"]))
    return {name: [path for _, path in sorted(chain)] for name, chain in chains.items()}


def iso_file(image: Path, name: str) -> str:
    """A file of an ISO 9660 image, read back with isoinfo (genisoimage) or bsdtar."""
    if shutil.which("isoinfo"):
        argv = ["isoinfo", "-R", "-x", f"/{name}", "-i", str(image)]
    elif shutil.which("bsdtar"):
        argv = ["bsdtar", "-xOf", str(image), name]
    else:
        unavailable("reading an ISO needs isoinfo or bsdtar (apt-get install genisoimage)")
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def remove_pool(name: str) -> None:
    """The test's own pool (purge_libvirt only takes vctl-test-* pools): its volumes,
    then the pool; its directory goes with the lab's."""
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        with contextlib.suppress(libvirt.libvirtError):
            pool = conn.storagePoolLookupByName(name)
            if pool.isActive():
                for vol in pool.listAllVolumes(0):
                    with contextlib.suppress(libvirt.libvirtError):
                        vol.delete(0)
            for step in ("destroy", "undefine"):  # never pool.delete()
                with contextlib.suppress(libvirt.libvirtError):
                    getattr(pool, step)()
    finally:
        conn.close()


@pytest.fixture
def lab(cli: Callable[..., Any], specs: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    require_connection(URI)
    if not shutil.which("qemu-img"):
        unavailable("qemu-img is not installed (apt-get install qemu-utils)")
    monkeypatch.setenv("VIRTCTL_CACHE_DIR", str(tmp_path / "cache"))
    name = "vctl-stq-" + secrets.token_hex(4)
    directory = Path("/var/tmp") / name
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    image = tmp_path / "base-image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    try:
        yield Lab(name, directory, specs, image, cli)
    finally:
        try:
            purge_libvirt(URI, [name])  # the domain
            remove_pool(name)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def volume_names(lab: Lab) -> set[str]:
    return {p.name for p in lab.target.iterdir()} if lab.target.exists() else set()


def test_a_pool_a_base_volume_from_a_file_and_an_overlay_on_it(lab: Lab) -> None:
    lab.write(with_data=False)
    first = lab.apply()
    assert first.code == 0, first.out + first.err
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        pool = conn.storagePoolLookupByName(lab.name)
        assert pool.isActive()
        assert parse(pool.XMLDesc(0)).findtext("target/path") == str(lab.target)
    finally:
        conn.close()
    base, overlay = lab.target / "base.qcow2", lab.target / "web.qcow2"
    assert base.read_bytes() == lab.image.read_bytes()  # the file, uploaded as it was
    assert info(base)["format"] == "qcow2"
    chain = info(overlay)
    assert chain["format"] == "qcow2" and chain["virtual-size"] == 64 << 20
    assert chain["backing-filename"] == str(base)
    assert chain.get("backing-filename-format", "qcow2") == "qcow2"
    again = lab.diff()
    assert again.code == 0, again.out + again.err


def test_a_bad_checksum_fails_and_leaves_nothing_behind(lab: Lab) -> None:
    bad = "sha256:" + "0" * 64
    lab.write(sum_=bad, with_data=False)
    result = lab.apply()
    assert result.code == 1, result.out + result.err
    said = result.out + result.err
    assert "does not match its checksum" in said and bad in said
    # Hashed before the first action (issue 20): the spec's line and the file are
    # named, and nothing was made, not even the pool.
    assert f"{lab.specs / 'all.yaml'}:" in result.err and str(lab.image) in result.err
    assert volume_names(lab) == set()
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        assert lab.name not in conn.listStoragePools() + conn.listDefinedStoragePools()
    finally:
        conn.close()


def test_a_raw_volume_grows_but_is_never_shrunk(lab: Lab) -> None:
    lab.write()
    assert lab.apply().code == 0
    data = lab.target / "data.img"
    assert info(data)["virtual-size"] == 16 << 20
    lab.write(data_size="32MiB")
    grown = lab.apply()
    assert grown.code == 0 and "resize-volume" in grown.out, grown.out + grown.err
    assert info(data)["virtual-size"] == 32 << 20
    lab.write(data_size="16MiB")
    kept = lab.apply()
    assert kept.code == 0 and "never shrunk" in kept.out, kept.out + kept.err
    assert info(data)["virtual-size"] == 32 << 20
    assert data.stat().st_size == 32 << 20


def test_prune_keeps_data_unless_the_spec_said_delete(lab: Lab) -> None:
    lab.write()
    assert lab.apply().code == 0
    data = lab.target / "data.img"
    with data.open("r+b") as handle:  # the guest's data, as far as virtctl knows
        handle.write(b"keep me")
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    # data.img (retain) and web.qcow2 (delete) leave the specs: prune them.
    lab.write(with_data=False)
    text = (lab.specs / "all.yaml").read_text()
    (lab.specs / "all.yaml").write_text(text[:text.index("---\nkind: Volume\npool: "
                                                         f"{lab.name}\nname: web.qcow2")])
    pruned = lab.apply("--prune")
    assert pruned.code == 0, pruned.out + pruned.err
    assert "retained" in pruned.out and "delete-volume" in pruned.out
    assert data.exists() and hashlib.sha256(data.read_bytes()).hexdigest() == before
    assert not (lab.target / "web.qcow2").exists()  # deletePolicy: delete
    assert (lab.target / "base.qcow2").exists()
    again = lab.apply("--prune")
    assert again.code == 0 and "No changes" in again.out, again.out  # no longer managed


def test_a_new_format_needs_allow_recreate(lab: Lab) -> None:
    lab.write()
    assert lab.apply().code == 0
    data = lab.target / "data.img"
    lab.write(data_format="qcow2")
    refused = lab.apply()
    assert "--allow-recreate" in refused.out, refused.out + refused.err
    assert info(data)["format"] == "raw"  # nothing changed
    allowed = lab.apply("--allow-recreate")
    assert allowed.code == 0, allowed.out + allowed.err
    assert info(data)["format"] == "qcow2" and info(data)["virtual-size"] == 16 << 20
    assert lab.diff().code == 0


def test_a_guest_runs_on_the_overlay_with_its_cloud_init_seed(lab: Lab) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVctlStqTestKey ops@test"
    guest = textwrap.dedent(f"""\
        ---
        kind: Domain
        name: {lab.name}
        type: qemu
        memory: 128MiB
        os: {{type: hvm}}
        features: {{acpi: true}}
        disks:
          - {{type: volume, device: disk, source: {{pool: {lab.name}, volume: web.qcow2}},
             target: vda, bus: virtio}}
        cloudInit:
          pool: {lab.name}
          hostname: stq-web
          userData: {{users: [{{name: stqops, ssh_authorized_keys: ["{key}"]}}]}}
        """)
    # No driver type on the disk: virtctl gives it the volume's format (qcow2), or
    # QEMU would open the overlay as raw and the guest would see the image file.
    lab.write(with_data=False, extra=guest)
    first = lab.apply()
    assert first.code == 0, first.out + first.err
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(lab.name)
        assert dom.isActive()
        first_id = dom.ID()
        live = parse(dom.XMLDesc(0))
        paths = block_paths(libvirt, conn, dom)
    finally:
        conn.close()
    overlay, base = lab.target / "web.qcow2", lab.target / "base.qcow2"
    seed = lab.target / f"{lab.name}-cidata.iso"
    disks = {d.find("target").get("dev"): d for d in live.iterfind("devices/disk")}
    vda = disks["vda"]
    assert (vda.find("source").get("pool"), vda.find("source").get("volume")) == (
        lab.name, "web.qcow2")
    assert vda.find("backingStore/source").get("file") == str(base)
    assert vda.find("backingStore/format").get("type") == "qcow2"
    assert paths["vda"] == [str(overlay), str(base)]  # what QEMU opened: the chain
    cdrom = next(d for d in disks.values() if d.get("device") == "cdrom")
    assert cdrom.find("source").get("volume") == seed.name
    assert paths[cdrom.find("target").get("dev")] == [str(seed)]
    user_data = iso_file(seed, "user-data")
    assert "stqops" in user_data and key in user_data
    assert "local-hostname: stq-web" in iso_file(seed, "meta-data")
    again = lab.diff()
    assert again.code == 0, again.out + again.err
    # Growing the overlay while the guest runs: through the guest (blockResize), live.
    lab.write(with_data=False, extra=guest, web_size="96MiB")
    grown = lab.apply()
    assert grown.code == 0 and f"resize-volume live through {lab.name} vda" in grown.out, (
        grown.out + grown.err)
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(lab.name)
        assert dom.isActive() and dom.ID() == first_id
        assert dom.blockInfo("vda", 0)[0] == 96 << 20  # the guest's disk, now
    finally:
        conn.close()
    assert info(overlay)["virtual-size"] == 96 << 20
    assert lab.diff().code == 0


# Issue 20 F: delete --dry-run, re-apply after delete, someone else's volume, a backing
# file that is no volume.


def pool_names() -> set[str]:
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        return set(conn.listStoragePools() + conn.listDefinedStoragePools())
    finally:
        conn.close()


def test_delete_dry_run_then_re_apply_after_delete_asks_for_adopt(lab: Lab) -> None:
    lab.write()
    assert lab.apply().code == 0
    data = lab.target / "data.img"
    with data.open("r+b") as handle:
        handle.write(b"precious")
    dry = lab.cli("delete", "-c", URI, "--dry-run", "-f", str(lab.specs))
    assert dry.code == 2, dry.out + dry.err
    assert "read-only" not in dry.err and "delete-volume" in dry.out
    assert lab.name in pool_names() and "web.qcow2" in volume_names(lab)
    deleted = lab.cli("delete", "-c", URI, "-f", str(lab.specs))
    assert deleted.code == 0, deleted.out + deleted.err
    assert lab.name not in pool_names()
    assert {"base.qcow2", "data.img"} <= volume_names(lab)  # retained
    again = lab.apply()
    assert again.code == 1
    assert f"{lab.specs / 'all.yaml'}:" in again.err and "--adopt" in again.err
    assert "volume '" + lab.name + "/data.img' exists already" in again.err
    assert lab.name not in pool_names()  # nothing applied
    adopted = lab.apply("--adopt")
    assert adopted.code == 0, adopted.out + adopted.err
    assert data.read_bytes()[:8] == b"precious"  # taken over as it was
    assert info(lab.target / "base.qcow2")["format"] == "qcow2"
    settled = lab.diff()
    assert settled.code == 0, settled.out + settled.err


def test_someone_elses_file_in_the_pools_directory_is_never_overwritten(lab: Lab) -> None:
    lab.target.mkdir(mode=0o755)
    theirs = lab.target / "data.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(theirs), "8M"], check=True)
    before = theirs.read_bytes()
    lab.write()  # declares data.img as raw
    refused = lab.apply()
    assert refused.code == 1 and "--adopt" in refused.err, refused.out + refused.err
    assert lab.name not in pool_names()
    taken = lab.apply("--adopt", "--allow-recreate")
    assert "never deleted or overwritten" in taken.out, taken.out + taken.err
    assert theirs.read_bytes() == before


def test_a_backing_file_that_is_no_volume(lab: Lab) -> None:
    base = lab.directory / "host-base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "24M"], check=True)
    base.chmod(0o644)
    text = textwrap.dedent(f"""\
        kind: StoragePool
        name: {lab.name}
        type: dir
        target: {{path: {lab.target}, permissions: {{mode: "0755"}}}}
        ---
        kind: Volume
        pool: {lab.name}
        name: top.qcow2
        format: qcow2
        backingStore: {{path: {base}, format: qcow2}}
        """)
    spec = lab.specs / "all.yaml"
    spec.write_text(text.replace(str(base), str(lab.directory / "gone.qcow2")))
    missing = lab.apply()
    assert missing.code == 1
    assert f"{spec}:5: backingStore.path" in missing.err, missing.err
    assert lab.name not in pool_names()
    spec.write_text(text)
    made = lab.apply()
    assert made.code == 0, made.out + made.err
    top = info(lab.target / "top.qcow2")
    assert top["backing-filename"] == str(base) and top["virtual-size"] == 24 << 20
    assert lab.diff().code == 0


# Issue 22, defect 1: a changed seed under a running guest is swapped live.


def qemu_open_files(name: str) -> list[str]:
    """The files the guest's QEMU process holds open (readlink of /proc/PID/fd/*): a
    deleted one reads '... (deleted)'."""
    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            out.append(str(fd.readlink()))
    return out


def test_a_changed_seed_under_a_running_guest_is_swapped_live(lab: Lab) -> None:
    def guest(marker: str) -> str:
        return textwrap.dedent(f"""\
            ---
            kind: Domain
            name: {lab.name}
            type: qemu
            memory: 128MiB
            os: {{type: hvm}}
            features: {{acpi: true}}
            disks:
              - {{type: volume, device: disk, source: {{pool: {lab.name}, volume: web.qcow2}},
                 target: vda, bus: virtio}}
            cloudInit:
              pool: {lab.name}
              userData: {{write_files: [{{path: /etc/marker, content: {marker}}}]}}
            """)
    lab.write(with_data=False, extra=guest("first"))
    first = lab.apply()
    assert first.code == 0, first.out + first.err
    seed = lab.target / f"{lab.name}-cidata.iso"
    assert str(seed) in qemu_open_files(lab.name)
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        first_id = conn.lookupByName(lab.name).ID()
    finally:
        conn.close()

    lab.write(with_data=False, extra=guest("second"))
    planned = lab.diff()
    assert planned.code == 2, planned.out + planned.err  # not "No changes"
    second = lab.apply()
    assert second.code == 0, second.out + second.err
    assert "second" in iso_file(seed, "user-data")
    held = qemu_open_files(lab.name)
    # QEMU holds the new file (the same path, a new inode), not the deleted old one.
    assert f"{seed} (deleted)" not in held, held
    assert str(seed) in held, held
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(lab.name)
        assert dom.ID() == first_id  # the same running guest: nothing restarted
        cdrom = next(d for d in parse(dom.XMLDesc(0)).iterfind("devices/disk")
                     if d.get("device") == "cdrom")
        assert cdrom.find("source").get("volume") == seed.name
    finally:
        conn.close()
    again = lab.diff()
    assert again.code == 0, again.out + again.err
