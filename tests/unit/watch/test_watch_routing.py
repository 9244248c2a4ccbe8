"""Routing watched specs to their hosts: `connect:`, `kind: Hosts` names, per-file isolation."""

from __future__ import annotations

import pytest

from virtctl.errors import Source, SpecError
from virtctl.model import HostAlias
from virtctl.reconciler.load.load import load_text
from virtctl.watch.routing import Routed, route, settle_hosts
from virtctl.watch.specs import Aliases, Scan, Specs

DEFAULT = "sim:///default"


def domain(name: str, connect: str | None = None, memory: int = 64) -> str:
    line = f"connect: {connect}\n" if connect else ""
    return (f"---\nkind: Domain\nname: {name}\ntype: kvm\nmemory: {memory}MiB\n"
            f"os: {{type: hvm, arch: x86_64}}\n{line}")


def specs(file: str, *docs: str) -> Specs:
    return tuple(load_text("".join(docs), source=file))


def hosts(file: str, **uris: str) -> Aliases:
    return tuple(HostAlias(n, u, Source(file, 1, f"hosts.{n}")) for n, u in uris.items())


def broken(file: str) -> tuple[SpecError, ...]:
    return (SpecError("malformed YAML", source=Source(file, 1)),)


def placed(routed: Routed) -> dict[str, list[tuple[str, str | None]]]:
    return {f: sorted((s.name, s.connect) for s in chosen)
            for f, chosen in routed.chosen.items() if chosen}


def routed_last_good(scan: Scan, aliases: dict[str, Aliases]) -> dict[str, Specs]:
    return dict(route(scan, {}, aliases, default=DEFAULT).chosen)


H = {"h.yaml": hosts("h.yaml", a="sim:///a", b="sim:///b")}
GOOD = Scan({"h.yaml": (), "x.yaml": specs("x.yaml", domain("web", "a"), domain("db"))},
            hosts=H)


@pytest.mark.parametrize(
    ("scan", "last_good", "last_hosts", "want", "want_broken"),
    [
        pytest.param(GOOD, {}, {},
                     {"x.yaml": [("db", DEFAULT), ("web", "sim:///a")]}, [],
                     id="alias-and-default"),
        pytest.param(Scan({"x.yaml": specs("x.yaml", domain("web", "sim:///c"))}), {}, {},
                     {"x.yaml": [("web", "sim:///c")]}, [], id="uri-as-given"),
        pytest.param(Scan({"x.yaml": specs("x.yaml", domain("web", "nowhere"))}), {}, {},
                     {}, ["x.yaml"], id="unknown-name-breaks-the-file"),
        pytest.param(Scan({"h.yaml": (), "x.yaml": specs("x.yaml", domain("web", "b"))},
                          hosts=H),
                     routed_last_good(GOOD, H), H,
                     {"x.yaml": [("web", "sim:///b")]}, [],
                     id="a-valid-edit-moves-the-spec"),
        pytest.param(Scan({"h.yaml": (), "x.yaml": specs("x.yaml", domain("web", "nowhere"))},
                          hosts=H),
                     routed_last_good(GOOD, H), H,
                     {"x.yaml": [("db", DEFAULT), ("web", "sim:///a")]}, ["x.yaml"],
                     id="broken-routing-keeps-last-good"),
        pytest.param(Scan({"x.yaml": specs("x.yaml", domain("web", "a"))},
                          {"h.yaml": broken("h.yaml")}),
                     {}, H, {"x.yaml": [("web", "sim:///a")]}, ["h.yaml"],
                     id="broken-hosts-file-keeps-its-names"),
        pytest.param(Scan({"h.yaml": (), "x.yaml": specs("x.yaml", domain("web")),
                           "y.yaml": specs("y.yaml", domain("web", DEFAULT))}, hosts=H),
                     {"x.yaml": ()}, H, {"x.yaml": [("web", DEFAULT)]}, ["y.yaml"],
                     id="clash-on-one-host-blames-the-new-file"),
        # Names are unique per host (issue 24): one name on two hosts is two objects.
        pytest.param(Scan({"h.yaml": (), "x.yaml": specs("x.yaml", domain("web")),
                           "y.yaml": specs("y.yaml", domain("web", "b"))}, hosts=H),
                     {"x.yaml": ()}, H,
                     {"x.yaml": [("web", DEFAULT)], "y.yaml": [("web", "sim:///b")]}, [],
                     id="one-name-on-two-hosts"),
    ],
)
def test_route_places_each_spec_on_its_host(
    scan: Scan, last_good: dict[str, Specs], last_hosts: dict[str, Aliases],
    want: dict[str, list[tuple[str, str]]], want_broken: list[str],
) -> None:
    routed = route(scan, last_good, last_hosts, default=DEFAULT)
    assert placed(routed) == want
    assert sorted(routed.broken) == want_broken


def test_unknown_host_names_the_file_line_and_field() -> None:
    scan = Scan({"x.yaml": specs("x.yaml", domain("web", "nowhere"))})
    (error,) = route(scan, {}, {}, default=DEFAULT).broken["x.yaml"]
    assert error.source is not None and error.source.path == "connect"
    assert "'nowhere' is neither a URI nor a host named" in error.message


@pytest.mark.parametrize(
    ("scan", "want"),
    [
        pytest.param(GOOD, ("sim:///a", "sim:///b", DEFAULT), id="specs-and-named-hosts"),
        pytest.param(Scan({}), (DEFAULT,), id="nothing-declared-default-host"),
        pytest.param(Scan({"x.yaml": specs("x.yaml", domain("web", "sim:///c"))}),
                     ("sim:///c",), id="no-spec-on-the-default-host"),
    ],
)
def test_targets(scan: Scan, want: tuple[str, ...]) -> None:
    assert route(scan, {}, {}, default=DEFAULT).targets(DEFAULT) == want


def test_scan_for_one_host_holds_its_share_and_every_broken_file() -> None:
    scan = Scan({"x.yaml": GOOD.parsed["x.yaml"], "h.yaml": ()}, {"z.yaml": broken("z.yaml")},
                hosts=H)
    share = route(scan, {}, {}, default=DEFAULT).scan_for("sim:///a")
    assert {f: [s.name for s in found] for f, found in share.parsed.items()} == {
        "h.yaml": [], "x.yaml": ["web"]}
    assert list(share.errors) == ["z.yaml"]


def test_a_host_named_twice_differently_blames_the_edited_file() -> None:
    last = {"h.yaml": hosts("h.yaml", a="sim:///a")}
    scan = Scan({"h.yaml": (), "g.yaml": ()},
                hosts={**last, "g.yaml": hosts("g.yaml", a="sim:///elsewhere")})
    standing, errors = settle_hosts(scan, last)
    assert standing == last
    assert list(errors) == ["g.yaml"]
    assert "host 'a' is already named sim:///a" in errors["g.yaml"][0].message
