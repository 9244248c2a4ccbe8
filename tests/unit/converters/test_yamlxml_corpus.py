"""Conformance over libvirt's own test XML in ../shared/corpus (when present):
XML -> YAML -> XML keeps every element, and the YAML is schema-valid and stable."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from virtctl.converters.yaml.xmlmap import canonical
from virtctl.converters.yaml.yamlxml import (
    domain_from_xml,
    domain_to_xml,
    network_from_xml,
    network_to_xml,
)
from virtctl.xmlutil import parse

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus"
FILES = sorted(CORPUS.glob("*/*.xml")) if CORPUS.is_dir() else []
SCHEMA = json.loads(resources.files("virtctl").joinpath("schemas/spec.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.skipif(not FILES, reason=f"reference corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_corpus_xml_round_trips_through_yaml(path: Path) -> None:
    root = parse(path.read_bytes(), source=str(path))
    is_domain = root.tag == "domain"
    model = domain_from_xml(root) if is_domain else network_from_xml(root)
    VALIDATOR.validate(model)
    back = domain_to_xml(model) if is_domain else network_to_xml(model)
    assert canonical(back) == canonical(root)
    assert (domain_from_xml(back) if is_domain else network_from_xml(back)) == model
