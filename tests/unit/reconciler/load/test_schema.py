"""The shipped JSON Schema: valid documents pass, bad ones fail at the right path."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

SCHEMA = json.loads(resources.files("virtctl").joinpath("schemas/spec.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

DOMAIN = {"kind": "Domain", "name": "d1", "type": "kvm"}
NETWORK = {"kind": "Network", "name": "n1"}
POOL = {"kind": "StoragePool", "name": "p1", "type": "dir", "target": {"path": "/srv/p1"}}
VOLUME = {"kind": "Volume", "name": "v1", "pool": "p1", "capacity": "1GiB"}
SHA256 = "sha256:" + "0" * 64


def errors(doc: dict[str, Any]) -> list[tuple[list[Any], str]]:
    return [(list(e.absolute_path), e.validator) for e in VALIDATOR.iter_errors(doc)]


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(DOMAIN, id="minimal-domain"),
        pytest.param(NETWORK, id="minimal-network"),
        pytest.param({**DOMAIN, "apiVersion": "virtctl/v1", "state": "paused",
                      "autostart": True, "memory": "1G", "currentMemory": 524288},
                     id="domain-runtime-and-sizes"),
        pytest.param({**NETWORK, "active": False, "autostart": True}, id="network-runtime"),
        pytest.param({**DOMAIN, "features": {"hap": False, "pae": True}}, id="feature-false"),
        pytest.param(POOL, id="minimal-pool"),
        pytest.param({**POOL, "active": False, "autostart": True, "build": False,
                      "updatePolicy": "recreate", "connect": "lab"}, id="pool-runtime"),
        pytest.param(VOLUME, id="minimal-volume"),
        pytest.param({**VOLUME, "capacity": 1073741824, "allocation": 0, "format": "qcow2",
                      "backingStore": {"volume": "base", "format": "qcow2"},
                      "content": {"url": "https://x/y", "checksum": SHA256},
                      "deletePolicy": "delete"}, id="volume-everything"),
        pytest.param({**VOLUME, "content": {"file": "a.img", "checksum": "sha512:" + "f" * 128}},
                     id="volume-file-sha512"),
        pytest.param({**DOMAIN, "disks": [{"type": "volume",
                                           "source": {"pool": "p", "volume": "v"}}]},
                     id="volume-disk"),
    ],
)
def test_valid_documents_pass(doc: dict[str, Any]) -> None:
    assert errors(doc) == []


@pytest.mark.parametrize(
    ("doc", "path", "validator"),
    [
        pytest.param({"name": "x"}, [], "required", id="missing-kind"),
        pytest.param({"kind": "Pool", "name": "x"}, ["kind"], "enum", id="unknown-kind"),
        pytest.param({**DOMAIN, "colour": "red"}, [], "additionalProperties",
                     id="unknown-top-level-field"),
        pytest.param({**DOMAIN, "disks": [{"target": "vda", "size": 1}]}, ["disks", 0],
                     "additionalProperties", id="unknown-disk-field"),
        pytest.param({**DOMAIN, "vcpus": "two"}, ["vcpus"], "oneOf", id="vcpus-wrong-type"),
        pytest.param({**DOMAIN, "memory": "1.5GiB"}, ["memory"], "pattern", id="bad-size"),
        pytest.param({**DOMAIN, "memory": -1}, ["memory"], "minimum", id="negative-size"),
        pytest.param({**DOMAIN, "state": "stopped"}, ["state"], "enum", id="bad-state"),
        pytest.param({**DOMAIN, "autostart": "yes"}, ["autostart"], "type",
                     id="autostart-not-bool"),
        pytest.param({**DOMAIN, "type": "virtualbox"}, ["type"], "enum", id="bad-domain-type"),
        pytest.param({**DOMAIN, "onCrash": "explode"}, ["onCrash"], "enum",
                     id="bad-lifecycle"),
        pytest.param({**DOMAIN, "onPoweroff": "coredump-destroy"}, ["onPoweroff"], "enum",
                     id="coredump-only-on-crash"),
        pytest.param({**DOMAIN, "interfaces": [{"type": "network"}]}, ["interfaces", 0],
                     "required", id="network-interface-needs-source"),
        pytest.param({**DOMAIN, "interfaces": [{"type": "network", "source": {"bridge": "b"}}]},
                     ["interfaces", 0, "source"], "required",
                     id="network-interface-needs-source-network"),
        pytest.param({**DOMAIN, "interfaces": [{"type": "user", "mac": 41135076001}]},
                     ["interfaces", 0, "mac"], "type", id="mac-read-as-sexagesimal-int"),
        pytest.param({**DOMAIN, "disks": [{"device": "tape"}]}, ["disks", 0, "device"], "enum",
                     id="bad-disk-device"),
        pytest.param({**DOMAIN, "features": {"pae": False}}, ["features", "pae"], "const",
                     id="flag-feature-false"),
        pytest.param({**DOMAIN, "os": {"boot": ["usb"]}}, ["os", "boot", 0], "enum",
                     id="bad-boot-device"),
        pytest.param({**DOMAIN, "extraXML": "<cpu/>"}, ["extraXML"], "type",
                     id="extra-xml-not-a-list"),
        pytest.param({**NETWORK, "state": "running"}, [], "additionalProperties",
                     id="domain-runtime-key-on-network"),
        pytest.param({**NETWORK, "forward": {"mode": "tunnel"}}, ["forward", "mode"], "enum",
                     id="bad-forward-mode"),
        pytest.param({**NETWORK, "bridge": {"stp": "on"}}, ["bridge", "stp"], "type",
                     id="stp-not-bool"),
        pytest.param({**NETWORK, "ips": [{"address": "10.0.0.1", "netmask": "255.0.0.0",
                                          "prefix": 8}]}, ["ips", 0], "not",
                     id="netmask-and-prefix"),
        pytest.param({**NETWORK, "active": "yes"}, ["active"], "type", id="active-not-bool"),
        pytest.param({**POOL, "capacity": 1}, [], "additionalProperties",
                     id="pool-capacity-is-read-only"),
        pytest.param({"kind": "StoragePool", "name": "p"}, [], "required", id="pool-needs-type"),
        pytest.param({**POOL, "type": "tape"}, ["type"], "enum", id="bad-pool-type"),
        pytest.param({**POOL, "source": {"host": {"port": 1}}}, ["source", "host"], "required",
                     id="pool-host-needs-name"),
        pytest.param({**VOLUME, "pool": None}, ["pool"], "type", id="volume-pool-null"),
        pytest.param({"kind": "Volume", "name": "v"}, [], "required", id="volume-needs-pool"),
        pytest.param({**VOLUME, "capacity": "1.5G"}, ["capacity"], "pattern",
                     id="bad-capacity"),
        pytest.param({**VOLUME, "content": {"url": "https://x"}}, ["content"],
                     "dependentRequired", id="url-needs-checksum"),
        pytest.param({**VOLUME, "content": {"file": "a", "checksum": "md5:00"}},
                     ["content", "checksum"], "pattern", id="bad-checksum"),
        pytest.param({**VOLUME, "content": {"file": "a", "url": "https://x",
                                            "checksum": SHA256}}, ["content"], "oneOf",
                     id="file-and-url"),
        pytest.param({**VOLUME, "backingStore": {"format": "qcow2"}}, ["backingStore"], "oneOf",
                     id="backing-needs-volume-or-path"),
        pytest.param({**VOLUME, "deletePolicy": "shred"}, ["deletePolicy"], "enum",
                     id="bad-delete-policy"),
        pytest.param({**VOLUME, "name": "a/b"}, ["name"], "pattern", id="slash-in-volume-name"),
    ],
)
def test_bad_documents_fail_at_the_field(
    doc: dict[str, Any], path: list[Any], validator: str
) -> None:
    assert (path, validator) in errors(doc)


def test_every_object_schema_forbids_unknown_fields() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                # A record forbids unknown fields; a map (no "properties", values typed by
                # "additionalProperties", names by "propertyNames") has no fixed fields.
                if "properties" in node or "additionalProperties" not in node:
                    assert node.get("additionalProperties") is False, where
                else:
                    assert isinstance(node["additionalProperties"], dict), where
                    assert "propertyNames" in node, where
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for name, definition in SCHEMA["$defs"].items():
        walk(definition, f"$defs.{name}")


def test_editor_metadata_present() -> None:
    assert SCHEMA["title"] and SCHEMA["description"]
    assert SCHEMA["$defs"]["domain"]["description"]
    assert SCHEMA["$defs"]["network"]["description"]
    assert SCHEMA["$defs"]["storagePool"]["description"]
    assert SCHEMA["$defs"]["volume"]["description"]
