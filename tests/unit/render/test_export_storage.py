"""`virtctl export` and `virtctl get` for storage, the pure part: what a pool and a volume
spec keep of libvirt's XML, backing stores by name or path, cloud-init seeds left out,
--managed-only, file names, and the rows of `get pools` / `get volumes`."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from virtctl.render import export_storage, storage as render_storage
from virtctl.errors import SpecError
from virtctl.render.export import ExportedSpec, ExportFormat, export_specs, write_specs
from virtctl.model import (
    DeletePolicy,
    DomainState,
    Kind,
    Live,
    LiveDomain,
    LivePool,
    LiveVolume,
    ObjectKey,
    PoolSpec,
    Storage,
    VolumeSpec,
)
from virtctl.reconciler.plan.identity import derived_uuid
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.plan.plan_storage import view
from virtctl.reconciler.storage_record import ObjectRecord, PoolRecord, record_text

# As libvirt 9.0 reports a dir pool and a qcow2 overlay made with virsh.
POOL_XML = """<pool type='dir'>
  <name>images</name>
  <uuid>5ec1e649-aa03-40af-8dab-69742dace704</uuid>
  <capacity unit='bytes'>270553174016</capacity>
  <allocation unit='bytes'>24200474624</allocation>
  <available unit='bytes'>246352699392</available>
  <source>
  </source>
  <target>
    <path>/var/lib/images</path>
    <permissions><mode>0755</mode><owner>0</owner><group>0</group></permissions>
  </target>
