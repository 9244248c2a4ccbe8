"""specs/examples/: valid against our schema and libvirt's, lossless, and applicable
together on the embedded simulator (unique names, uuids and MACs; known networks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from lxml import etree

from virtctl.converters.yaml.xmlmap import canonical
from virtctl.converters.yaml.yamlxml import (
    domain_from_xml,
    domain_to_xml,
    network_from_xml,
    network_to_xml,
)
from virtctl.metadata import pop_runtime
from virtctl.xmlutil import parse

EXAMPLES = Path(__file__).parent.parent.parent.parent / "specs" / "examples"
SCHEMA = json.loads(resources.files("virtctl").joinpath("schemas/spec.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
RUNTIME = {"apiVersion", "state", "autostart", "active"}


def _objects() -> Iterator[tuple[str, etree._Element, dict[str, Any] | None]]:
    """(id, XML root without runtime metadata, YAML document or None) per object."""
    for path in sorted(EXAMPLES.iterdir()):
        if path.suffix == ".xml":
            root = parse(path.read_bytes(), source=str(path))
            pop_runtime(root)
            yield path.name, root, None
        elif path.suffix in (".yaml", ".yml"):
            for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
                root = domain_to_xml(doc) if doc["kind"] == "Domain" else network_to_xml(doc)
                yield f"{path.name}#{i}", root, doc


OBJECTS = list(_objects())
IDS = [name for name, _, _ in OBJECTS]


def _from_xml(root: etree._Element) -> dict[str, Any]:
    return domain_from_xml(root) if root.tag == "domain" else network_from_xml(root)


def test_examples_are_half_yaml_half_xml() -> None:
    suffixes = [p.suffix for p in EXAMPLES.iterdir()]
    assert suffixes.count(".xml") == suffixes.count(".yaml") > 0


@pytest.mark.parametrize(("name", "root", "doc"), OBJECTS, ids=IDS)
def test_example_is_valid_libvirt_xml(
    name: str, root: etree._Element, doc: Any, libvirt_relaxng: Callable[[str], etree.RelaxNG]
) -> None:
    schema = libvirt_relaxng(str(root.tag))
    assert schema.validate(root), schema.error_log.last_error


@pytest.mark.parametrize(("name", "root", "doc"), OBJECTS, ids=IDS)
def test_example_converts_losslessly(name: str, root: etree._Element, doc: Any) -> None:
    model = _from_xml(root)
    VALIDATOR.validate(model)
    assert "extraXML" not in model and "extraDevices" not in model, "example not fully modelled"
    back = domain_to_xml(model) if root.tag == "domain" else network_to_xml(model)
    assert canonical(back) == canonical(root)
    if doc is not None:
        VALIDATOR.validate(doc)
        assert model == {k: v for k, v in doc.items() if k not in RUNTIME}


def test_examples_fit_together_on_the_simulator() -> None:
    names, uuids, macs, networks_used = [], [], [], set()
    network_names = set()
    for _, root, _ in OBJECTS:
        names.append((root.tag, root.findtext("name")))
        uuids.extend(u.text for u in root.findall("uuid"))
        macs.extend(m.get("address", "").lower() for m in root.iter("mac"))
        if root.tag == "network":
            network_names.add(root.findtext("name"))
            continue
        assert root.get("type") in ("xen", "kvm", "qemu")
        assert root.findtext("os/type") != "hvm" or root.find("os/type").get("arch") in (
            None, "x86_64", "i686")
        for source in root.iterfind("devices/interface[@type='network']/source"):
            networks_used.add(source.get("network"))
    assert len(names) == len(set(names))
    assert len(uuids) == len(set(uuids))
    assert len(macs) == len(set(macs))
    assert networks_used <= network_names
    assert {"example-nat", "example-isolated"} <= network_names


def test_examples_cover_every_interface_type_and_lifecycle_action() -> None:
    domains = [root for _, root, _ in OBJECTS if root.tag == "domain"]
    kinds = {i.get("type") for d in domains for i in d.iter("interface")}
    assert {"user", "network", "bridge", "ethernet", "mcast", "server", "client"} <= kinds
    actions = {e.text for d in domains for tag in ("on_poweroff", "on_reboot", "on_crash")
               for e in d.iter(tag)}
    assert {"destroy", "restart", "preserve", "rename-restart"} <= actions
    types = {(d.get("type"), d.findtext("os/type")) for d in domains}
    assert {("xen", "linux"), ("xen", "hvm"), ("kvm", "hvm"), ("qemu", "hvm")} <= types
