"""Each key of the storage YAML model (pools, volumes, volume disks): the XML it writes,
and that reading that XML gives it back; the semantic errors with field paths; the
runtime element `virtctl convert` carries; byte sizes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from virtctl.converters.convert import convert
from virtctl.converters.sizes import format_bytes, parse_bytes
from virtctl.converters.yaml.xmlmap import canonical
from virtctl.converters.yaml.yaml_volume import backing_volume, runtime_attrs, runtime_keys
from virtctl.converters.yaml.yamlxml import (
    domain_from_xml,
    domain_to_xml,
    pool_from_xml,
    pool_to_xml,
    volume_from_xml,
    volume_to_xml,
)
from virtctl.errors import SpecError
from virtctl.xmlutil import parse

POOL = {"kind": "StoragePool", "name": "p1", "type": "dir", "target": {"path": "/srv/p1"}}
VOLUME = {"kind": "Volume", "name": "v1", "capacity": "1GiB"}

POOL_KEYS = [
    pytest.param({"uuid": "3e3fce45-4f53-4fa7-bb32-11f34168b82b"},
                 "<uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>", id="uuid"),
    pytest.param({"target": {"path": "/srv/p1"}}, "<target><path>/srv/p1</path></target>",
                 id="target-path"),
    pytest.param({"target": {"path": "/srv/p1", "permissions": {
        "mode": "0711", "owner": 0, "group": -1, "label": "virt_image_t"}}},
                 "<target><path>/srv/p1</path><permissions><mode>0711</mode><owner>0</owner>"
                 "<group>-1</group><label>virt_image_t</label></permissions></target>",
                 id="target-permissions"),
    pytest.param({"source": {}}, "<source/>", id="source-empty"),
    pytest.param({"type": "netfs", "source": {"host": {"name": "nfs1", "port": 2049},
                                              "dir": "/exports", "format": "nfs",
                                              "protocolVersion": 3}},
                 "<source><host name='nfs1' port='2049'/><dir path='/exports'/>"
                 "<format type='nfs'/><protocol ver='3'/></source>", id="source-netfs"),
    pytest.param({"type": "logical", "source": {"name": "vg0", "device": ["/dev/sdb"],
                                                "format": "lvm2"}},
                 "<source><device path='/dev/sdb'/><name>vg0</name><format type='lvm2'/>"
                 "</source>", id="source-logical"),
    pytest.param({"type": "iscsi", "source": {
        "host": {"name": "san"}, "device": ["iqn.2013-06.com.example:t"],
        "initiator": "iqn.2013-06.com.example:i",
        "auth": {"type": "chap", "username": "u", "secret": {"uuid": "abc"}}}},
                 "<source><host name='san'/><device path='iqn.2013-06.com.example:t'/>"
                 "<initiator><iqn name='iqn.2013-06.com.example:i'/></initiator>"
                 "<auth type='chap' username='u'><secret uuid='abc'/></auth></source>",
                 id="source-iscsi"),
    pytest.param({"extraXML": ['<features><cow state="no"/></features>']},
                 "<features><cow state='no'/></features>", id="extraXML"),
]


def _element(root: Any, snippet: str) -> Any:
    expected = parse(snippet)
    found = root.find(expected.tag)
    assert found is not None, f"<{expected.tag}> missing"
    return found, expected


@pytest.mark.parametrize(("fragment", "snippet"), POOL_KEYS)
def test_pool_key_writes_xml_and_reads_back(fragment: dict[str, Any], snippet: str) -> None:
    doc = {**POOL, **fragment}
    root = pool_to_xml(doc)
    assert root.get("type") == doc["type"]
    found, expected = _element(root, snippet)
    assert canonical(found) == canonical(expected)
    assert pool_from_xml(root) == doc


VOLUME_KEYS = [
    pytest.param({"capacity": "20GiB"}, "<capacity unit='bytes'>21474836480</capacity>",
                 id="capacity"),
    pytest.param({"capacity": 1000}, "<capacity unit='bytes'>1000</capacity>",
                 id="capacity-bytes"),
    pytest.param({"allocation": 0}, "<allocation unit='bytes'>0</allocation>", id="allocation"),
    pytest.param({"format": "qcow2"}, "<target><format type='qcow2'/></target>", id="format"),
    pytest.param({"permissions": {"mode": "0600", "owner": 107}},
                 "<target><permissions><mode>0600</mode><owner>107</owner></permissions>"
                 "</target>", id="permissions"),
    pytest.param({"backingStore": {"path": "/srv/base.qcow2", "format": "qcow2"}},
                 "<backingStore><path>/srv/base.qcow2</path><format type='qcow2'/>"
                 "</backingStore>", id="backingStore-path"),
    pytest.param({"backingStore": {"volume": "base.qcow2", "format": "qcow2"}},
                 "<backingStore><path>virtctl-volume:base.qcow2</path>"
                 "<format type='qcow2'/></backingStore>", id="backingStore-volume"),
    pytest.param({"backingStore": {"volume": "base.raw"}},
                 "<backingStore><path>virtctl-volume:base.raw</path></backingStore>",
                 id="backingStore-volume-no-format"),
    pytest.param({"extraXML": ["<key>/srv/v1</key>"]}, "<key>/srv/v1</key>", id="extraXML"),
]


@pytest.mark.parametrize(("fragment", "snippet"), VOLUME_KEYS)
def test_volume_key_writes_xml_and_reads_back(fragment: dict[str, Any], snippet: str) -> None:
    doc = {**VOLUME, **fragment}
    root = volume_to_xml(doc)
    found, expected = _element(root, snippet)
    assert canonical(found) == canonical(expected)
    assert volume_from_xml(root) == doc


def test_volume_type_attribute() -> None:
    root = volume_to_xml({**VOLUME, "type": "block"})
    assert root.get("type") == "block"
    assert volume_from_xml(root)["type"] == "block"


def test_backing_volume_names_the_volume_or_nothing() -> None:
    overlay = volume_to_xml({**VOLUME, "backingStore": {"volume": "base"}})
    assert backing_volume(overlay) == "base"
    assert backing_volume(volume_to_xml({**VOLUME, "backingStore": {"path": "/b"}})) is None
    assert backing_volume(volume_to_xml(VOLUME)) is None


def test_volume_sizes_in_other_units_read_as_bytes() -> None:
    root = parse("<volume><name>v</name><capacity unit='G'>2</capacity>"
                 "<allocation>4096</allocation></volume>")
    doc = volume_from_xml(root)
    assert (doc["capacity"], doc["allocation"]) == ("2GiB", "4KiB")
    again = volume_to_xml(doc)
    assert again.findtext("capacity") == str(2 * 1024**3)


def test_pool_read_only_sizes_are_left_out() -> None:
    root = parse("<pool type='dir'><name>p</name><capacity unit='bytes'>10</capacity>"
                 "<allocation unit='bytes'>5</allocation><available unit='bytes'>5</available>"
                 "<source></source><target><path>/p</path></target></pool>")
    assert pool_from_xml(root) == {"kind": "StoragePool", "name": "p", "type": "dir",
                                   "source": {}, "target": {"path": "/p"}}


def test_unmodelled_pool_source_stays_verbatim() -> None:
    root = parse("<pool type='scsi'><name>p</name><source><adapter name='host0'/></source>"
                 "<target><path>/dev/disk/by-path</path></target></pool>")
    doc = pool_from_xml(root)
    assert "source" not in doc
    assert doc["extraXML"] == ['<source><adapter name="host0"/></source>']
    assert canonical(pool_to_xml(doc)) == canonical(root)


def test_volume_disk_key_writes_xml_and_reads_back() -> None:
    doc = {"kind": "Domain", "name": "d1", "type": "kvm", "disks": [
        {"type": "volume", "source": {"pool": "images", "volume": "web.qcow2"},
         "target": "vda", "bus": "virtio"}]}
    root = domain_to_xml(doc)
    found, expected = _element(root.find("devices"), (
        "<disk type='volume'><source pool='images' volume='web.qcow2'/>"
        "<target dev='vda' bus='virtio'/></disk>"))
    assert canonical(found) == canonical(expected)
    assert domain_from_xml(root) == doc


@pytest.mark.parametrize(
    ("convert_fn", "doc", "path"),
    [
        pytest.param(pool_to_xml, {**POOL, "target": {}}, "target.path", id="dir-needs-path"),
        pytest.param(pool_to_xml, {**POOL, "type": "netfs", "source": {"dir": "/e"}},
                     "source.host", id="netfs-needs-host"),
        pytest.param(pool_to_xml, {**POOL, "type": "iscsi", "source": {"host": {"name": "s"}}},
                     "source.device", id="iscsi-needs-device"),
        pytest.param(pool_to_xml, {**POOL, "type": "logical", "source": {"format": "lvm2"}},
                     "source.name", id="logical-needs-vg"),
        pytest.param(pool_to_xml, {**POOL, "extraXML": ["<capacity>1</capacity>"]},
                     "extraXML[0]", id="pool-capacity-read-only"),
        pytest.param(volume_to_xml, {**VOLUME, "backingStore": {"volume": "v1"}},
                     "backingStore.volume", id="own-backing-store"),
        pytest.param(volume_to_xml, {**VOLUME, "allocation": "2GiB"}, "allocation",
                     id="allocation-above-capacity"),
        pytest.param(volume_to_xml, {**VOLUME, "capacity": "lots"}, "capacity",
                     id="bad-capacity"),
        pytest.param(domain_to_xml, {"kind": "Domain", "name": "d", "type": "kvm",
                                     "disks": [{"type": "volume", "source": "/a"}]},
                     "disks[0].source", id="volume-disk-needs-pool-and-volume"),
        pytest.param(domain_to_xml, {"kind": "Domain", "name": "d", "type": "kvm",
                                     "disks": [{"source": {"pool": "p", "volume": "v"}}]},
                     "disks[0].source", id="pool-source-needs-type-volume"),
    ],
)
def test_storage_semantic_errors_name_the_field(convert_fn: Any, doc: dict[str, Any],
                                                path: str) -> None:
    with pytest.raises(SpecError) as caught:
        convert_fn(doc)
    assert caught.value.source is not None
    assert caught.value.source.path == path


def test_runtime_keys_are_ignored_by_the_definition() -> None:
    plain = volume_to_xml(VOLUME)
    with_runtime = volume_to_xml({**VOLUME, "pool": "images", "deletePolicy": "delete",
                                  "content": {"file": "a.img"}, "connect": "sim:///lab"})
    assert canonical(plain) == canonical(with_runtime)
    pool = pool_to_xml({**POOL, "active": False, "autostart": True, "build": False})
    assert canonical(pool) == canonical(pool_to_xml(POOL))


@pytest.mark.parametrize(
    ("tag", "keys", "attrs"),
    [
        pytest.param("pool", {"active": False, "autostart": True, "build": False,
                              "updatePolicy": "recreate", "connect": "lab"},
                     {"active": "no", "autostart": "yes", "build": "no",
                      "update-policy": "recreate", "connect": "lab"}, id="pool"),
        pytest.param("volume", {"pool": "images", "deletePolicy": "delete",
                                "content": {"url": "https://x/y", "checksum": "sha256:ab"}},
                     {"pool": "images", "delete-policy": "delete",
                      "content-url": "https://x/y", "checksum": "sha256:ab"}, id="volume"),
        pytest.param("volume", {"pool": "images", "content": {"file": "seed.img"}},
                     {"pool": "images", "content-file": "seed.img"}, id="volume-file"),
    ],
)
def test_runtime_keys_and_attributes_convert_both_ways(
    tag: str, keys: dict[str, Any], attrs: dict[str, str]
) -> None:
    assert runtime_attrs(tag, keys) == attrs
    assert runtime_keys(tag, attrs) == keys


SHA = "sha256:" + "ab" * 32
STORAGE_YAML = [
    f"""kind: Volume
