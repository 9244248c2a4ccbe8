"""The `convert` dispatcher: every --from/--to pair goes through domain XML."""

from __future__ import annotations

import pytest
import yaml

from virtctl.converters.convert import FORMATS, convert
from virtctl.errors import SpecError

XM = "name = 'g'\nmemory = 256\nvcpus = 2\ndisk = ['phy:/dev/vg/g,xvda,w']\n"


@pytest.mark.parametrize("dst", FORMATS)
def test_xm_converts_to_every_format(dst: str) -> None:
    result = convert(XM, src="xm", dst=dst, source="g.cfg")
    assert "g" in result.text
    back = convert(result.text, src=dst, dst="xml", source="out")
    assert back.text == convert(XM, src="xm", dst="xml", source="g.cfg").text


def test_xml_to_yaml_to_xml_is_stable() -> None:
    xml = convert(XM, src="xm", dst="xml", source="g.cfg").text
    doc = convert(xml, src="xml", dst="yaml", source="g.xml").text
    assert yaml.safe_load(doc)["kind"] == "Domain"
    again = convert(doc, src="yaml", dst="yaml", source="g.yaml").text
    assert again == doc


def test_xm_to_xl_rewrites_disks_in_xl_syntax() -> None:
    text = convert(XM, src="xm", dst="xl", source="g.cfg").text
    assert "backendtype=phy" in text and "vdev=xvda" in text


def test_warnings_travel_through_convert() -> None:
    result = convert(XM + "cpu_weight = 5\n", src="xm", dst="xml", source="g.cfg")
    assert result.warnings == ("cpu_weight (line 5): no domain XML equivalent; ignored",)


@pytest.mark.parametrize(("text", "src", "dst"), [
    pytest.param(XM, "xm", "json", id="unknown-dst"),
    pytest.param(XM, "ini", "xml", id="unknown-src"),
    pytest.param("a: [", "yaml", "xml", id="bad-yaml"),
    pytest.param("- 1\n", "yaml", "xml", id="yaml-not-mapping"),
    pytest.param("<network><name>n</name></network>", "xml", "xm", id="network-to-xm"),
    pytest.param("<domain", "xml", "yaml", id="bad-xml"),
])
def test_bad_input_is_a_spec_error(text: str, src: str, dst: str) -> None:
    with pytest.raises(SpecError):
        convert(text, src=src, dst=dst, source="in")
