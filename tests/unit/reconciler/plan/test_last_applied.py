"""The last-applied record: what was declared, kept in the object's metadata, tells a
spec change from drift and finds the fields a spec no longer declares."""

from __future__ import annotations

import dataclasses

import pytest

from virtctl import metadata
from virtctl.model import Desired, DomainSpec, DomainState, LastApplied, Live, LiveDomain, Ownership
from virtctl.reconciler.plan.actions import Define
from virtctl.reconciler.plan.diff import ChangeOp, Origin
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.plan.plan import plan, spec_hash
from virtctl.render.report import plan_text
from virtctl.xmlutil import NS, parse

UUID = "0d8e7c6b-5a49-4382-a716-2f3e4d5c6b01"


def spec_xml(body: str = "", *, memory: int = 512, state: str = "shutoff") -> str:
    return (f'<domain type="kvm"><name>web</name><metadata><v:runtime xmlns:v="{NS}" '
            f'state="{state}"/></metadata><memory unit="MiB">{memory}</memory><vcpu>1</vcpu>'
            f"<os><type>hvm</type></os>{body}<devices/></domain>")


def desired(xml: str) -> Desired:
    spec = load_text(xml, source="web.xml")[0]
    assert isinstance(spec, DomainSpec)
    return Desired(domains={spec.name: spec})


def applied(xml: str, *, state: DomainState = DomainState.SHUTOFF) -> LiveDomain:
    """The domain as the host holds it after virtctl defined it from `xml`."""
    (define, *_) = plan(desired(xml), Live()).actions
    assert isinstance(define, Define)
    root = parse(define.xml)
    return LiveDomain(name="web", uuid=root.findtext("uuid") or UUID, xml=define.xml,
                      state=state, owner=metadata.read_owner(root),
                      running_xml=define.xml if state.active else None)


def host(dom: LiveDomain) -> Live:
    return Live(domains={dom.name: dom})


@pytest.mark.parametrize("text", [
    pytest.param("<domain><name>x</name></domain>", id="small"),
    pytest.param("<domain>" + "<disk/>" * 500 + "</domain>", id="compresses"),
    pytest.param("<domain><description>caf\u00e9 \u2603</description></domain>", id="unicode"),
])
def test_declared_xml_round_trips_through_the_owner_mark(text: str) -> None:
    record = LastApplied(metadata.encode_declared(text), state="running", autostart=True)
    root = parse("<domain><name>x</name><uuid>u</uuid><memory>1</memory></domain>")
    metadata.set_owner(root, Ownership(spec_hash="h", source="s", last_applied=record))
    owner = metadata.read_owner(root)
    assert owner is not None and owner.last_applied == record
    assert metadata.declared_xml(owner.last_applied) == text
    assert [c.tag for c in root][:3] == ["name", "uuid", "metadata"]


def test_unreadable_records_are_treated_as_absent() -> None:
    assert metadata.declared_xml(LastApplied("not base64 !")) is None
    root = parse(f'<domain><metadata><v:owner xmlns:v="{NS}" spec-hash="h"><v:last-applied '
                 'encoding="gzip">x</v:last-applied></v:owner></metadata></domain>')
    owner = metadata.read_owner(root)
    assert owner is not None and owner.last_applied is None


def test_owner_dict_round_trip_keeps_the_record() -> None:
    owner = Ownership("h", "s", "c", LastApplied("eA==", state="shutoff", active=None,
                                                 autostart=False))
    assert metadata.owner_from_dict(metadata.owner_to_dict(owner)) == owner


def test_every_define_records_what_was_declared() -> None:
    dom = applied(spec_xml())
    assert dom.owner is not None and dom.owner.last_applied is not None
    spec = desired(spec_xml()).domains["web"]
    assert metadata.declared_xml(dom.owner.last_applied) == spec.xml
    assert dom.owner.spec_hash == spec_hash(spec.xml)
    assert dom.owner.last_applied.state == "shutoff"


