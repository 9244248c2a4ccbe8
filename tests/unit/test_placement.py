"""DomainSet placement (placement.py): stable (an instance living on one of the set's
hosts stays there; only a declared host moves it), round-robin by fewest instances,
by most free memory with a capacity check; and through load_specs with a facts reader,
the refusal naming file, line and field."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from virtctl.errors import SpecErrors
from virtctl.model import NodeInfo
from virtctl.reconciler.load.load import load_specs
from virtctl.reconciler.load.placement import MEMORY, ROUND_ROBIN, HostFacts, NoRoom, Want, place

GiB = 1024 * 1024


def wants(n: int, memory: int = 0) -> list[Want]:
    return [Want(f"web-{i:02}", memory_kib=memory) for i in range(1, n + 1)]


def living(**hosts: tuple[str, ...]) -> dict[str, HostFacts]:
    return {h: HostFacts(instances={"web": frozenset(names)}) for h, names in hosts.items()}


def test_without_facts_round_robin_is_by_index() -> None:
    assert place("web", ROUND_ROBIN, ["a", "b", "c"], wants(5), None) == {
        "web-01": "a", "web-02": "b", "web-03": "c", "web-04": "a", "web-05": "b"}


def test_adding_a_host_moves_no_existing_instance_and_new_ones_fill_it() -> None:
    facts = living(a=("web-01", "web-04"), b=("web-02", "web-05"), c=("web-03", "web-06"),
                   d=())
    six = {f"web-{i:02}": "abc"[(i - 1) % 3] for i in range(1, 7)}
    assert place("web", ROUND_ROBIN, ["a", "b", "c", "d"], wants(6), facts) == six
    # Without facts, the fourth host would have taken web-04: the facts are what keep it.
    assert place("web", ROUND_ROBIN, ["a", "b", "c", "d"], wants(6), None)["web-04"] == "d"
    eight = place("web", ROUND_ROBIN, ["a", "b", "c", "d"], wants(8), facts)
    assert eight == {**six, "web-07": "d", "web-08": "d"}


def test_a_declared_host_moves_an_instance_and_a_host_left_out_is_placed_again() -> None:
    facts = living(a=("web-01",), b=("web-02",))
    got = place("web", ROUND_ROBIN, ["a", "b"],
                [Want("web-01", pinned="b"), Want("web-02")], facts)
    assert got == {"web-01": "b", "web-02": "b"}
    # web-02 lives on b, which the set no longer lists: it is placed among a and c.
    got = place("web", ROUND_ROBIN, ["a", "c"], [Want("web-01"), Want("web-02")],
                {**facts, "c": HostFacts()})
    assert got == {"web-01": "a", "web-02": "c"}


def test_another_sets_guests_do_not_pin_this_sets_names() -> None:
    facts = {"a": HostFacts(), "b": HostFacts(instances={"db": frozenset({"web-01"})})}
    assert place("web", ROUND_ROBIN, ["a", "b"], wants(1), facts) == {"web-01": "a"}


def node(free_gib: int, total_gib: int = 64, cpus: int = 8) -> NodeInfo:
    return NodeInfo(memory_kib=total_gib * GiB, free_kib=free_gib * GiB, cpus=cpus)


def test_memory_placement_takes_the_most_free_host_and_counts_what_it_placed() -> None:
    facts = {"a": HostFacts(node=node(10)), "b": HostFacts(node=node(7)),
             "c": HostFacts(node=node(4))}
    got = place("web", MEMORY, ["a", "b", "c"], wants(4, memory=3 * GiB), facts)
    # a: 10 -> 7 (tie with b: the earlier host) -> b: 7 -> 4 -> a: 4 ... ties to the list
    assert got == {"web-01": "a", "web-02": "a", "web-03": "b", "web-04": "a"}


def test_memory_placement_keeps_existing_instances_where_they_live() -> None:
    facts = {"a": HostFacts(instances={"web": frozenset({"web-01"})}, node=node(1)),
             "b": HostFacts(node=node(30))}
    assert place("web", MEMORY, ["a", "b"], wants(2, memory=2 * GiB), facts) == {
        "web-01": "a", "web-02": "b"}


def test_memory_placement_refuses_when_nothing_fits() -> None:
    facts = {"a": HostFacts(node=node(3)), "b": HostFacts(node=node(5))}
    # web-01 b (5 -> 3), web-02 a (3, a tie: the earlier host; -> 1), web-03 b (-> 1)
    with pytest.raises(NoRoom, match=r"web-04 needs 2048 MiB .*most free memory: a, "
                       r"1024 MiB free of 65536 MiB"):
        place("web", MEMORY, ["a", "b"], wants(4, memory=2 * GiB), facts)
    many_cpus = [Want("web-01", memory_kib=GiB, vcpus=16)]
    with pytest.raises(NoRoom, match="16 vcpu"):
        place("web", MEMORY, ["a", "b"], many_cpus, facts)


SET = """\
kind: Hosts
hosts: {a: "sim:///a", b: "sim:///b"}
---
kind: DomainSet
name: web
replicas: 3
pattern: "web-{index}"
hosts: [a, b]
placement: memory
template:
  type: kvm
  memory: 2GiB
  description: "on {host}"
  os: {type: hvm, arch: x86_64}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "set.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def reader(facts: Mapping[str, HostFacts | str]):  # type: ignore[no-untyped-def]
    asked: list[Mapping[str, bool]] = []

    def read(hosts: Mapping[str, bool]) -> Mapping[str, HostFacts | str]:
        asked.append(dict(hosts))
        return facts

    return read, asked