</pool>"""


def vol_xml(name: str, *, backing: str | None = None, fmt: str = "qcow2",
            capacity: int = 64 << 20) -> str:
    chain = (f"<backingStore><path>{backing}</path><format type='qcow2'/><permissions>"
             "<mode>0600</mode></permissions><timestamps><mtime>1</mtime></timestamps>"
             "</backingStore>") if backing else ""
    return (f"<volume type='file'><name>{name}</name><key>/var/lib/images/{name}</key>"
            f"<capacity unit='bytes'>{capacity}</capacity>"
            "<allocation unit='bytes'>200704</allocation>"
            "<physical unit='bytes'>196616</physical><target>"
            f"<path>/var/lib/images/{name}</path><format type='{fmt}'/><permissions>"
            "<mode>0600</mode><owner>0</owner><group>0</group></permissions><timestamps>"
            "<atime>1.5</atime><mtime>1.5</mtime></timestamps><compat>1.1</compat>"
            f"<clusterSize unit='B'>65536</clusterSize><features/></target>{chain}</volume>")


def volume(name: str, **kwargs: object) -> LiveVolume:
    return LiveVolume(pool="images", name=name, xml=vol_xml(name, **kwargs),  # type: ignore[arg-type]
                      capacity=int(kwargs.get("capacity", 64 << 20)),  # type: ignore[call-overload]
                      allocation=200704)


def storage(*volumes: LiveVolume, record: PoolRecord | None = None,
            pool_xml: str = POOL_XML) -> Storage:
    pool = LivePool(name="images", uuid="5ec1e649-aa03-40af-8dab-69742dace704",
                    xml=pool_xml, active=True, autostart=True,
                    record=record_text(record) if record is not None else None)
    return Storage(pools={"images": pool}, volumes={f"images/{v.name}": v for v in volumes})


def only(specs: list[object], kind: type) -> Any:
    [spec] = specs
    assert isinstance(spec, kind)
    return spec


def test_a_volume_spec_keeps_what_its_creator_declared() -> None:
    found = view(storage(volume("base.qcow2"),
                         volume("web.qcow2", backing="/var/lib/images/base.qcow2")))
    doc = yaml.safe_load(export_storage.volume_text(found.storage.volumes["images/web.qcow2"],
                                                    found, xml=False))
    assert doc == {"kind": "Volume", "apiVersion": "virtctl/v1", "name": "web.qcow2",
                   "pool": "images", "capacity": "64MiB", "format": "qcow2",
                   "backingStore": {"volume": "base.qcow2", "format": "qcow2"}}


@pytest.mark.parametrize(("backing", "pool_path", "expected"), [
    pytest.param("/var/lib/images/base.qcow2", "/var/lib/images/", {"volume": "base.qcow2"},
                 id="pool-path-with-slash"),
    pytest.param("/var/lib/images/gone.qcow2", "/var/lib/images",
                 {"path": "/var/lib/images/gone.qcow2"}, id="no-such-volume-in-the-pool"),
    pytest.param("/srv/other/base.qcow2", "/var/lib/images",
                 {"path": "/srv/other/base.qcow2"}, id="elsewhere"),
    pytest.param("/var/lib/images/sub/base.qcow2", "/var/lib/images",
                 {"path": "/var/lib/images/sub/base.qcow2"}, id="below-the-pool"),
])
def test_a_backing_store_by_volume_only_when_it_is_one_of_the_pool(
        backing: str, pool_path: str, expected: dict[str, str]) -> None:
    pool_xml = POOL_XML.replace("<path>/var/lib/images</path>", f"<path>{pool_path}</path>")
    found = view(storage(volume("base.qcow2"), volume("web.qcow2", backing=backing),
                         pool_xml=pool_xml))
    root = export_storage.declared_volume(found.storage.volumes["images/web.qcow2"], found)
    path = root.findtext("backingStore/path")
    assert path == ("virtctl-volume:" + expected["volume"] if "volume" in expected
                    else expected["path"])


def test_a_volume_as_xml_loads_back_as_the_same_spec() -> None:
    record = PoolRecord(pool=ObjectRecord(spec_hash="x")).with_volume(
        "data.img", ObjectRecord(spec_hash="y", delete_policy=DeletePolicy.DELETE))
    found = view(storage(volume("data.img", fmt="raw", capacity=1537), record=record))
    vol = found.storage.volumes["images/data.img"]
    as_xml = export_storage.volume_text(vol, found, xml=True)
    as_yaml = export_storage.volume_text(vol, found, xml=False)
    assert yaml.safe_load(as_yaml)["deletePolicy"] == "delete"
    specs = [only(load_text(text, source=f"v.{ext}"), VolumeSpec)
             for text, ext in ((as_xml, "xml"), (as_yaml, "yaml"))]
    assert specs[0].key == specs[1].key == ObjectKey(Kind.VOLUME, "images/data.img")
    assert specs[0].delete_policy is specs[1].delete_policy is DeletePolicy.DELETE
    assert specs[0].xml == specs[1].xml
    assert "<key>" not in specs[0].xml and "allocation" not in specs[0].xml


def test_a_pool_spec_drops_the_sizes_libvirt_reports_and_nothing_else() -> None:
    found = view(storage())
    doc = yaml.safe_load(export_storage.pool_text(found.storage.pools["images"], xml=False))
    assert doc == {"kind": "StoragePool", "apiVersion": "virtctl/v1", "name": "images",
                   "type": "dir", "uuid": "5ec1e649-aa03-40af-8dab-69742dace704",
                   "active": True, "autostart": True,
                   "target": {"path": "/var/lib/images",
                              "permissions": {"mode": "0755", "owner": 0, "group": 0}}}
    xml = export_storage.pool_text(found.storage.pools["images"], xml=True)
    spec = only(load_text(xml, source="p.xml"), PoolSpec)
    assert (spec.active, spec.autostart) == (True, True)
    assert "capacity" not in spec.xml and "available" not in spec.xml


def guest(name: str, volume_name: str, *, device: str = "cdrom") -> LiveDomain:
    xml = (f"<domain type='kvm'><name>{name}</name><devices><disk type='volume' "
           f"device='{device}'><source pool='images' volume='{volume_name}'/>"
           "<target dev='hdd'/></disk></devices></domain>")
    return LiveDomain(name=name, uuid="u", xml=xml, state=DomainState.SHUTOFF)


@pytest.mark.parametrize(("domain", "seed"), [
    pytest.param(guest("web", "web-cidata.iso"), True, id="its-own-seed"),
    pytest.param(guest("db", "web-cidata.iso"), False, id="another-guests-name"),
    pytest.param(guest("web", "web-cidata.iso", device="disk"), False, id="not-a-cdrom"),
    pytest.param(None, False, id="no-guest"),
])
def test_cloud_init_seeds_are_left_out(domain: LiveDomain | None, seed: bool) -> None:
    host = storage(volume("web-cidata.iso", fmt="iso"), volume("data.img", fmt="raw"))
    live = Live(domains={domain.name: domain} if domain else {})
    names = [s.key.name for s in export_specs(live, storage=host) if s.key.kind is Kind.VOLUME]
    assert names == (["images/data.img"] if seed else
                     ["images/data.img", "images/web-cidata.iso"])


def test_managed_only_takes_recorded_volumes_and_pools_virtctl_made() -> None:
    record = PoolRecord(pool=ObjectRecord(spec_hash="x")).with_volume(
        "mine.img", ObjectRecord(spec_hash="y"))
    host = storage(volume("mine.img"), volume("theirs.img"), record=record)
    derived = derived_uuid("pool", "spare")
    pools = {**host.pools, "spare": LivePool(name="spare", uuid=derived, active=False,
                                             xml=POOL_XML.replace("images", "spare")),
             "other": LivePool(name="other", uuid="1" * 32, active=False,
                               xml=POOL_XML.replace("images", "other"))}
    host = Storage(pools=pools, volumes=host.volumes)
    keys = [str(s.key) for s in export_specs(Live(), storage=host, managed_only=True)]
    assert keys == ["pool/images", "pool/spare", "volume/images/mine.img"]
    every = [str(s.key) for s in export_specs(Live(), storage=host)]
    assert every == ["pool/images", "pool/other", "pool/spare", "volume/images/mine.img",
                     "volume/images/theirs.img"]


def test_volume_files_are_named_by_pool_and_volume_and_never_shared(tmp_path) -> None:  # type: ignore[no-untyped-def]
    one = ExportedSpec(ObjectKey(Kind.VOLUME, "a/b--c"), ExportFormat.YAML, "x: 1\n")
    two = ExportedSpec(ObjectKey(Kind.VOLUME, "a--b/c"), ExportFormat.YAML, "x: 2\n")
    assert one.filename == "volume-a--b--c.yaml" == two.filename
    with pytest.raises(SpecError, match="would both be written to volume-a--b--c.yaml"):
        write_specs(tmp_path / "out", [one, two])
    assert not (tmp_path / "out").exists()  # refused before anything was written
    assert [p.name for p in write_specs(tmp_path / "out", [one])] == ["volume-a--b--c.yaml"]


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"), (64 << 20, "64 MiB"),
    (270553174016, "252 GiB"), (None, None),
])
def test_sizes_for_people(count: int | None, text: str | None) -> None:
    assert render_storage.human(count) == text


def test_rows_say_managed_set_and_source() -> None:
    record = PoolRecord(pool=ObjectRecord(spec_hash="x", source="/specs/p.yaml",
                                          apply_set="lab")).with_volume(
        "mine.img", ObjectRecord(spec_hash="y", source="/specs/v.yaml", apply_set="lab",
                                 delete_policy=DeletePolicy.DELETE))
    host = storage(volume("mine.img", backing="/var/lib/images/theirs.img"),
                   volume("theirs.img", fmt="raw"), record=record)
    [pool] = render_storage.rows(host, Live(), "pools")
    assert (pool["managed"], pool["set"], pool["volumes"], pool["capacity"],
            pool["available"], pool["path"]) == (True, "lab", 2, 270553174016,
                                                 246352699392, "/var/lib/images")
    mine, theirs = render_storage.rows(host, Live(), "volumes")
    assert (mine["managed"], mine["set"], mine["source"], mine["deletePolicy"],
            mine["backing"], mine["format"]) == (
        True, "lab", "/specs/v.yaml", "delete", "/var/lib/images/theirs.img", "qcow2")
    assert (theirs["managed"], theirs["set"], theirs["deletePolicy"]) == (False, None, None)
    unreadable = Storage(pools={"images": LivePool(name="images", uuid="u", xml=POOL_XML,
                                                   active=True, record="not json")})
    [bad] = render_storage.rows(unreadable, Live(), "pools")
    assert bad["managed"] is False and "not JSON" in bad["recordError"]
