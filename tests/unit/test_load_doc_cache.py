"""A file read again after an edit loads again only the documents that changed (a fleet
change touching every host's file touches one document in each); a document that moved,
another file's copy, a broken one and one that reads other files are loaded afresh."""

from __future__ import annotations

from typing import Any

import pytest

from virtctl.errors import SpecError, SpecErrors
from virtctl.reconciler.load import load
from virtctl.reconciler.load.load import load_text


def domains(memories: list[int], *, head: str = "") -> str:
    return head + "".join(
        f"---\nkind: Domain\nname: vm{i}\ntype: kvm\nmemory: {m}MiB\n"
        f"os: {{type: hvm, arch: x86_64}}\nvcpus: 1\n" for i, m in enumerate(memories))


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the documents actually converted (the real conversion runs)."""
    names: list[str] = []
    real = load._specs_from_doc

    def counted(doc: Any, *args: Any) -> Any:
        names.append(str(doc.get("name")) if isinstance(doc, dict) else "?")
        return real(doc, *args)

    monkeypatch.setattr(load, "_specs_from_doc", counted)
    load._DOCS.clear()
    return names


def fresh(text: str, source: str) -> list[Any]:
    load._DOCS.clear()
    return load_text(text, source=source)


def described(specs: list[Any]) -> list[tuple[Any, ...]]:
    return [(s, s.source, s.lines) for s in specs]


def test_an_edit_loads_only_the_document_it_changed(built: list[str]) -> None:
    load_text(domains([64, 64, 64]), source="/specs/a.yaml")
    assert built == ["vm0", "vm1", "vm2"]
    edited = domains([64, 96, 64])
    again = load_text(edited, source="/specs/a.yaml")
    assert built[3:] == ["vm1"]
    assert described(again) == described(fresh(edited, "/specs/a.yaml"))
    assert "98304" in again[1].xml


def test_a_moved_document_or_another_files_copy_is_loaded_afresh(built: list[str]) -> None:
    load_text(domains([64, 64]), source="/specs/a.yaml")
    moved = domains([64, 64], head="# a comment moves every line down\n")
    again = load_text(moved, source="/specs/a.yaml")
    assert built[2:] == ["vm0", "vm1"]  # the line numbers in errors must follow
    assert [s.source.line for s in again] == [2, 9]
    assert described(again) == described(fresh(moved, "/specs/a.yaml"))
    del built[:]
    load_text(domains([64, 64]), source="/specs/b.yaml")
    assert built == ["vm0", "vm1"]


def test_broken_documents_and_ones_reading_other_files_are_never_reused(
        built: list[str]) -> None:
    broken = domains([64]).replace("vcpus: 1", "vcpus: many")
    for _ in range(2):
        with pytest.raises(SpecErrors):
            load_text(broken, source="/specs/a.yaml")
    assert built == ["vm0", "vm0"]
    volume = ("kind: Volume\nname: disk.qcow2\npool: default\ncapacity: 1GiB\n"
              "content: {file: image.raw}\n")
    for _ in range(2):
        load_text(volume, source="/specs/v.yaml")
    assert built[2:] == ["disk.qcow2", "disk.qcow2"]


def test_the_limits_are_checked_before_the_cache_key_walks_the_document(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key holds repr(doc), which walks the whole value: an alias bomb must be
    refused by the limits before that walk, or loading it hangs (issue 20's limits)."""

    class Walked:
        def __repr__(self) -> str:
            raise AssertionError("the document was walked before its limits were checked")

    text = "kind: Domain\nname: bomb\nmemory: 64MiB\n"
    doc = {"kind": "Domain", "name": "bomb", "memory": "64MiB", "x": Walked()}
    monkeypatch.setattr(load, "too_many_values", lambda value: True)
    with pytest.raises(SpecError, match="expands to more than"):
        load._specs_from_doc_cached(doc, "bomb.yaml", 0, 1, text)
