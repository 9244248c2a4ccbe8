"""Labels on pools and volumes (issue 24): kept in virtctl's storage record, rewritten when
only they change, matched by a selector's --prune (never an unselected spec's object);
and the plan naming the DomainSet of every object it touches, removals included, from
the spec's labels or the recorded ones."""

from __future__ import annotations

import dataclasses
import json

from tests.unit.reconciler.plan.test_plan_storage import host, live_volume, storage_plan, verbs, volume_spec
from virtctl.model import (
    Desired,
    DomainState,
    Kind,
    Labels,
    Live,
    LiveDomain,
    ObjectKey,
    Ownership,
    VolumeSpec,
)
from virtctl.reconciler.plan.actions import CreateVolume, RecordVolume
from virtctl.reconciler.plan.members import plan_members
from virtctl.reconciler.plan.plan import Policy, plan
from virtctl.reconciler.plan.plan_storage import view
from virtctl.reconciler.storage_record import (
    ObjectRecord,
    PoolRecord,
    read_record,
    record_text,
)
from virtctl.render.report import plan_json, plan_text

WEB = (("domainset", "web"), ("role", "web"))


def labelled(name: str, labels: Labels, *, delete: bool = True) -> VolumeSpec:
    return dataclasses.replace(volume_spec(name, fmt="raw", delete=delete), labels=labels)


def created_record(spec: VolumeSpec) -> ObjectRecord:
    (create,) = storage_plan(Desired(volumes={spec.key.name: spec}), host()).actions
    assert isinstance(create, CreateVolume) and create.record is not None
    return create.record


def test_the_record_keeps_the_labels_and_one_without_reads_as_none() -> None:
    record = created_record(labelled("web-1.raw", WEB))
    assert record.labels == WEB
    text = record_text(PoolRecord(volumes={"web-1.raw": record}))
    assert json.loads(text)["volumes"]["web-1.raw"]["labels"] == {"domainset": "web",
                                                                  "role": "web"}
    assert read_record(text).volumes["web-1.raw"] == record
    bare = created_record(labelled("x.raw", ()))
    assert "labels" not in json.loads(record_text(PoolRecord(volumes={"x.raw": bare})))[
        "volumes"]["x.raw"]  # records as before labels existed


def test_changing_only_the_labels_rewrites_the_record_and_nothing_else() -> None:
    spec = labelled("data.raw", (("role", "db"),))
    have = host(live_volume("data.raw", fmt="raw"), records={"data.raw": created_record(
        labelled("data.raw", (("role", "web"),)))})
    (action,) = storage_plan(Desired(volumes={spec.key.name: spec}), have).actions
    assert isinstance(action, RecordVolume) and action.record is not None
    assert action.reason == "record the spec's labels" and action.record.labels == (
        ("role", "db"),)


def test_prune_under_a_selector_takes_only_volumes_whose_recorded_labels_match() -> None:
    web, db = labelled("web.raw", (("role", "web"),)), labelled("db.raw", (("role", "db"),))
    have = host(live_volume("web.raw", fmt="raw"), live_volume("db.raw", fmt="raw"),
                records={"web.raw": created_record(web), "db.raw": created_record(db)})
    p = storage_plan(Desired(), have, prune=True, selector="role=web")
    assert verbs(p) == ["delete-volume images/web.raw"]
    # An unselected spec declares it: never pruned, whatever its recorded labels say.
    spared = storage_plan(Desired(), have, prune=True, selector="role=web",
                          protected=("volume/images/web.raw",))
    assert spared.actions == ()


def test_the_plan_names_the_set_of_created_and_removed_objects() -> None:
    new = dataclasses.replace(volume_spec("web-2.qcow2"), labels=WEB)
    gone_record = created_record(labelled("web-3.qcow2", WEB))
    have = host(live_volume("web-3.qcow2"), records={"web-3.qcow2": gone_record})
    guest = LiveDomain(name="web-3", uuid="u", xml="<domain><name>web-3</name></domain>",
                       state=DomainState.SHUTOFF, owner=Ownership(labels=WEB))
    stray = LiveDomain(name="stray", uuid="v", xml="<domain><name>stray</name></domain>",
                       state=DomainState.SHUTOFF, owner=Ownership(labels=(("role", "x"),)))
    want = Desired(volumes={new.key.name: new})
    p = plan(want, Live(domains={"web-3": guest, "stray": stray}), storage=view(have),
             policy=Policy(prune=True, prune_all=True))
    assert dict(p.members) == {ObjectKey(Kind.VOLUME, "images/web-2.qcow2"): "web",
                               ObjectKey(Kind.VOLUME, "images/web-3.qcow2"): "web",
                               ObjectKey(Kind.DOMAIN, "web-3"): "web"}
    text = plan_text(p)
    assert "- domain/web-3  (undefine)  [DomainSet web]" in text
    assert "- domain/stray  (undefine)\n" in text  # another set's: no set named
    objects = {(o["kind"], o["name"]): o for o in plan_json(p)["objects"]}
    assert objects[("volume", "images/web-3.qcow2")]["domainSet"] == "web"
    assert "domainSet" not in objects[("domain", "stray")]


def test_plan_members_prefers_the_spec_over_the_record() -> None:
    spec = dataclasses.replace(volume_spec("a.qcow2"), labels=(("domainset", "new"),))
    record = created_record(labelled("a.qcow2", (("domainset", "old"),)))
    found = view(host(live_volume("a.qcow2"), records={"a.qcow2": record}))
    key = spec.key
    assert plan_members([key], Desired(volumes={key.name: spec}), Live(), found) == (
        (key, "new"),)
    assert plan_members([key], Desired(), Live(), found) == ((key, "old"),)
    assert plan_members([key], Desired(), Live(), None) == ()