def test_load_specs_places_with_the_facts_and_expands_placeholders_for_the_host(
        tmp_path: Path) -> None:
    read, asked = reader({"sim:///a": HostFacts(node=node(3)),
                          "sim:///b": HostFacts(node=node(6))})
    desired = load_specs([write(tmp_path, SET)], placement=read)
    assert asked == [{"sim:///a": True, "sim:///b": True}]  # memory: node facts asked
    hosts = {s.name: s.connect for s in desired.domains.values()}
    assert hosts == {"web-1": "b", "web-2": "b", "web-3": "a"}  # b 6 -> 4 -> 2, a 3
    assert "on b" in desired.domains["web-1"].xml and "on a" in desired.domains["web-3"].xml


def test_load_specs_refuses_with_file_line_and_field(tmp_path: Path) -> None:
    read, _ = reader({"sim:///a": HostFacts(node=node(3)),
                      "sim:///b": HostFacts(node=node(3))})
    path = write(tmp_path, SET)
    with pytest.raises(SpecErrors) as caught:
        load_specs([path], placement=read)
    error = caught.value.errors[0]
    assert error.source is not None
    assert (error.source.file, error.source.line, error.source.path) == (path, 9,
                                                                         "placement")
    assert "instance web-3 needs 2048 MiB" in error.message


def test_an_unreadable_host_refuses_the_set_that_places_on_it(tmp_path: Path) -> None:
    read, _ = reader({"sim:///a": HostFacts(node=node(30)), "sim:///b": "connection refused"})
    path = write(tmp_path, SET)
    with pytest.raises(SpecErrors) as caught:
        load_specs([path], placement=read)
    error = caught.value.errors[0]
    assert error.source is not None and error.source.path == "hosts[1]"
    assert "cannot read host 'b'" in error.message and "connection refused" in error.message


def test_round_robin_asks_no_node_facts_and_per_host_sets_ask_nothing(
        tmp_path: Path) -> None:
    text = SET.replace("placement: memory\n", "") + textwrap.dedent("""\
        ---
        kind: DomainSet
        name: mon
        perHost: true
        hosts: [a, b]
        template: {type: kvm, memory: 32MiB, os: {type: hvm, arch: x86_64}}
        """)
    read, asked = reader({"sim:///a": living(a=("web-2",))["a"], "sim:///b": HostFacts()})
    desired = load_specs([write(tmp_path, text)], placement=read)
    assert asked == [{"sim:///a": False, "sim:///b": False}]
    hosts = {k: s.connect for k, s in desired.domains.items() if k.startswith("web")}
    assert hosts == {"web-1": "b", "web-2": "a", "web-3": "a"}  # a: 1, b: 0 -> b; then a tie


@pytest.mark.parametrize(("extra", "path", "message"), [
    ("perHost: true\n", "placement", "does not apply to perHost"),
])
def test_placement_with_per_host_is_refused(tmp_path: Path, extra: str, path: str,
                                            message: str) -> None:
    text = SET.replace("replicas: 3\n", "").replace('pattern: "web-{index}"\n', extra)
    with pytest.raises(SpecErrors) as caught:
        load_specs([write(tmp_path, text)])
    error = caught.value.errors[0]
    assert error.source is not None and error.source.path == path
    assert message in error.message
