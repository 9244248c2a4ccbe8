"""cloud-init NoCloud seeds: golden cases, an independent reading of the images, and
the instance-id rules.

Cases are tests/data/cloudinit/<case>.yaml, render_seed's keyword arguments (the input
of truth), with <case>.files (the seed's files, each under a `==> name <==` line, for
review) and <case>.iso (the image). `--regenerate-output` rewrites both from the current
output; review the .files diff before committing. The images are read back with bsdtar
and isoinfo, which fail the tests in CI when missing (see test_iso9660.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.converters.isotools import run, tool
import yaml

from virtctl.converters.cloudinit.seed import render_seed, seed_digest, seed_files
from virtctl.model import VolumeContent

DATA = Path(__file__).resolve().parents[2] / "data" / "cloudinit"
CASES = sorted(p.stem for p in DATA.glob("*.yaml"))




def arguments(case: str) -> dict[str, Any]:
    doc = yaml.safe_load((DATA / f"{case}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def as_text(files: dict[str, bytes]) -> str:
    return "".join(f"==> {name} <==\n{content.decode()}" for name, content in files.items())


def test_cases_are_discovered() -> None:
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES)
def test_seed_files_match_golden(case: str, regenerate: bool) -> None:
    produced = as_text(seed_files(**arguments(case)))
    expected = DATA / f"{case}.files"
    if regenerate:
        expected.write_text(produced)
    assert produced == expected.read_text()


@pytest.mark.parametrize("case", CASES)
def test_seed_image_matches_golden(case: str, regenerate: bool) -> None:
    produced = render_seed(**arguments(case))
    expected = DATA / f"{case}.iso"
    if regenerate:
        expected.write_bytes(produced)
    assert produced == expected.read_bytes()


@pytest.mark.parametrize("case", CASES)
def test_golden_image_reads_back(case: str, tmp_path: Path) -> None:
    """bsdtar extracts exactly the seed's files; isoinfo finds the `cidata` label."""
    image = DATA / f"{case}.iso"
    run(tool("bsdtar"), "-xf", str(image), "-C", str(tmp_path))
    extracted = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert extracted == seed_files(**arguments(case))
    info = run(tool("isoinfo"), "-d", "-i", str(image)).decode()
    assert "Volume id: cidata" in info
    joliet = run(tool("isoinfo"), "-f", "-J", "-i", str(image)).decode().split()
    assert sorted(joliet) == sorted("/" + name for name in extracted)


# ---- documents ----

USER = {"users": [{"name": "ops", "ssh_authorized_keys": ["ssh-ed25519 AAAA ops@x"]}],
        "write_files": [{"path": "/etc/motd", "content": "line one\nline two\n"}]}


def test_mappings_are_yaml_and_cloud_config() -> None:
    network = {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
    files = seed_files(user_data=USER, network_config=network,
                       vendor_data={"timezone": "UTC"}, hostname="web1")
    assert list(files) == ["meta-data", "network-config", "user-data", "vendor-data"]
    assert files["user-data"].startswith(b"#cloud-config\n")
    assert files["vendor-data"].startswith(b"#cloud-config\n")
    assert yaml.safe_load(files["user-data"]) == USER
    assert b"content: |\n    line one\n    line two\n" in files["user-data"]
    assert yaml.safe_load(files["network-config"]) == network
    assert not files["network-config"].startswith(b"#")
    meta = yaml.safe_load(files["meta-data"])
    assert list(meta) == ["instance-id", "local-hostname"]
    assert meta["local-hostname"] == "web1"


def test_text_is_written_as_is() -> None:
    script = "#!/bin/sh\necho 'héllo'  \n"
    files = seed_files(user_data=script, meta_data="instance-id: a\n",
                       network_config="version: 1\n")
    assert files == {"meta-data": b"instance-id: a\n",
                     "network-config": b"version: 1\n",
                     "user-data": script.encode()}


def test_optional_files_are_left_out() -> None:
    assert list(seed_files(user_data="#cloud-config\n")) == ["meta-data", "user-data"]


# ---- instance-id and determinism ----

def instance_id(**kwargs: Any) -> str:
    return str(yaml.safe_load(seed_files(**kwargs)["meta-data"])["instance-id"])


def test_same_input_same_image_and_digest() -> None:
    once = render_seed(user_data=USER, hostname="web1")
    assert render_seed(user_data=USER, hostname="web1") == once
    assert seed_digest(user_data=USER, hostname="web1") == VolumeContent(data=once).checksum


@pytest.mark.parametrize("change", [
    pytest.param({"user_data": {**USER, "timezone": "UTC"}}, id="user-data"),
    pytest.param({"hostname": "web2"}, id="hostname"),
    pytest.param({"meta_data": {"public-keys": ["k"]}}, id="meta-data"),
    pytest.param({"network_config": {"version": 2}}, id="network-config"),
    pytest.param({"vendor_data": "#cloud-config\n"}, id="vendor-data"),
])
def test_any_content_change_changes_the_instance_id(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {"user_data": USER, "hostname": "web1"}
    assert instance_id(**base).startswith("iid-")
    changed = {**base, **change}
    assert instance_id(**changed) != instance_id(**base)
    assert seed_digest(**changed) != seed_digest(**base)


def test_a_given_instance_id_wins() -> None:
    assert instance_id(user_data=USER, instance_id="gen-3") == "gen-3"
    assert instance_id(user_data={}, instance_id="gen-3") == "gen-3"
    assert instance_id(user_data=USER, meta_data={"instance-id": "m-1"}) == "m-1"
    meta = seed_files(user_data=USER, meta_data={"instance-id": "m-1", "x": 1},
                      hostname="h", instance_id="m-1")["meta-data"]
    assert meta == b"instance-id: m-1\nx: 1\nlocal-hostname: h\n"


def test_meta_data_key_order_keeps_the_derived_id_first() -> None:
    meta = seed_files(user_data=USER, meta_data={"zone": "a"}, hostname="h")["meta-data"]
    assert list(yaml.safe_load(meta)) == ["instance-id", "zone", "local-hostname"]


# ---- refusals ----

@pytest.mark.parametrize("kwargs", [
    pytest.param({"meta_data": "instance-id: a\n", "hostname": "h"}, id="text-and-hostname"),
    pytest.param({"meta_data": "instance-id: a\n", "instance_id": "b"}, id="text-and-id"),
    pytest.param({"meta_data": {"instance-id": "a"}, "instance_id": "b"}, id="two-ids"),
    pytest.param({"meta_data": {"local-hostname": "a"}, "hostname": "b"}, id="two-names"),
    pytest.param({"hostname": ""}, id="empty-hostname"),
    pytest.param({"meta_data": {"when": object()}}, id="not-yaml"),
])
def test_contradictions_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        seed_files(user_data=USER, **kwargs)


@pytest.mark.parametrize("kwargs", [
    pytest.param({"user_data": b"#cloud-config\n"}, id="bytes-user-data"),
    pytest.param({"user_data": USER, "meta_data": ["instance-id"]}, id="list-meta-data"),
    pytest.param({"user_data": USER, "network_config": 2}, id="int-network-config"),
])
def test_wrong_types_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        seed_files(**kwargs)
