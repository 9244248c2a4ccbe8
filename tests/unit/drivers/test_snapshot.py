"""A snapshot's fingerprint, the lazy tables drivers build, and the whole-host memo key:
equal only while every input that decides a plan is equal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from virtctl.drivers.snapshot import DomainRead, LazyTable, NetworkRead, fingerprint
from virtctl.errors import Source
from virtctl.model import Desired, DomainSpec, DomainState, Live, NetworkSpec
from virtctl.reconciler.memo import context_of, host_key
from virtctl.reconciler.plan.plan import Policy
from virtctl.reconciler.speccache import SyncMemo

WEB = DomainRead(name="web", uuid="00000000-0000-4000-8000-000000000001",
                 xml="<domain><name>web</name></domain>", state=DomainState.RUNNING,
                 autostart=False, persistent=True, id=3,
                 running_xml="<domain id='3'><name>web</name></domain>")
DB = DomainRead(name="db", uuid="00000000-0000-4000-8000-000000000002",
                xml="<domain><name>db</name></domain>", state=DomainState.SHUTOFF,
                autostart=True, persistent=True, id=None, running_xml=None)
NET = NetworkRead(name="lan", uuid="00000000-0000-4000-8000-000000000003",
                  xml="<network><name>lan</name></network>", active=True, autostart=False,
                  persistent=True, running_xml="<network><name>lan</name></network>")
BASE = fingerprint([WEB, DB], [NET])


def test_listing_order_does_not_matter() -> None:
    assert fingerprint([DB, WEB], [NET]) == BASE


@pytest.mark.parametrize(
    ("domains", "networks"),
    [
        pytest.param([WEB._replace(xml=WEB.xml + " "), DB], [NET], id="definition"),
        pytest.param([WEB._replace(running_xml=WEB.xml), DB], [NET], id="running-definition"),
        pytest.param([WEB._replace(state=DomainState.PAUSED), DB], [NET], id="state"),
        pytest.param([WEB._replace(autostart=True), DB], [NET], id="autostart"),
        pytest.param([WEB._replace(persistent=False), DB], [NET], id="persistence"),
        pytest.param([WEB._replace(name="www"), DB], [NET], id="name"),
        pytest.param([WEB._replace(uuid=WEB.uuid[:-1] + "9"), DB], [NET], id="uuid"),
        pytest.param([WEB], [NET], id="domain-gone"),
        pytest.param([WEB, DB], [], id="network-gone"),
        pytest.param([WEB, DB], [NET._replace(active=False)], id="network-stopped"),
        pytest.param([WEB, DB], [NET._replace(autostart=True)], id="network-autostart"),
        pytest.param([WEB, DB], [NET._replace(xml=NET.xml.replace("lan", "wan"))],
                     id="network-definition"),
        pytest.param([WEB, DB], [NET._replace(running_xml=NET.xml.replace("lan", "wan"))],
                     id="network-running-definition"),
        pytest.param([WEB, DB], [NET._replace(running_xml=None)],
                     id="network-running-definition-unknown"),
        # The same bytes split differently between the two definitions.
        pytest.param([WEB._replace(xml=WEB.xml + "<domain id='3'>",
                                   running_xml="<name>web</name></domain>"), DB], [NET],
                     id="text-moved-between-definitions"),
        pytest.param([WEB, DB._replace(xml=DB.xml + "x")],
                     [NET._replace(xml=NET.xml[:-1])], id="text-moved-between-objects"),
    ],
)
def test_any_changed_record_changes_it(
    domains: list[DomainRead], networks: list[NetworkRead]
) -> None:
    assert fingerprint(domains, networks) != BASE


def test_the_id_alone_does_not_change_it() -> None:
    assert fingerprint([WEB._replace(id=4), DB], [NET]) == BASE


def test_a_lazy_table_builds_each_object_once_and_only_when_looked_up() -> None:
    built: list[str] = []

    def make(read: str) -> int:
        built.append(read)
        return len(read)

    table = LazyTable({"a": "x", "b": "yy"}, make)
    assert "b" in table and "c" not in table and sorted(table) == ["a", "b"]
    assert len(table) == 2 and built == []
    assert table["a"] == 1 and table.get("a") == 1 and table.get("c") is None
    assert built == ["x"]
    assert dict(table) == {"a": 1, "b": 2} and built == ["x", "yy"]


SPEC = DomainSpec(name="web", xml="<domain/>", source=Source("web.xml", 1))
NET_SPEC = NetworkSpec(name="lan", xml="<network/>", source=Source("lan.xml", 1))
DESIRED = Desired(domains={"web": SPEC}, networks={"lan": NET_SPEC})
LIVE = Live(fingerprint=BASE)
CONTEXT = context_of(repr(Policy()), "<capabilities/>", "code-1")
KEY = host_key(DESIRED, LIVE, context=CONTEXT)


@pytest.mark.parametrize(
    ("desired", "live", "context"),
    [
        pytest.param(dataclasses.replace(DESIRED, domains={
            "web": dataclasses.replace(SPEC, xml="<domain><vcpu>2</vcpu></domain>")}),
            LIVE, CONTEXT, id="spec-edited"),
        pytest.param(dataclasses.replace(DESIRED, domains={
            "web": dataclasses.replace(SPEC, state=DomainState.SHUTOFF)}),
            LIVE, CONTEXT, id="spec-state"),
        pytest.param(dataclasses.replace(DESIRED, networks={}), LIVE, CONTEXT,
                     id="spec-removed"),
        pytest.param(dataclasses.replace(DESIRED, domains={
            "web": SPEC, "db": dataclasses.replace(SPEC, name="db")}), LIVE, CONTEXT,
            id="spec-added"),
        pytest.param(DESIRED, Live(fingerprint=fingerprint([WEB], [NET])), CONTEXT,
                     id="host-changed"),
        pytest.param(DESIRED, LIVE, context_of(repr(Policy(prune=True)), "<capabilities/>",
                                               "code-1"), id="policy"),
        pytest.param(DESIRED, LIVE, context_of(repr(Policy()), "<capabilities><host/>"
                                               "</capabilities>", "code-1"), id="capabilities"),
        pytest.param(DESIRED, LIVE, context_of(repr(Policy()), "<capabilities/>", "code-2"),
                     id="code"),
    ],
)
def test_any_changed_input_changes_the_host_key(
    desired: Desired, live: Live, context: str
) -> None:
    assert KEY is not None
    assert host_key(desired, live, context=context) != KEY


def test_a_moved_spec_file_keeps_the_host_key() -> None:
    moved = dataclasses.replace(DESIRED, domains={
        "web": dataclasses.replace(SPEC, source=Source("elsewhere/web.xml", 7))})
    assert host_key(moved, LIVE, context=CONTEXT) == KEY


def test_no_host_key_without_a_snapshot_fingerprint() -> None:
    assert host_key(DESIRED, Live(), context=CONTEXT) is None


def test_a_spec_digest_follows_every_replace() -> None:
    edited = dataclasses.replace(SPEC, autostart=True)
    assert edited.digest != SPEC.digest
    assert dataclasses.replace(edited, autostart=False).digest == SPEC.digest
    assert NetworkSpec(name="web", xml="<domain/>", source=SPEC.source).digest != SPEC.digest


def test_host_keys_are_kept_per_host_and_bounded(tmp_path: Path) -> None:
    store, other = SyncMemo(tmp_path, "test:///default"), SyncMemo(tmp_path, "qemu:///system")
    keys = [f"{i:064x}" for i in range(SyncMemo.HOSTS + 2)]
    assert not store.host_in_sync(keys[0])
    for key in keys:
        store.save_host(key)
    assert all(store.host_in_sync(k) for k in keys[2:])
    assert not store.host_in_sync(keys[0]) and not store.host_in_sync(keys[1])  # the oldest
    assert not other.host_in_sync(keys[-1])
    assert not store.host_in_sync(keys[-1][:32])  # whole keys only


def test_an_unreadable_host_file_is_no_memo(tmp_path: Path) -> None:
    store = SyncMemo(tmp_path, "test:///default")
    assert store.hosts_path is not None
    store.hosts_path.parent.mkdir(parents=True)
    store.hosts_path.mkdir()  # a directory where the file should be
    assert not store.host_in_sync("0" * 64)
    store.save_host("0" * 64)  # does not raise: a cache that cannot be written is no cache
    assert SyncMemo(None, "test:///default").host_in_sync("0" * 64) is False
