"""Storage end to end on the sim (issue 14): a pool, a base volume with content from a
local file (checksum verified), a copy-on-write overlay named by volume, a data disk and
a guest booting from the overlay; a second apply plans nothing and a no-op re-apply of
100 volumes writes no volume; a bad checksum fails and leaves nothing behind; volumes
grow and are never shrunk; prune keeps data unless deletePolicy says delete; a changed
format is refused without --allow-recreate. The same on qemu:///system is in
test_storage_qemu.py; the drivers' own semantics in tests/contract."""

from __future__ import annotations

import hashlib
import io
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import STATE_VOLUME, Kind
from virtctl.reconciler.apply import applystorage
from virtctl.uri import parse_uri


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_specs(specs: Path, image: Path, *, sum_: str | None = None, data_size: str = "1GiB",
                data_format: str = "raw", with_data: bool = True, extra: str = "",
                web_size: str = "8GiB") -> None:
    sum_ = sum_ or checksum(image.read_bytes())
    text = textwrap.dedent(f"""\
        kind: StoragePool
        name: images
        type: dir
        target: {{path: /srv/images}}
        ---
        kind: Volume
        pool: images
        name: base.qcow2
        format: qcow2
        content: {{file: {image}, checksum: "{sum_}"}}
        ---
        kind: Volume
        pool: images
        name: web.qcow2
        format: qcow2
        capacity: {web_size}
        backingStore: {{volume: base.qcow2, format: qcow2}}
        deletePolicy: delete
        ---
        kind: Domain
        name: web
        type: kvm
        memory: 256MiB
        os: {{type: hvm}}
        disks:
          - {{type: volume, device: disk, source: {{pool: images, volume: web.qcow2}},
             target: vda, bus: virtio}}
        """)
    if with_data:
        text += textwrap.dedent(f"""\
            ---
            kind: Volume
            pool: images
            name: data.img
            format: {data_format}
            capacity: {data_size}
            """)
    (specs / "all.yaml").write_text(text + extra)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "base-image.qcow2"
    path.write_bytes(b"QFI\xfb" + bytes(range(256)) * 64)
    return path


def sim() -> SimDriver:
    return SimDriver(parse_uri("sim:///default"))


def apply(cli: Callable[..., object], specs: Path, *flags: str) -> object:
    return cli("apply", *flags, "-f", str(specs))


def test_a_pool_volumes_and_a_guest_on_an_overlay_come_up_in_one_apply(
        cli, specs: Path, image: Path, state_dir: Path) -> None:  # noqa: ANN001
    write_specs(specs, image)
    first = apply(cli, specs)
    assert first.code == 0, first.out + first.err  # type: ignore[attr-defined]
    storage = sim().storage()
    assert storage.pools["images"].active and storage.pools["images"].record
    assert set(storage.volumes) == {"images/base.qcow2", "images/web.qcow2", "images/data.img"}
    assert STATE_VOLUME not in {v.name for v in storage.volumes.values()}
    overlay = storage.volumes["images/web.qcow2"].xml
    assert "base.qcow2</path>" in overlay and "virtctl-volume:" not in overlay
    assert sim().download_volume("images", "base.qcow2", limit=1 << 20) == image.read_bytes()
    assert sim().snapshot().domains["web"].state.active
    again = cli("diff", "-f", str(specs))
    assert again.code == 0, again.out  # type: ignore[attr-defined]