def test_a_changed_spec_is_reported_as_such() -> None:
    p = plan(desired(spec_xml(memory=1024)), host(applied(spec_xml())))
    ((_, changes),) = p.changes
    assert [(c.path, c.origin) for c in changes] == [("memory", Origin.SPEC)]


def test_a_change_made_outside_virtctl_is_drift() -> None:
    dom = applied(spec_xml())
    edited = dataclasses.replace(dom, xml=dom.xml.replace(">512<", ">256<"))
    assert edited.xml != dom.xml
    p = plan(desired(spec_xml()), host(edited))
    ((_, changes),) = p.changes
    assert [(c.path, c.origin) for c in changes] == [("memory", Origin.DRIFT)]
    assert "[next-boot, drift]" in plan_text(p)


def test_drift_and_spec_change_together_are_told_apart() -> None:
    dom = applied(spec_xml())
    edited = dataclasses.replace(dom, xml=dom.xml.replace("<vcpu>1</vcpu>", "<vcpu>3</vcpu>"))
    p = plan(desired(spec_xml(memory=1024)), host(edited))
    origins = {c.path: c.origin for c in p.changes[0][1]}
    assert origins == {"memory": Origin.SPEC, "vcpu": Origin.DRIFT}


def test_a_guest_stopped_outside_virtctl_is_started_as_drift() -> None:
    dom = applied(spec_xml(state="running"), state=DomainState.SHUTOFF)
    p = plan(desired(spec_xml(state="running")), host(dom))
    assert [a.verb for a in p.actions] == ["start"]
    (state,) = p.changes[0][1]
    assert (state.path, state.old, state.new, state.origin) == (
        "state", "shutoff", "running", Origin.DRIFT)


def test_objects_without_a_record_have_unknown_origin() -> None:
    dom = applied(spec_xml())
    bare = dataclasses.replace(dom, owner=Ownership(spec_hash="old"))
    p = plan(desired(spec_xml(memory=1024)), host(bare))
    assert p.changes[0][1][0].origin is Origin.UNKNOWN


@pytest.mark.parametrize(("had", "now", "path"), [
    pytest.param("<on_crash>preserve</on_crash>", "", "on_crash", id="element"),
    pytest.param("<features><acpi/><apic/></features>", "<features><acpi/></features>",
                 "features/apic", id="nested-element"),
    pytest.param('<os><type arch="i686">hvm</type></os>', "", "os/type/@arch",
                 id="attribute"),
])
def test_a_field_removed_from_the_spec_is_removed_from_the_object(had: str, now: str,
                                                                  path: str) -> None:
    if "<os>" in had:  # the spec's own <os> is replaced
        base = spec_xml().replace("<os><type>hvm</type></os>", had)
        dom = applied(base)
        p = plan(desired(spec_xml()), host(dom))
        (define,) = p.actions
        assert isinstance(define, Define)
        assert [c.path for c in define.changes if c.op is ChangeOp.REMOVE] == [path]
        assert parse(define.xml).find("os/type").get("arch") is None  # type: ignore[union-attr]
        return
    dom = applied(spec_xml(had))
    p = plan(desired(spec_xml(now)), host(dom))
    (define,) = p.actions
    assert isinstance(define, Define)
    removals = [c for c in define.changes if c.op is ChangeOp.REMOVE]
    assert [c.path for c in removals] == [path]
    assert removals[0].origin is Origin.SPEC
    assert parse(define.xml).find(path) is None
    # Once applied, the record is the new spec: the removal is not reported again.
    again = dataclasses.replace(dom, xml=define.xml, owner=metadata.read_owner(parse(define.xml)))
    assert plan(desired(spec_xml(now)), host(again)).empty


def test_a_removed_field_the_host_no_longer_has_is_not_a_change() -> None:
    dom = applied(spec_xml("<on_crash>preserve</on_crash>"))
    gone = dataclasses.replace(dom, xml=dom.xml.replace("<on_crash>preserve</on_crash>", ""))
    assert plan(desired(spec_xml()), host(gone)).empty
