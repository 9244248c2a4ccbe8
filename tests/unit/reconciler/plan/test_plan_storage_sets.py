"""Storage prune and apply sets (issue 20, A.1): pools and volumes carry the set that
applied them in their record and are pruned only within it (or a set named with
--prune-set); records older than sets are in no set; a pool still holding volumes
virtctl keeps, a volume a running guest uses and an inactive pool (its set unreadable)
are never pruned."""

from __future__ import annotations

import json

from tests.unit.reconciler.plan.test_plan_storage import (
    host,
    live_volume,
    pool_spec,
    recorded,
    storage_plan,
    verbs,
    volume_spec,
)
from virtctl.model import (
    Desired,
    DomainState,
    Kind,
    Live,
    LiveDomain,
    ObjectKey,
)
from virtctl.reconciler.plan.actions import CreateVolume, RecordPool, RecordVolume
from virtctl.reconciler.plan.identity import derived_uuid
from virtctl.reconciler.plan.plan import Policy, plan
from virtctl.reconciler.plan.plan_storage import view
from virtctl.reconciler.storage_record import ObjectRecord, PoolRecord, read_record, record_text


def of_set(records: dict[str, ObjectRecord], name: str) -> dict[str, ObjectRecord]:
    return {k: ObjectRecord(**{**_fields(v), "apply_set": name}) for k, v in records.items()}


def _fields(record: ObjectRecord) -> dict[str, object]:
    return {f: getattr(record, f) for f in record.__slots__}  # type: ignore[attr-defined]


def test_records_carry_the_set_that_wrote_them_and_old_ones_read_as_no_set() -> None:
    spec = volume_spec("data.raw", fmt="raw", delete=True)
    created = storage_plan(Desired(volumes={spec.key.name: spec}), host(),
                           apply_set="git:abc:infra")
    (create,) = created.actions
    assert isinstance(create, CreateVolume) and create.record is not None
    assert create.record.apply_set == "git:abc:infra"
    text = record_text(PoolRecord(volumes={"data.raw": create.record}))
    assert json.loads(text)["volumes"]["data.raw"]["set"] == "git:abc:infra"
    assert read_record(text).volumes["data.raw"] == create.record
    old = json.loads(text)
    del old["volumes"]["data.raw"]["set"]  # as virtctl wrote it before sets
    assert read_record(json.dumps(old)).volumes["data.raw"].apply_set == ""


def test_prune_of_another_set_leaves_the_pool_and_its_volumes_alone() -> None:
    """Set A: a pool and a deletePolicy: delete volume; set B prunes with specs that
    declare no storage (the issue's scenario): nothing of A's is planned."""
    vol = volume_spec("data.raw", fmt="raw", delete=True)
    pool_record = ObjectRecord(spec_hash="p", apply_set="A")
    have = host(live_volume("data.raw", fmt="raw"), records=of_set(recorded(vol), "A"),
                pool_record=pool_record)
    other = storage_plan(Desired(), have, prune=True, apply_set="B")
    assert other.actions == () and not other.deletes
    everything = storage_plan(Desired(), have, prune=True, apply_set="B", prune_all=True)
    assert everything.actions == ()  # --prune-all lifts the count only
    named = storage_plan(Desired(), have, prune=True, apply_set="B",
                         prune_sets=("A",))
    assert verbs(named) == ["delete-volume images/data.raw", "record images",
                            "destroy images", "undefine images"]
    own = storage_plan(Desired(), have, prune=True, apply_set="A")
    assert verbs(own) == verbs(named)
    assert {str(k) for k in own.deletes} == {"pool/images", "volume/images/data.raw"}


def test_records_older_than_sets_are_never_pruned_implicitly_and_move_when_applied() -> None:
    vol = volume_spec("data.raw", fmt="raw", delete=True)
    have = host(live_volume("data.raw", fmt="raw"), records=of_set(recorded(vol), ""),
                pool_record=ObjectRecord(spec_hash="p"))
    assert storage_plan(Desired(), have, prune=True, apply_set="A").actions == ()
    assert storage_plan(Desired(), have, prune=True, apply_set="A",
                        prune_all=True).actions == ()
    named = storage_plan(Desired(), have, prune=True, apply_set="A",
                         prune_sets=("",))
    assert "delete-volume images/data.raw" in verbs(named)
    moved = storage_plan(Desired(volumes={vol.key.name: vol}), have, apply_set="A")
    (action,) = moved.actions
    assert isinstance(action, RecordVolume) and action.record is not None
    assert action.record.apply_set == "A"
    assert action.reason == "record: move from no set to set 'A'"


def test_a_pool_holding_volumes_of_another_set_is_not_pruned() -> None:
    mine = volume_spec("mine.raw", fmt="raw", delete=True)
    theirs = volume_spec("theirs.raw", fmt="raw", delete=True)
    have = host(live_volume("mine.raw", fmt="raw"), live_volume("theirs.raw", fmt="raw"),
                records={**of_set(recorded(mine), "A"), **of_set(recorded(theirs), "B")},
                pool_record=ObjectRecord(spec_hash="p", apply_set="A"))
    p = storage_plan(Desired(), have, prune=True, apply_set="A", prune_all=True)
    assert verbs(p) == ["delete-volume images/mine.raw"]
    assert ObjectKey(Kind.POOL, "images") not in p.deletes
    assert any("pool/images: not pruned" in n and "images/theirs.raw" in n for n in p.notes)