def test_a_no_op_re_apply_of_100_volumes_writes_no_volume(
        cli, specs: Path, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    many = "".join(f"---\nkind: Volume\npool: images\nname: v{i:03d}.raw\nformat: raw\n"
                   "capacity: 1MiB\n" for i in range(97))
    write_specs(specs, image, extra=many)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    assert len(sim().storage().volumes) == 100
    writes: list[str] = []
    for op in ("create_volume", "delete_volume", "resize_volume", "upload_volume",
               "build_pool", "define", "start"):
        original = getattr(SimDriver, op)
        monkeypatch.setattr(SimDriver, op, lambda self, *a, _op=op, _f=original, **k: (
            writes.append(_op), _f(self, *a, **k))[1])
    again = apply(cli, specs)
    assert again.code == 0 and "No changes" in again.out  # type: ignore[attr-defined]
    assert writes == []


def test_a_bad_checksum_fails_and_leaves_nothing_behind(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    write_specs(specs, image, sum_="sha256:" + "0" * 64)
    result = apply(cli, specs)
    assert result.code == 1  # type: ignore[attr-defined]
    assert "does not match its checksum" in result.out + result.err  # type: ignore[attr-defined]
    volumes = sim().storage().volumes
    assert "images/base.qcow2" not in volumes  # removed again
    assert "images/web.qcow2" not in volumes  # skipped: its backing volume failed


def test_volumes_grow_but_are_never_shrunk(cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    write_specs(specs, image)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    write_specs(specs, image, data_size="2GiB")
    grown = apply(cli, specs)
    assert grown.code == 0 and "resize-volume" in grown.out  # type: ignore[attr-defined]
    assert sim().storage().volumes["images/data.img"].capacity == 2 << 30
    write_specs(specs, image, data_size="1GiB")
    kept = apply(cli, specs)
    assert kept.code == 0 and "never shrunk" in kept.out  # type: ignore[attr-defined]
    assert sim().storage().volumes["images/data.img"].capacity == 2 << 30


def test_prune_keeps_data_unless_the_spec_said_delete(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    write_specs(specs, image)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    write_specs(specs, image, with_data=False)
    pruned = apply(cli, specs, "--prune")
    assert pruned.code == 0, pruned.out + pruned.err  # type: ignore[attr-defined]
    assert "retained" in pruned.out  # type: ignore[attr-defined]
    assert "images/data.img" in sim().storage().volumes  # still there, with its data
    again = apply(cli, specs, "--prune")
    assert "No changes" in again.out  # type: ignore[attr-defined]  # and no longer managed
    deleted = cli("delete", "-f", str(specs))
    assert deleted.code == 0, deleted.out + deleted.err  # type: ignore[attr-defined]
    assert "images" not in sim().storage().pools  # stopped and undefined
    # Its storage stayed: define the pool again and see what is in it.
    (specs / "all.yaml").write_text((specs / "all.yaml").read_text().split("---")[0])
    assert apply(cli, specs, "--adopt").code == 0  # type: ignore[attr-defined]
    left = sim().storage().volumes
    assert "images/web.qcow2" not in left  # deletePolicy: delete
    assert "images/base.qcow2" in left and "images/data.img" in left  # retained


def test_a_new_format_needs_allow_recreate(cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    write_specs(specs, image)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    write_specs(specs, image, data_format="qcow2")
    refused = apply(cli, specs)
    assert "--allow-recreate" in refused.out  # type: ignore[attr-defined]
    assert "<format type='raw'/>" in sim().storage().volumes["images/data.img"].xml.replace(
        '"', "'")
    allowed = apply(cli, specs, "--allow-recreate")
    assert allowed.code == 0, allowed.out + allowed.err  # type: ignore[attr-defined]
    assert "qcow2" in sim().storage().volumes["images/data.img"].xml


def test_a_cloud_init_seed_is_made_attached_and_replaced_for_the_next_boot(
        cli, specs: Path) -> None:  # noqa: ANN001
    def write(host: str) -> None:
        (specs / "guest.yaml").write_text(textwrap.dedent(f"""\
            kind: StoragePool
            name: images
            type: dir
            target: {{path: /srv/images}}
            ---
            kind: Domain
            name: web
            type: kvm
            memory: 256MiB
            os: {{type: hvm}}
            cloudInit:
              pool: images
              hostname: {host}
              userData: {{users: [{{name: ops, ssh_authorized_keys: ["ssh-ed25519 AAAA ops"]}}]}}
            """))

    write("web")
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    seed = sim().download_volume("images", "web-cidata.iso", limit=1 << 20)
    assert b"cidata" in seed and b"local-hostname: web" in seed
    started = sim().snapshot().domains["web"]
    assert "web-cidata.iso" in (started.running_xml or "")
    write("web-2")
    changed = apply(cli, specs)
    assert changed.code == 0, changed.out + changed.err  # type: ignore[attr-defined]
    assert "delete-volume" in changed.out and "create-volume" in changed.out  # type: ignore[attr-defined]
    assert b"local-hostname: web-2" in sim().download_volume("images", "web-cidata.iso",
                                                             limit=1 << 20)
    assert sim().snapshot().domains["web"].id == started.id  # not restarted
    assert cli("diff", "-f", str(specs)).code == 0  # type: ignore[attr-defined]
    deleted = cli("delete", "-f", str(specs))
    assert deleted.code == 0 and "delete-volume" in deleted.out  # type: ignore[attr-defined]


def test_a_changed_seed_of_a_running_guest_swaps_its_medium_or_waits(
        cli, specs: Path) -> None:  # noqa: ANN001
    """Issue 22, defect 1: the seed's CD-ROM medium is ejected before the volume is
    deleted and the new one inserted after (the JSON plan says so); with --no-live the
    seed under the running guest is kept, noted, and replaced once the guest stops."""
    def write(marker: str, state: str = "running") -> None:
        (specs / "guest.yaml").write_text(textwrap.dedent(f"""\
            kind: StoragePool
            name: images
            type: dir
            target: {{path: /srv/images}}
            ---
            kind: Domain
            name: web
            type: kvm
            memory: 256MiB
            state: {state}
            os: {{type: hvm}}
            cloudInit:
              pool: images
              userData: {{write_files: [{{path: /m, content: {marker}}}]}}
            """))

    def seed() -> bytes:
        return sim().download_volume("images", "web-cidata.iso", limit=1 << 20)

    write("one")
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    write("two")
    shown = cli("diff", "-o", "json", "-f", str(specs))
    assert shown.code == 2, shown.out + shown.err  # type: ignore[attr-defined]
    assert "ejected from web's CD-ROM hdd" in shown.out, shown.out  # type: ignore[attr-defined]
    assert "inserted live in web's CD-ROM hdd" in shown.out  # type: ignore[attr-defined]
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    assert b"two" in seed()
    running = sim().snapshot().domains["web"].running_xml or ""
    assert "web-cidata.iso" in running  # the medium is back in, the new one

    write("three")
    kept = apply(cli, specs, "--no-live")
    assert kept.code == 0, kept.out + kept.err  # type: ignore[attr-defined]
    assert "kept until web stops" in kept.out + kept.err, kept.out  # type: ignore[attr-defined]
    assert b"two" in seed()  # not replaced under the running guest
    write("three", state="shutoff")
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    assert b"three" in seed()  # replaced once the guest stopped


def test_the_cloud_guest_example_applies(cli, specs: Path) -> None:  # noqa: ANN001
    """specs/cloud/ as a user would apply it (on the sim, with a stand-in image file
    and the `default` network a libvirt host has)."""
    example = Path(__file__).resolve().parents[2] / "specs" / "cloud"
    for spec in example.glob("*.yaml"):
        (specs / spec.name).write_text(spec.read_text())
    (specs / "debian-12-genericcloud-amd64.qcow2").write_bytes(b"QFI\xfb" + b"\0" * 4092)
    (specs / "net.yaml").write_text("kind: Network\nname: default\n"
                                    "ips: [{address: 192.168.122.1, prefix: 24}]\n")
    applied = apply(cli, specs)
    assert applied.code == 0, applied.out + applied.err  # type: ignore[attr-defined]
    volumes = sim().storage().volumes
    assert {"cloud-images/cloud-web-1.qcow2", "cloud-images/cloud-web-1-cidata.iso"} <= set(
        volumes)
    assert cli("diff", "-f", str(specs)).code == 0  # type: ignore[attr-defined]


def test_a_volume_a_running_guest_uses_grows_through_the_guest(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    write_specs(specs, image)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    started = sim().snapshot().domains["web"].id
    write_specs(specs, image, web_size="9GiB")
    grown = apply(cli, specs)
    assert grown.code == 0, grown.out + grown.err  # type: ignore[attr-defined]
    assert "resize-volume live through web vda" in grown.out  # type: ignore[attr-defined]
    assert sim().storage().volumes["images/web.qcow2"].capacity == 9 << 30
    assert sim().snapshot().domains["web"].id == started


# Issue 20 F: delete --dry-run, re-apply after delete, a checksum checked late, a
# backing file that is no volume.


def test_delete_dry_run_of_storage_specs_plans_and_changes_nothing(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    write_specs(specs, image)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    before = sim().storage()
    dry = cli("delete", "--dry-run", "-f", str(specs))
    assert dry.code == 2, dry.out + dry.err  # type: ignore[attr-defined]
    assert "delete-volume" in dry.out and "read-only" not in dry.err  # type: ignore[attr-defined]
    assert sim().storage() == before
    as_json = cli("delete", "--dry-run", "-o", "json", "-f", str(specs))
    assert as_json.code == 2, as_json.err  # type: ignore[attr-defined]


def data_of(pool: str, name: str) -> bytes:
    return sim().download_volume(pool, name, limit=64 << 20)


def test_re_apply_after_delete_names_adopt_before_any_action_and_adopt_keeps_the_data(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    write_specs(specs, image, data_size="1MiB")
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    sim().upload_volume("images", "data.img", io.BytesIO(b"precious"), 8)
    deleted = cli("delete", "-f", str(specs))
    assert deleted.code == 0, deleted.out + deleted.err  # type: ignore[attr-defined]
    assert "images" not in sim().storage().pools
    again = apply(cli, specs)
    assert again.code == 1  # type: ignore[attr-defined]
    err = again.err  # type: ignore[attr-defined]
    spec_file = str(specs / "all.yaml")
    for name in ("base.qcow2", "data.img"):  # retained; web.qcow2 said delete
        assert f"{spec_file}:" in err and f"volume 'images/{name}' exists already" in err
    assert "--adopt" in err and "web.qcow2" not in err
    assert "images" not in sim().storage().pools  # nothing applied, not even the pool
    diff = cli("diff", "-f", str(specs))
    assert diff.code == 1 and "--adopt" in diff.err  # type: ignore[attr-defined]
    adopted = apply(cli, specs, "--adopt")
    assert adopted.code == 0, adopted.out + adopted.err  # type: ignore[attr-defined]
    assert "create-volume images/base.qcow2" not in adopted.out  # type: ignore[attr-defined]
    assert data_of("images", "data.img")[:8] == b"precious"  # not touched
    assert data_of("images", "base.qcow2") == image.read_bytes()
    settled = apply(cli, specs)
    assert settled.code == 0 and "No changes" in settled.out  # type: ignore[attr-defined]
    # Adopted, so virtctl's again: its delete policy (retain) applies on the next delete.
    assert cli("delete", "-f", str(specs)).code == 0  # type: ignore[attr-defined]
    assert apply(cli, specs).code == 1  # type: ignore[attr-defined]


def test_a_retained_pool_is_defined_again_over_its_storage(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    """A pool's spec alone after `delete`: its directory (with virtctl's old record and
    the retained volumes) is found again, nothing asks for --adopt, nothing is lost."""
    write_specs(specs, image)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    assert cli("delete", "-f", str(specs)).code == 0  # type: ignore[attr-defined]
    (specs / "all.yaml").write_text((specs / "all.yaml").read_text().split("---")[0])
    again = apply(cli, specs)
    assert again.code == 0, again.out + again.err  # type: ignore[attr-defined]
    assert {"images/base.qcow2", "images/data.img"} <= set(sim().storage().volumes)
    assert "No changes" in apply(cli, specs).out  # type: ignore[attr-defined]


def test_someone_elses_volume_is_never_overwritten_or_deleted(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    """A volume virtctl did not make, in the directory of a pool it is about to define
    (left by another tool): refused without --adopt; adopted as it is, never replaced
    (not with --allow-recreate either), and its content never uploaded over."""
    other = sim()
    other.define(Kind.POOL, "<pool type='dir'><name>theirs</name>"
                            "<target><path>/srv/images</path></target></pool>")
    other.build_pool("theirs")
    other.start(Kind.POOL, "theirs")
    other.create_volume("theirs", "<volume><name>base.qcow2</name><capacity>64</capacity>"
                                  "<target><format type='raw'/></target></volume>")
    other.upload_volume("theirs", "base.qcow2", io.BytesIO(b"theirs!!"), 8)
    other.destroy(Kind.POOL, "theirs")
    other.undefine(Kind.POOL, "theirs")
    write_specs(specs, image, with_data=False)
    refused = apply(cli, specs)
    assert refused.code == 1 and "--adopt" in refused.err  # type: ignore[attr-defined]
    taken = apply(cli, specs, "--adopt", "--allow-recreate")
    assert "never deleted or overwritten" in taken.out  # type: ignore[attr-defined]
    assert data_of("images", "base.qcow2")[:8] == b"theirs!!"
    assert "images/base.qcow2" in sim().storage().volumes


def test_a_wrong_local_checksum_stops_the_run_before_the_pool_is_made(
        cli, specs: Path, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    write_specs(specs, image, sum_="sha256:" + "0" * 64)
    for verb in ("apply", "diff", "validate"):
        result = cli(verb, "-f", str(specs))
        assert result.code == 1, (verb, result.out)  # type: ignore[attr-defined]
        err = result.err  # type: ignore[attr-defined]
        assert f"{specs / 'all.yaml'}:" in err and "content.checksum" in err, err
        assert str(image) in err and "does not match its checksum" in err
    assert "images" not in sim().storage().pools  # nothing applied
    image.unlink()
    missing = apply(cli, specs)
    assert "cannot read content file" in missing.err  # type: ignore[attr-defined]
    assert "images" not in sim().storage().pools
    # A FIFO is refused at once (opened without waiting for a writer).
    os.mkfifo(image)
    fifo = cli("validate", "-f", str(specs))
    assert fifo.code == 1 and "not a regular file" in fifo.err  # type: ignore[attr-defined]


def test_a_local_file_is_hashed_once_per_run(
        cli, specs: Path, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Checked before the first action, the file's digest is carried to its upload; a
    file changed in between is hashed again as it is uploaded."""
    hashed: list[str | None] = []
    original = applystorage._Hashing.__init__

    def spy(self, inner, checksum):  # noqa: ANN001, ANN202
        hashed.append(checksum)
        original(self, inner, checksum)

    monkeypatch.setattr(applystorage._Hashing, "__init__", spy)
    write_specs(specs, image, with_data=False)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    assert hashed == [None]  # the upload took the digest found before the first action
    assert data_of("images", "base.qcow2") == image.read_bytes()


def test_a_backing_file_that_is_no_volume(cli, specs: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """libvirt takes any file of the host as a backing store; so does the sim. A
    missing one is refused before any action, at its spec's line."""
    base = tmp_path / "host-base.qcow2"
    base.write_bytes((b"QFI\xfb" + bytes(20) + (32 << 20).to_bytes(8, "big")).ljust(4096,
                                                                                    b"\0"))
    text = textwrap.dedent(f"""\
        kind: StoragePool
        name: images
        type: dir
        target: {{path: /srv/images}}
        ---
        kind: Volume
        pool: images
        name: top.qcow2
        format: qcow2
        backingStore: {{path: {base}, format: qcow2}}
        """)
    (specs / "all.yaml").write_text(text.replace(str(base), str(tmp_path / "gone.qcow2")))
    missing = apply(cli, specs)
    assert missing.code == 1  # type: ignore[attr-defined]
    assert f"{specs / 'all.yaml'}:5: backingStore.path" in missing.err  # type: ignore[attr-defined]
    assert "gone.qcow2 does not exist" in missing.err  # type: ignore[attr-defined]
    assert "images" not in sim().storage().pools
    (specs / "all.yaml").write_text(text)
    made = apply(cli, specs)
    assert made.code == 0, made.out + made.err  # type: ignore[attr-defined]
    top = sim().storage().volumes["images/top.qcow2"]
    assert top.capacity == 32 << 20 and f"<path>{base}</path>" in top.xml
    assert "No changes" in apply(cli, specs).out  # type: ignore[attr-defined]


def test_a_stopped_pool_starts_again_with_its_volumes_still_virtctls(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    """Someone stopped a pool virtctl manages: its volumes cannot be listed until it
    runs, yet its record (read from its directory) still names them: the apply starts
    it and creates nothing over them (it used to plan creates that failed)."""
    write_specs(specs, image, data_size="1MiB")
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    sim().upload_volume("images", "data.img", io.BytesIO(b"precious"), 8)
    sim().destroy(Kind.POOL, "images")
    again = apply(cli, specs)
    assert again.code == 0, again.out + again.err  # type: ignore[attr-defined]
    assert "create-volume" not in again.out  # type: ignore[attr-defined]
    assert sim().storage().pools["images"].active
    assert data_of("images", "data.img")[:8] == b"precious"
    assert "No changes" in apply(cli, specs).out  # type: ignore[attr-defined]


def test_a_pool_defined_over_a_deleted_pools_directory_is_not_virtctls(
        cli, specs: Path, image: Path) -> None:  # noqa: ANN001
    """`delete` undefines a pool and keeps its directory, state volume included. A pool
    someone defines over that directory later must not look like virtctl's: naming it
    needs --adopt, and --prune leaves it alone."""
    write_specs(specs, image, with_data=False)
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    deleted = cli("delete", "-f", str(specs))
    assert deleted.code == 0, deleted.out + deleted.err  # type: ignore[attr-defined]
    other = sim()
    other.define(Kind.POOL, "<pool type='dir'><name>theirs</name>"
                            "<target><path>/srv/images</path></target></pool>")
    other.start(Kind.POOL, "theirs")
    (specs / "all.yaml").write_text(textwrap.dedent("""\
        kind: StoragePool
        name: theirs
        type: dir
        target: {path: /srv/images}
        """))
    named = cli("diff", "-f", str(specs))
    assert named.code == 1 and "not managed by virtctl" in named.err  # type: ignore[attr-defined]
    (specs / "all.yaml").write_text(textwrap.dedent("""\
        kind: StoragePool
        name: elsewhere
        type: dir
        target: {path: /srv/elsewhere}
        """))
    pruned = apply(cli, specs, "--prune")
    assert pruned.code == 0, pruned.out + pruned.err  # type: ignore[attr-defined]
    assert "theirs" not in pruned.out  # type: ignore[attr-defined]
    assert sim().storage().pools["theirs"].active


def test_where_the_host_cannot_tell_the_create_is_refused_with_adopt_named(
        cli, specs: Path, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """A remote host's pool directory cannot be looked at before the first action
    (pool_files says None): libvirt's "exists already" then comes at the create, which
    names --adopt; the volume is never created over."""
    write_specs(specs, image, data_size="1MiB")
    assert apply(cli, specs).code == 0  # type: ignore[attr-defined]
    sim().upload_volume("images", "data.img", io.BytesIO(b"precious"), 8)
    assert cli("delete", "-f", str(specs)).code == 0  # type: ignore[attr-defined]
    monkeypatch.setattr(SimDriver, "pool_files", lambda self, xml: None)
    again = apply(cli, specs)
    assert again.code == 1  # type: ignore[attr-defined]
    assert "data.img exists already" in again.out and "--adopt" in again.out  # type: ignore[attr-defined]
    assert data_of("images", "data.img")[:8] == b"precious"
