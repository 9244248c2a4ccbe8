"""A domain's `cloudInit:` block: a seed volume in the named pool (virtctl's own content,
deleted with the domain) and a CD-ROM for it in the domain; documents inline or from
files beside the spec; schema errors point at the block."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from virtctl.converters.cloudinit.iso9660 import SECTOR
from virtctl.errors import SpecErrors
from virtctl.model import DeletePolicy
from virtctl.reconciler.load.load import load_specs
from virtctl.xmlutil import parse

GUEST = textwrap.dedent("""\
    kind: Domain
    name: web
    type: kvm
    memory: 512MiB
    os: {type: hvm, machine: MACHINE}
    cloudInit:
      pool: images
      hostname: web
      userData: USERDATA
    """)


def load(tmp_path: Path, *, machine: str = "pc", user: str = "{users: [{name: ops}]}"):  # noqa: ANN201
    path = tmp_path / "web.yaml"
    path.write_text(GUEST.replace("MACHINE", machine).replace("USERDATA", user))
    return load_specs([str(path)])


def test_a_seed_volume_and_an_ide_cdrom_for_a_pc_guest(tmp_path: Path) -> None:
    desired = load(tmp_path)
    seed = desired.volumes["images/web-cidata.iso"]
    assert seed.delete_policy is DeletePolicy.DELETE and seed.content is not None
    image = seed.content.data
    assert image is not None and len(image) % SECTOR == 0 and b"cidata" in image[:40000]
    assert seed.content.checksum and seed.content.checksum.startswith("sha256:")
    disk = parse(desired.domains["web"].xml).find("devices/disk[@device='cdrom']")
    assert disk is not None and disk.get("type") == "volume"
    assert disk.find("source").attrib == {"pool": "images", "volume": "web-cidata.iso"}
    assert disk.find("target").attrib == {"dev": "hdd", "bus": "ide"}
    assert disk.find("readonly") is not None


def test_q35_gets_sata_and_a_new_user_gets_a_new_seed(tmp_path: Path) -> None:
    first = load(tmp_path).volumes["images/web-cidata.iso"].content
    q35 = load(tmp_path, machine="q35")
    disk = parse(q35.domains["web"].xml).find("devices/disk[@device='cdrom']/target")
    assert disk is not None and disk.attrib == {"dev": "sdz", "bus": "sata"}
    other = load(tmp_path, user="{users: [{name: admin}]}").volumes["images/web-cidata.iso"]
    assert first is not None and other.content is not None
    assert other.content.checksum != first.checksum


def test_user_data_from_a_file_beside_the_spec(tmp_path: Path) -> None:
    (tmp_path / "user-data.yaml").write_text("#cloud-config\npackages: [nginx]\n")
    desired = load(tmp_path, user="{file: user-data.yaml}")
    content = desired.volumes["images/web-cidata.iso"].content
    assert content is not None and content.data is not None
    assert b"packages: [nginx]" in content.data
    with pytest.raises(SpecErrors) as missing:
        load(tmp_path, user="{file: nowhere.yaml}")
    assert "cannot read" in str(missing.value)


def test_the_block_is_checked_by_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(GUEST.replace("MACHINE", "pc").replace("  pool: images\n", "")
                    .replace("USERDATA", "hello"))
    with pytest.raises(SpecErrors) as caught:
        load_specs([str(path)])
    error = caught.value.errors[0]
    assert "'pool' is a required property" in error.message
    assert error.source is not None and error.source.line == 6


def test_a_volume_disk_without_a_driver_type_gets_its_volumes_format() -> None:
    """QEMU would open a qcow2 volume as raw: the guest would see the image file."""
    example = Path(__file__).resolve().parents[4] / "specs" / "cloud"
    desired = load_specs([str(example)])
    root = parse(desired.domains["cloud-web-1"].xml)
    vda = root.find("devices/disk[@device='disk']/driver")
    assert vda is not None and vda.attrib == {"name": "qemu", "type": "qcow2"}
    seed = root.find("devices/disk[@device='cdrom']/driver")
    assert seed is not None and seed.get("type") == "raw"
