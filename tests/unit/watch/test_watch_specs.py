"""Per-file isolation in the watcher: which specs stand when a file breaks or clashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtctl.errors import Source, SpecError
from virtctl.model import Desired, DomainState, Kind, Live, LiveDomain, ObjectKey, Ownership
from virtctl.reconciler.plan.actions import Undefine
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.plan.plan import Plan
from virtctl.watch.loop import protect
from virtctl.watch.specs import Scan, Settled, Specs, SpecSet, settle


def domain_xml(name: str, memory: int = 64) -> str:
    return (f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>{memory}</memory>"
            "<os><type arch='x86_64'>hvm</type></os></domain>")


def specs(file: str, *names: str, memory: int = 64) -> Specs:
    return tuple(s for n in names for s in load_text(domain_xml(n, memory), source=file))


def broken(file: str) -> tuple[SpecError, ...]:
    return (SpecError("malformed XML", source=Source(file, 1)),)


def no_host_errors(desired: Desired) -> list[SpecError]:
    return []


def names(settled: Settled) -> dict[str, list[str]]:
    return {f: sorted(s.name for s in chosen) for f, chosen in settled.chosen.items() if chosen}


@pytest.mark.parametrize(
    ("scan", "last_good", "want", "want_broken"),
    [
        pytest.param(
            Scan({"a.xml": specs("a.xml", "a"), "b.xml": specs("b.xml", "b")}), {},
            {"a.xml": ["a"], "b.xml": ["b"]}, [], id="all-valid"),
        pytest.param(
            Scan({"a.xml": specs("a.xml", "a")}, {"b.xml": broken("b.xml")}),
            {"b.xml": specs("b.xml", "b")},
            {"a.xml": ["a"], "b.xml": ["b"]}, ["b.xml"], id="broken-file-keeps-last-good"),
        pytest.param(
            Scan({"a.xml": specs("a.xml", "a")}, {"b.xml": broken("b.xml")}), {},
            {"a.xml": ["a"]}, ["b.xml"], id="broken-file-without-last-good-declares-nothing"),
        pytest.param(
            Scan({"a.xml": specs("a.xml", "a"), "b.xml": specs("b.xml", "a")}),
            {"a.xml": specs("a.xml", "a"), "b.xml": specs("b.xml", "b")},
            {"a.xml": ["a"], "b.xml": ["b"]}, ["b.xml"], id="clash-blames-the-edited-file"),
        pytest.param(
            Scan({"a.xml": specs("a.xml", "b"), "b.xml": specs("b.xml", "b")}),
            {"a.xml": specs("a.xml", "a"), "b.xml": specs("b.xml", "b")},
            {"a.xml": ["a"], "b.xml": ["b"]}, ["a.xml"],
            id="clash-blames-the-edited-file-even-sorted-first"),
        pytest.param(
            Scan({"a.xml": specs("a.xml", "a")}, {"gone": broken("gone")}, ("gone",)),
            {"a.xml": specs("a.xml", "a"), "gone/c.xml": specs("gone/c.xml", "c")},
            {"a.xml": ["a"], "gone/c.xml": ["c"]}, ["gone"],
            id="unreadable-path-keeps-its-files-last-good"),
        pytest.param(
            Scan({"a.xml": specs("a.xml", "a")}), {"b.xml": specs("b.xml", "b")},
            {"a.xml": ["a"]}, [], id="deleted-file-declares-nothing"),
    ],
)
def test_settle_isolates_each_file(
    scan: Scan, last_good: dict[str, Specs], want: dict[str, list[str]], want_broken: list[str]
) -> None:
    settled = settle(scan, last_good, host_check=no_host_errors)
    assert names(settled) == want
    assert sorted(settled.broken) == want_broken


def test_a_file_failing_the_host_check_falls_back_to_its_last_good_specs() -> None:
    scan = Scan({"a.xml": specs("a.xml", "a"), "b.xml": specs("b.xml", "b2")})
    last_good = {"b.xml": specs("b.xml", "b")}

    def host_check(desired: Desired) -> list[SpecError]:
        if "b2" in desired.domains:
            return [SpecError("not managed", source=Source("b.xml", 1, "name"))]
        return []

    settled = settle(scan, last_good, host_check=host_check)
    assert names(settled) == {"a.xml": ["a"], "b.xml": ["b"]}
    assert [e.message for e in settled.broken["b.xml"]] == ["not managed"]


def test_spec_set_remembers_last_good_and_forgets_deleted_files(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(domain_xml("a"))
    (tmp_path / "b.xml").write_text(domain_xml("b"))
    spec_set = SpecSet([str(tmp_path)])
    spec_set.commit(settle(spec_set.read(), {}, host_check=no_host_errors))
    (tmp_path / "a.xml").write_text("<domain")
    settled = settle(spec_set.read(), spec_set.last_good, host_check=no_host_errors)
    assert sorted(settled.desired.domains) == ["a", "b"]
    assert list(settled.broken) == [str(tmp_path / "a.xml")]
    spec_set.commit(settled)
    (tmp_path / "b.xml").unlink()
    settled = settle(spec_set.read(), spec_set.last_good, host_check=no_host_errors)
    spec_set.commit(settled)
    assert sorted(settled.desired.domains) == ["a"]
    assert sorted(spec_set.last_good) == [str(tmp_path / "a.xml")]


def _managed(name: str, source: str) -> LiveDomain:
    return LiveDomain(name=name, uuid=f"00000000-0000-0000-0000-00000000000{len(name)}",
                      xml="<domain/>", state=DomainState.SHUTOFF,
                      owner=Ownership(spec_hash="x", source=source))


def test_protect_keeps_objects_owned_by_broken_files_from_pruning() -> None:
    live = Live(domains={"a": _managed("a", "s/a.xml"), "bb": _managed("bb", "s/b.xml")})
    planned = Plan(
        actions=(Undefine(kind=Kind.DOMAIN, name="a"), Undefine(kind=Kind.DOMAIN, name="bb")),
        deletes=frozenset({ObjectKey(Kind.DOMAIN, "a"), ObjectKey(Kind.DOMAIN, "bb")}),
    )
    settled = Settled(chosen={}, broken={"s/b.xml": broken("s/b.xml")})
    kept = protect(planned, live, settled)
    assert [a.name for a in kept.actions] == ["a"]
    assert kept.deletes == {ObjectKey(Kind.DOMAIN, "a")}
    assert kept.notes == ("domain/bb: not pruned, its spec file is invalid",)


def test_a_symlink_out_of_the_watched_directory_is_never_read(tmp_path: Path) -> None:
    watched, elsewhere = tmp_path / "specs", tmp_path / "elsewhere"
    watched.mkdir()
    elsewhere.mkdir()
    (watched / "a.xml").write_text(domain_xml("a"))
    (elsewhere / "secret.xml").write_text(domain_xml("secret"))
    spec_set = SpecSet([str(watched)])
    spec_set.commit(settle(spec_set.read(), {}, host_check=no_host_errors))
    (watched / "link.xml").symlink_to(elsewhere / "secret.xml")
    scan = spec_set.read()
    # The link alone is broken: the directory's other files are still read.
    (error,) = scan.errors[str(watched / "link.xml")]
    assert "a symlink to" in error.message and str(elsewhere / "secret.xml") in error.message
    assert scan.unreadable == ()
    settled = settle(scan, spec_set.last_good, host_check=no_host_errors)
    assert sorted(settled.desired.domains) == ["a"]  # no "secret"