def test_a_volume_a_running_guest_keeps_using_is_not_pruned() -> None:
    """A running guest's cidata ISO: deleted only with the guest itself."""
    seed = volume_spec("web-cidata.iso", fmt="raw", delete=True)
    have = host(live_volume("web-cidata.iso", fmt="raw"), records=of_set(recorded(seed), "A"),
                pool_record=ObjectRecord(spec_hash="p", apply_set="A"))
    running = ("<domain type='kvm'><name>web</name><devices><disk type='volume' "
               "device='cdrom'><source pool='images' volume='web-cidata.iso'/>"
               "<target dev='sda' bus='sata'/></disk></devices></domain>")
    guest = LiveDomain(name="web", uuid="u", xml=running, running_xml=running,
                       state=DomainState.RUNNING, autostart=False, persistent=True,
                       owner=None, id=1)
    live = Live(domains={"web": guest})
    kept = plan(Desired(), live, policy=Policy(prune=True, apply_set="A"),
                storage=view(have, live))
    assert not any(a.name == "images/web-cidata.iso" for a in kept.actions)
    assert any("running guest web uses it" in n for n in kept.notes)
    assert ObjectKey(Kind.VOLUME, "images/web-cidata.iso") not in kept.deletes


def test_an_inactive_pool_whose_set_cannot_be_read_is_not_pruned() -> None:
    have = host(active=False, uuid=derived_uuid("pool", "images"), pool_record=None)
    p = storage_plan(Desired(), have, prune=True, apply_set="A", prune_all=True)
    assert p.actions == () and not p.deletes
    assert any("inactive" in n for n in p.notes)


def test_applying_a_pool_of_another_set_moves_its_record() -> None:
    spec = pool_spec()
    first = storage_plan(Desired(pools={"images": spec}), host(pool_record=None),
                         apply_set="A")
    record = next(a for a in first.actions if isinstance(a, RecordPool)).record
    moved = storage_plan(Desired(pools={"images": spec}), host(pool_record=record),
                         apply_set="B")
    (action,) = moved.actions
    assert isinstance(action, RecordPool) and action.record.apply_set == "B"
    assert action.reason == "record: move from set 'A' to set 'B'"
    from virtctl.render.report import plan_text

    assert "~ pool/images  (record: move from set 'A' to set 'B')" in plan_text(moved)


def test_the_watcher_keeps_storage_of_a_broken_spec_file_from_pruning() -> None:
    """The watcher's guard against pruning what a broken file declares covers pools and
    volumes too: their records name the file, as a domain's mark does."""
    from virtctl.errors import Source, SpecError
    from virtctl.watch.loop import protect
    from virtctl.watch.specs import Settled

    vol = volume_spec("data.raw", fmt="raw", delete=True)  # from specs/storage.yaml
    have = host(live_volume("data.raw", fmt="raw"), records=of_set(recorded(vol), "A"),
                pool_record=ObjectRecord(spec_hash="p", source="specs/storage.yaml",
                                         apply_set="A"))
    found = view(have)
    planned = plan(Desired(), Live(), policy=Policy(prune=True, apply_set="A"),
                   storage=found)
    assert {str(k) for k in planned.deletes} == {"pool/images", "volume/images/data.raw"}
    settled = Settled(chosen={}, broken={"specs/storage.yaml": (
        SpecError("malformed YAML", source=Source("specs/storage.yaml", 1)),)})
    kept = protect(planned, Live(), settled, found)
    assert kept.actions == () and not kept.deletes
    assert "pool/images: not pruned, its spec file is invalid" in kept.notes


def test_a_pool_a_declared_volume_still_needs_is_not_pruned() -> None:
    """The specs dropped the pool but still declare a volume in it (not made yet)."""
    have = host(pool_record=ObjectRecord(spec_hash="p", apply_set="A"))
    vol = volume_spec("new.raw", fmt="raw")
    p = storage_plan(Desired(volumes={vol.key.name: vol}), have, prune=True, apply_set="A")
    assert verbs(p) == ["create-volume images/new.raw"]
    assert any("pool/images: not pruned" in n and "images/new.raw" in n for n in p.notes)


def test_delete_never_deletes_a_volume_under_a_running_guest_it_keeps() -> None:
    """`delete -f` of a volume spec: a running guest (another set's, say) using it keeps
    it; deleting the guest in the same run lets it go."""
    from virtctl.reconciler.plan.plan import plan_delete

    seed = volume_spec("web-cidata.iso", fmt="raw", delete=True)
    have = host(live_volume("web-cidata.iso", fmt="raw"), records=of_set(recorded(seed), "A"),
                pool_record=ObjectRecord(spec_hash="p", apply_set="A"))
    running = ("<domain type='kvm'><name>web</name><devices><disk type='volume' "
               "device='cdrom'><source pool='images' volume='web-cidata.iso'/>"
               "<target dev='sda' bus='sata'/></disk></devices></domain>")
    from virtctl.model import Ownership

    guest = LiveDomain(name="web", uuid="u", xml=running, running_xml=running,
                       state=DomainState.RUNNING, autostart=False, persistent=True,
                       owner=Ownership(spec_hash="h", apply_set="B"), id=1)
    live = Live(domains={"web": guest})
    kept = plan_delete(Desired(volumes={seed.key.name: seed}), live, storage=view(have, live))
    assert kept.actions == ()
    assert any("not deleted: running guest web uses it" in n for n in kept.notes)
    from virtctl.reconciler.load.load import load_text

    (web,) = load_text("<domain type='kvm'><name>web</name><memory>1024</memory><os>"
                       "<type>hvm</type></os></domain>", source="web.xml")
    both = plan_delete(Desired(domains={"web": web}, volumes={seed.key.name: seed}),  # type: ignore[dict-item]
                       live, storage=view(have, live))
    assert "delete-volume images/web-cidata.iso" in verbs(both)
