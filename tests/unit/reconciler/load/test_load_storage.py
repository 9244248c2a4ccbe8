"""Loading storage specs: YAML and XML pools and volumes become PoolSpec and VolumeSpec in
Desired; errors name file, line and field; hosts get their share; planning and the
watcher refuse them until the planner supports them (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtctl.errors import SpecError, SpecErrors
from virtctl.coord.hosts import group_by_host
from virtctl.model import DeletePolicy, Kind, VolumeContent, PoolSpec
from virtctl.reconciler.load.load import load_specs, load_text
from virtctl.watch.specs import SpecSet

SHA = "sha256:" + "AB" * 32
POOL_YAML = """kind: StoragePool
name: images
type: dir
target: {path: /srv/images}
"""
VOLUME_YAML = f"""kind: Volume
name: web.qcow2
pool: images
capacity: 20GiB
format: qcow2
backingStore: {{volume: base.qcow2, format: qcow2}}
---
kind: Volume
name: base.qcow2
pool: images
format: qcow2
content:
  url: https://example.org/base.qcow2
  checksum: "{SHA}"
---
kind: Volume
name: data.img
pool: images
capacity: 10GiB
format: raw
content: {{file: seed/data.img}}
deletePolicy: delete
"""


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def errors_of(paths: list[str]) -> list[SpecError]:
    with pytest.raises(SpecErrors) as caught:
        load_specs(paths)
    return caught.value.errors


def test_yaml_pool_and_volumes_load_with_defaults(tmp_path: Path) -> None:
    desired = load_specs([write(tmp_path, "pool.yaml", POOL_YAML),
                          write(tmp_path, "sub/vols.yaml", VOLUME_YAML)])
    pool = desired.pools["images"]
    assert (pool.active, pool.autostart, pool.build, pool.update_policy) == (
        True, False, True, None)
    assert pool.xml == ('<pool type="dir"><name>images</name><target><path>/srv/images'
                        '</path></target></pool>')
    assert sorted(desired.volumes) == ["images/base.qcow2", "images/data.img",
                                       "images/web.qcow2"]
    web = desired.volumes["images/web.qcow2"]
    assert web.key.kind is Kind.VOLUME and web.key.name == "images/web.qcow2"
    assert "<path>virtctl-volume:base.qcow2</path>" in web.xml
    assert web.delete_policy is DeletePolicy.RETAIN and web.content is None
    base = desired.volumes["images/base.qcow2"]
    assert base.content == VolumeContent(url="https://example.org/base.qcow2",
                                         checksum=SHA.lower())
    data = desired.volumes["images/data.img"]
    assert data.delete_policy is DeletePolicy.DELETE
    assert data.content == VolumeContent(file=str(tmp_path / "sub" / "seed" / "data.img"))
    assert data.source.line == 15  # its "---" line
    assert (len(desired.domains), len(desired.networks)) == (0, 0)


def test_xml_pool_and_volume_read_their_runtime_element_and_strip_it(tmp_path: Path) -> None:
    pool = write(tmp_path, "p.xml", """<pool type="dir">
  <name>images</name>
  <uuid>3E3FCE45-4F53-4FA7-BB32-11F34168B82B</uuid>
  <metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1" active="no"
    autostart="yes" build="no" update-policy="recreate" connect="sim:///lab"/></metadata>
  <target><path>/srv/images</path></target>
</pool>
""")
    volume = write(tmp_path, "v.xml", f"""<volume>
  <name>base.img</name>
  <metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1" pool="images"
    delete-policy="delete" content-file="base.img" checksum="{SHA}"/></metadata>
  <target><format type="raw"/></target>
