"""Reading the ownership mark from a definition's text gives what a full parse gives."""

from __future__ import annotations

import pytest

from virtctl.metadata import owner_from_text, read_owner, set_owner
from virtctl.model import LastApplied, Ownership
from virtctl.xmlutil import parse, tostring

BASE = ("<domain type='kvm'><name>web</name><memory>1</memory>{meta}"
        "<devices><disk type='file'/></devices></domain>")
MARK = Ownership(spec_hash="sha256:ab", source="specs/web.yaml", commit="abc123",
                 last_applied=LastApplied("eJzLSM3JyQcABiwCFQ==", state="running",
                                          autostart=True))


def marked(pretty: bool) -> str:
    root = parse(BASE.format(meta=""))
    set_owner(root, MARK)
    return tostring(root, pretty=pretty)


@pytest.mark.parametrize(
    "xml",
    [
        pytest.param(marked(True), id="pretty"),
        pytest.param(marked(False), id="compact"),
        pytest.param(BASE.format(meta=""), id="unmanaged"),
        pytest.param(BASE.format(meta="<metadata><app:x xmlns:app='urn:a'>owner</app:x>"
                                      "</metadata>"), id="other-metadata"),
        pytest.param(BASE.format(
            meta="<metadata xmlns:v='https://virtctl.dev/xmlns/1'><v:owner spec-hash='h'/>"
                 "</metadata>"), id="prefix-declared-on-metadata"),
        pytest.param(BASE.format(
            meta="<metadata><vc:owner xmlns:vc='https://virtctl.dev/xmlns/1' "
                 "spec-hash='h2' source='s'/></metadata>"), id="self-closing-other-prefix"),
        pytest.param(BASE.format(
            meta='<metadata><vc:owner xmlns:vc="https://virtctl.dev/xmlns/1" '
                 'spec-hash="h3"><vc:last-applied encoding="zlib+base64" state="shutoff">'
                 "eJzLSM3JyQcABiwCFQ==</vc:last-applied></vc:owner></metadata>"),
            id="double-quotes-with-record"),
        pytest.param(BASE.format(
            meta="<metadata><virtctl:owner xmlns:virtctl='https://virtctl.dev/xmlns/1' "
                 "spec-hash='h' source='a&amp;b &quot;c&quot; &#233;'/></metadata>"),
            id="escaped-attribute"),
        pytest.param(BASE.format(
            meta="<metadata><virtctl:owner xmlns:virtctl='https://virtctl.dev/xmlns/1' "
                 "spec-hash='h'><virtctl:last-applied encoding='gzip'>eJz</virtctl:last-applied>"
                 "</virtctl:owner></metadata>"), id="unknown-record-encoding"),
        pytest.param(BASE.format(
            meta="<metadata><virtctl:owner xmlns:virtctl='https://virtctl.dev/xmlns/1' "
                 "spec-hash='h'><virtctl:future/><virtctl:last-applied encoding="
                 "'zlib+base64'>eJzLSM3JyQcABiwCFQ==</virtctl:last-applied>"
                 "</virtctl:owner></metadata>"), id="unknown-child"),
    ],
)
def test_text_and_tree_agree(xml: str) -> None:
    assert owner_from_text(xml) == read_owner(parse(xml))


def test_the_mark_round_trips() -> None:
    assert owner_from_text(marked(True)) == MARK
