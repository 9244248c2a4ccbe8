"""xmlutil's helpers: children found in one pass as `find` finds them, <uuid> placement."""

from __future__ import annotations

import pytest

from virtctl.xmlutil import first_children, parse, set_uuid, tostring

TAGS = ("name", "uuid", "metadata", "devices", "title")


@pytest.mark.parametrize("xml", [
    pytest.param("<domain><name>a</name><uuid>u</uuid><devices/></domain>", id="plain"),
    pytest.param("<domain><name>first</name><name>second</name></domain>", id="repeated-tag"),
    pytest.param('<domain xmlns:x="urn:x"><x:name/><name>mine</name></domain>',
                 id="namespaced-look-alike"),
    pytest.param('<domain xmlns="urn:x"><name/></domain>', id="default-namespace"),
    pytest.param("<domain><devices><name>deep</name></devices></domain>", id="grandchild-only"),
    pytest.param("<domain/>", id="no-children"),
])
def test_first_children_finds_what_find_finds(xml: str) -> None:
    root = parse(xml)
    found = first_children(root, *TAGS)
    assert {t: found.get(t) for t in TAGS} == {t: root.find(t) for t in TAGS}


@pytest.mark.parametrize(("xml", "expected"), [
    pytest.param("<domain><name>a</name><memory>1</memory></domain>",
                 "<domain><name>a</name><uuid>U</uuid><memory>1</memory></domain>",
                 id="created-after-name"),
    pytest.param("<domain><title>t</title><name>a</name></domain>",
                 "<domain><title>t</title><name>a</name><uuid>U</uuid></domain>",
                 id="after-name-wherever-it-is"),
    pytest.param("<domain><memory>1</memory></domain>",
                 "<domain><uuid>U</uuid><memory>1</memory></domain>", id="first-without-name"),
    pytest.param("<domain><name>a</name><memory>1</memory><uuid> </uuid></domain>",
                 "<domain><name>a</name><memory>1</memory><uuid>U</uuid></domain>",
                 id="existing-element-kept-in-place"),
])
def test_set_uuid_places_the_uuid_where_libvirt_does(xml: str, expected: str) -> None:
    plain, given = parse(xml), parse(xml)
    set_uuid(plain, "U")
    set_uuid(given, "U", found=first_children(given, "uuid", "name"))
    assert tostring(plain, pretty=False) == tostring(given, pretty=False) == expected