</volume>
""")
    desired = load_specs([pool, volume])
    spec = desired.pools["images"]
    assert (spec.active, spec.autostart, spec.build, spec.update_policy, spec.connect) == (
        False, True, False, "recreate", "sim:///lab")
    assert spec.uuid == "3e3fce45-4f53-4fa7-bb32-11f34168b82b"
    assert "metadata" not in spec.xml and "virtctl" not in spec.xml
    vol = desired.volumes["images/base.img"]
    assert vol.delete_policy is DeletePolicy.DELETE
    assert vol.content == VolumeContent(file=str(tmp_path / "base.img"), checksum=SHA.lower())
    assert "metadata" not in vol.xml


def test_duplicates_across_files_name_both_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", POOL_YAML + "---\n" + VOLUME_YAML)
    b = write(tmp_path, "b.yaml", POOL_YAML + "---\n" + VOLUME_YAML.split("---")[0])
    found = [(e.source.file if e.source else "", e.message) for e in errors_of([a, b])]
    assert (b, f"duplicate storage pool name 'images' (first declared at {a}:1)") in found
    assert (b, f"duplicate volume 'images/web.qcow2' (first declared at {a}:5)") in found
    assert len(found) == 2


def test_same_volume_name_in_two_pools_is_fine(tmp_path: Path) -> None:
    other = VOLUME_YAML.split("---")[0].replace("pool: images", "pool: other")
    desired = load_specs([write(tmp_path, "a.yaml", VOLUME_YAML.split("---")[0] + "---\n"
                                + other)])
    assert sorted(desired.volumes) == ["images/web.qcow2", "other/web.qcow2"]


@pytest.mark.parametrize(
    ("text", "line", "path"),
    [
        pytest.param("kind: Volume\nname: v\npool: p\ncapacity: 1G\ncontent:\n"
                     "  url: https://x/y\n", 5, "content", id="url-needs-checksum"),
        pytest.param("kind: Volume\nname: v\npool: p\ncapacity: 1G\ncontent:\n"
                     "  file: a\n  checksum: sha256:abc\n", 7, "content.checksum",
                     id="bad-checksum"),
        pytest.param("kind: Volume\nname: v\npool: p\ncapacity: 1G\ncontent:\n"
                     "  url: ftp://x/y\n  checksum: " + SHA + "\n", 6, "content.url",
                     id="url-not-http"),
        pytest.param("kind: Volume\nname: v\ncapacity: 1G\n", 1, "(document)",
                     id="volume-needs-pool"),
        pytest.param("kind: Volume\nname: a/b\npool: p\ncapacity: 1G\n", 2, "name",
                     id="slash-in-name"),
        pytest.param("kind: Volume\nname: v\npool: p\ncapacity: 1G\ndeletePolicy: shred\n", 5,
                     "deletePolicy", id="bad-delete-policy"),
        pytest.param("kind: Volume\nname: v\npool: p\ncapacity: 1G\nbackingStore:\n"
                     "  volume: b\n  path: /b\n", 5, "backingStore", id="backing-both"),
        pytest.param("kind: StoragePool\nname: p\ntype: dir\ncapacity: 1G\n", 4, "capacity",
                     id="pool-capacity-refused"),
        pytest.param("kind: StoragePool\nname: p\ntype: tape\n", 3, "type",
                     id="bad-pool-type"),
        pytest.param("kind: StoragePool\nname: p\ntype: netfs\nsource:\n  host: nfs1\n", 5,
                     "source.host", id="host-not-a-mapping"),
        pytest.param("kind: StoragePool\nname: p\ntype: dir\ntarget:\n  path: /p\n"
                     "  permissions: {mode: 755}\n", 6, "target.permissions.mode",
                     id="mode-not-quoted"),
        pytest.param("kind: Domain\nname: d\ntype: kvm\ndisks:\n- type: volume\n"
                     "  source: {pool: p}\n", 6, "disks[0].source", id="volume-disk-source"),
    ],
)
def test_schema_errors_name_line_and_field(tmp_path: Path, text: str, line: int,
                                           path: str) -> None:
    errors = errors_of([write(tmp_path, "s.yaml", text)])
    assert (line, path) in [(e.source.line, e.source.path) for e in errors if e.source], errors


@pytest.mark.parametrize(
    ("text", "line", "path"),
    [
        pytest.param("kind: Volume\nname: v\npool: p\ncapacity: 1G\nbackingStore:\n"
                     "  volume: v\n", 6, "backingStore.volume", id="own-backing-store"),
        pytest.param("kind: Volume\nname: v\npool: p\nformat: raw\n", 1, "capacity",
                     id="needs-a-size"),
        pytest.param("kind: StoragePool\nname: p\ntype: dir\n", 1, "target.path",
                     id="dir-pool-needs-path"),
    ],
)
def test_load_errors_name_line_and_field(tmp_path: Path, text: str, line: int,
                                         path: str) -> None:
    errors = errors_of([write(tmp_path, "s.yaml", text)])
    assert [(e.source.line, e.source.path) for e in errors if e.source] == [(line, path)]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        pytest.param("<volume><name>v</name><capacity>1</capacity></volume>", "pool",
                     id="xml-volume-needs-pool"),
        pytest.param("<volume><name>v</name><metadata><virtctl:runtime "
                     "xmlns:virtctl='https://virtctl.dev/xmlns/1' pool='p'/></metadata>"
                     "<backingStore><path>virtctl-volume:v</path></backingStore></volume>",
                     "own backing store", id="xml-own-backing-store"),
        pytest.param("<volume><name>v</name><metadata><virtctl:runtime "
                     "xmlns:virtctl='https://virtctl.dev/xmlns/1' pool='p' "
                     "content-url='https://x'/></metadata><capacity>1</capacity></volume>",
                     "checksum", id="xml-url-needs-checksum"),
        pytest.param("<pool><name>p</name></pool>", "no type attribute", id="xml-pool-type"),
        pytest.param("<pool type='dir'><name>p</name><metadata><virtctl:runtime "
                     "xmlns:virtctl='https://virtctl.dev/xmlns/1' build='maybe'/></metadata>"
                     "</pool>", "yes or no", id="xml-bad-flag"),
    ],
)
def test_xml_storage_errors(xml: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_text(xml, source="s.xml")
    assert message in caught.value.message


def test_storage_files_are_not_spec_cached(tmp_path: Path) -> None:
    from virtctl.reconciler.speccache import SpecCache

    cache = SpecCache(tmp_path / "cache")
    text = VOLUME_YAML
    for folder in ("one", "two"):  # same bytes, different folders: different content files
        desired = load_specs([write(tmp_path, f"{folder}/v.yaml", text)], cache=cache)
        assert desired.volumes["images/data.img"].content == VolumeContent(
            file=str(tmp_path / folder / "seed" / "data.img"))


def test_group_by_host_splits_pools_and_volumes(tmp_path: Path) -> None:
    text = POOL_YAML + "connect: sim:///b\n---\n" + VOLUME_YAML.replace(
        "name: web.qcow2\n", "name: web.qcow2\nconnect: sim:///b\n")
    desired = load_specs([write(tmp_path, "s.yaml", text)])
    groups = group_by_host(desired, default_uri="sim:///a")
    assert sorted(groups) == ["sim:///a", "sim:///b"]
    assert list(groups["sim:///b"].pools) == ["images"]
    assert list(groups["sim:///b"].volumes) == ["images/web.qcow2"]
    assert groups["sim:///a"].pools == {}
    assert sorted(groups["sim:///a"].volumes) == ["images/base.qcow2", "images/data.img"]


def test_group_by_host_refuses_an_unknown_host_for_a_pool(tmp_path: Path) -> None:
    desired = load_specs([write(tmp_path, "s.yaml", POOL_YAML + "connect: nowhere\n")])
    with pytest.raises(SpecErrors) as caught:
        group_by_host(desired, default_uri="sim:///a")
    assert caught.value.errors[0].source is not None
    assert caught.value.errors[0].source.path == "connect"


def test_watch_reads_storage_files(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", POOL_YAML)
    scan = SpecSet([str(tmp_path)]).read()
    assert not scan.errors
    ((spec,),) = scan.parsed.values()
    assert isinstance(spec, PoolSpec) and spec.name == "images"