name: web.qcow2
pool: images
capacity: 20GiB
format: qcow2
backingStore:
  volume: base.qcow2
  format: qcow2
content:
  url: https://example.org/web.qcow2
  checksum: {SHA}
deletePolicy: delete
""",
    """kind: StoragePool
name: images
type: dir
target:
  path: /srv/images
active: false
autostart: true
build: false
""",
]


@pytest.mark.parametrize("text", STORAGE_YAML, ids=["volume", "pool"])
def test_convert_yaml_to_xml_and_back_keeps_runtime_keys(text: str) -> None:
    xml = convert(text, src="yaml", dst="xml", source="s.yaml").text
    assert "virtctl:runtime" in xml
    back = convert(xml, src="xml", dst="yaml", source="s.xml").text
    assert back == text
    assert yaml.safe_load(back) == yaml.safe_load(text)


def test_convert_refuses_storage_to_xen() -> None:
    with pytest.raises(SpecError):
        convert(STORAGE_YAML[1], src="yaml", dst="xl", source="s.yaml")


@pytest.mark.parametrize(
    ("given", "count"),
    [("20GiB", 20 * 1024**3), (1000, 1000), ("1000", 1000), ("2KB", 2000), ("3 bytes", 3),
     ("1M", 1024**2)],
)
def test_parse_bytes(given: int | str, count: int) -> None:
    assert parse_bytes(given, path="capacity") == count


def test_parse_bytes_refuses_nonsense() -> None:
    for bad in ("lots", -1, "1.5G", True):
        with pytest.raises(SpecError):
            parse_bytes(bad, path="capacity")  # type: ignore[arg-type]


@pytest.mark.parametrize(("count", "text"), [(0, 0), (1000, 1000), (1024, "1KiB"),
                                             (20 * 1024**3, "20GiB"), (1536, 1536),
                                             (3 * 1024, "3KiB")])
def test_format_bytes(count: int, text: str | int) -> None:
    assert format_bytes(count) == text
