"""Storage planning (issue 14): pools and volumes created in order, data never lost:
volumes grow but never shrink, are replaced only with --allow-recreate, deleted only
with deletePolicy: delete, and only what virtctl's records name is virtctl's."""

from __future__ import annotations

from dataclasses import replace

from virtctl.errors import Source
from virtctl.model import (
    STATE_VOLUME,
    DeletePolicy,
    Desired,
    Kind,
    LivePool,
    LiveVolume,
    ObjectKey,
    PoolSpec,
    Storage,
    VolumeContent,
    VolumeSpec,
)
from virtctl.reconciler.plan.actions import (
    BuildPool,
    CreateVolume,
    DeleteVolume,
    RecordPool,
    RecordVolume,
    ResizeVolume,
)
from virtctl.reconciler.plan.identity import derived_uuid
from virtctl.reconciler.plan.plan import Plan, Policy, plan, plan_delete
from virtctl.reconciler.plan.plan_storage import StorageView, backing_paths, check_storage, view
from virtctl.reconciler.storage_record import ObjectRecord, PoolRecord, record_text
from virtctl.model import Live
from virtctl.xmlutil import parse

POOL_XML = "<pool type='dir'><name>images</name><target><path>/srv/images</path></target></pool>"
SRC = Source("specs/storage.yaml", 1)


def pool_spec(**kw: object) -> PoolSpec:
    return PoolSpec(name="images", xml=POOL_XML, source=SRC, **kw)  # type: ignore[arg-type]


def volume_spec(name: str = "web.qcow2", *, capacity: str = "10", fmt: str = "qcow2",
                backing: str = "", content: VolumeContent | None = None,
                delete: bool = False) -> VolumeSpec:
    store = (f"<backingStore><path>{backing}</path><format type='qcow2'/></backingStore>"
             if backing else "")
    cap = f"<capacity unit='GiB'>{capacity}</capacity>" if capacity else ""
    xml = f"<volume><name>{name}</name>{cap}<target><format type='{fmt}'/></target>{store}</volume>"
    return VolumeSpec(pool="images", name=name, xml=xml, source=SRC, content=content,
                      delete_policy=DeletePolicy.DELETE if delete else DeletePolicy.RETAIN)


def desired(*specs: PoolSpec | VolumeSpec) -> Desired:
    return Desired(pools={s.name: s for s in specs if isinstance(s, PoolSpec)},
                   volumes={s.key.name: s for s in specs if isinstance(s, VolumeSpec)})


def live_volume(name: str = "web.qcow2", *, gib: int = 10, fmt: str = "qcow2",
                backing: str = "") -> LiveVolume:
    store = f"<backingStore><path>{backing}</path></backingStore>" if backing else ""
    xml = (f"<volume type='file'><name>{name}</name><capacity unit='bytes'>{gib << 30}"
           f"</capacity><target><path>/srv/images/{name}</path><format type='{fmt}'/>"
           f"</target>{store}</volume>")
    return LiveVolume(pool="images", name=name, xml=xml, capacity=gib << 30, allocation=0)


SOME_POOL_RECORD = ObjectRecord(spec_hash="x")


def host(*volumes: LiveVolume, records: dict[str, ObjectRecord] | None = None,
         pool_record: ObjectRecord | None = SOME_POOL_RECORD,
         active: bool = True, uuid: str = "1b4c5a4e-0000-4000-8000-000000000001") -> Storage:
    record = PoolRecord(pool=pool_record, volumes=records or {})
    pool = LivePool(name="images", uuid=uuid, xml=POOL_XML.replace("<name>", f"<uuid>{uuid}"
                    "</uuid><name>"), active=active,
                    record=record_text(record) if active else None)
    return Storage(pools={"images": pool}, volumes={v.key.name: v for v in volumes})


def storage_plan(want: Desired, have: Storage, **policy: object) -> Plan:
    return plan(want, Live(), policy=Policy(**policy), storage=view(have))  # type: ignore[arg-type]


def verbs(p: Plan) -> list[str]:
    return [f"{a.verb} {a.name}" for a in p.actions]


def test_a_new_pool_and_volume_are_made_in_order_and_recorded() -> None:
    p = storage_plan(desired(pool_spec(autostart=True), volume_spec()), Storage())
    assert verbs(p) == ["define images", "build images", "setautostart images",
                        "start images", "record images", "create-volume images/web.qcow2"]
    create = next(a for a in p.actions if isinstance(a, CreateVolume))
    assert create.needs == (ObjectKey(Kind.POOL, "images"),) and create.record is not None
    assert {str(k) for k in p.creates} == {"pool/images", "volume/images/web.qcow2"}
    define = p.actions[0]
    assert parse(define.xml).findtext("uuid") == derived_uuid("pool", "images")  # type: ignore[attr-defined]


def test_a_backing_volume_named_by_name_becomes_its_path_and_is_needed() -> None:
    overlay = volume_spec("web.qcow2", backing="virtctl-volume:base.qcow2", capacity="")
    p = storage_plan(desired(overlay, volume_spec("base.qcow2")), host())
    create = next(a for a in p.actions if isinstance(a, CreateVolume)
                  and a.name == "images/web.qcow2")
    assert parse(create.xml).findtext("backingStore/path") == "/srv/images/base.qcow2"
    assert ObjectKey(Kind.VOLUME, "images/base.qcow2") in create.needs


def test_an_unchanged_volume_plans_nothing() -> None:
    spec = volume_spec()
    first = storage_plan(desired(spec), host())
    record = next(a for a in first.actions if isinstance(a, CreateVolume)).record
    assert record is not None
    again = storage_plan(desired(spec), host(live_volume(), records={"web.qcow2": record}))
    assert again.actions == () and not again.notes


def recorded(spec: VolumeSpec) -> dict[str, ObjectRecord]:
    created = storage_plan(desired(spec), host()).actions[0]
    assert isinstance(created, CreateVolume) and created.record is not None
    return {spec.name: created.record}


def test_a_volume_grows_but_is_never_shrunk() -> None:
    spec = volume_spec(capacity="20")
    grow = storage_plan(desired(spec), host(live_volume(), records=recorded(spec)))
    (resize,) = grow.actions
    assert isinstance(resize, ResizeVolume) and resize.capacity == 20 << 30
    small = volume_spec(capacity="5")
    shrink = storage_plan(desired(small), host(live_volume(), records=recorded(small)))
    assert shrink.actions == () and "never shrunk" in shrink.notes[0]


def test_format_backing_or_content_changes_need_allow_recreate() -> None:
    spec = volume_spec(fmt="raw")
    refused = storage_plan(desired(spec), host(live_volume(), records=recorded(spec)))
    assert refused.actions == () and "--allow-recreate" in refused.notes[0]
    allowed = storage_plan(desired(spec), host(live_volume(), records=recorded(spec)),
                           allow_recreate=True)
    assert verbs(allowed) == ["delete-volume images/web.qcow2",
                              "create-volume images/web.qcow2"]
    old = volume_spec(content=VolumeContent(file="/img/a", checksum="sha256:" + "1" * 64),
                      capacity="")
    new = volume_spec(content=VolumeContent(file="/img/a", checksum="sha256:" + "2" * 64),
                      capacity="")
    swapped = storage_plan(desired(new), host(live_volume(), records=recorded(old)))
    assert swapped.actions == () and "content" in swapped.notes[0]


def test_content_virtctl_made_is_replaced_without_asking() -> None:
    """A cloud-init seed holds nothing of anyone's: a new one replaces the old."""
    old = volume_spec(content=VolumeContent(data=b"one"), capacity="")
    new = volume_spec(content=VolumeContent(data=b"two"), capacity="")
    p = storage_plan(desired(new), host(live_volume(), records=recorded(old)))
    assert verbs(p) == ["delete-volume images/web.qcow2", "create-volume images/web.qcow2"]


def test_prune_deletes_only_what_says_delete_and_forgets_the_rest() -> None:
    keep, scratch = volume_spec("data.raw", fmt="raw"), volume_spec("tmp.raw", delete=True)
    records = {**recorded(keep), **recorded(scratch)}
    theirs = live_volume("theirs.raw", fmt="raw")  # no record: not virtctl's
    have = host(live_volume("data.raw", fmt="raw"), live_volume("tmp.raw", fmt="raw"), theirs,
                records=records)
    p = storage_plan(desired(pool_spec()), have, prune=True)
    deleted = [a.name for a in p.actions if isinstance(a, DeleteVolume)]
    forgotten = [a.name for a in p.actions if isinstance(a, RecordVolume) and a.record is None]
    assert deleted == ["images/tmp.raw"] and forgotten == ["images/data.raw"]
    assert any("retained" in n for n in p.notes)
    assert not any("theirs" in a.name for a in p.actions)


def test_delete_stops_and_undefines_a_pool_after_its_volumes_and_keeps_its_storage() -> None:
    scratch = volume_spec("tmp.raw", delete=True)
    have = host(live_volume("tmp.raw", fmt="raw"), records=recorded(scratch))
    p = plan_delete(desired(pool_spec(), scratch), Live(), storage=view(have))
    assert verbs(p) == ["delete-volume images/tmp.raw", "record images", "destroy images",
                        "undefine images"]
    assert any("its storage" in n for n in p.notes)
    (forget,) = [a for a in p.actions if isinstance(a, RecordPool)]
    assert forget.record is None  # its directory stays; virtctl's claim on it does not


def test_an_inactive_pool_is_virtctls_by_its_derived_uuid() -> None:
    mine = host(active=False, uuid=derived_uuid("pool", "images"), pool_record=None)
    p = storage_plan(desired(pool_spec()), mine)
    assert verbs(p) == ["start images", "record images"]
    assert not check_storage(desired(pool_spec()), view(mine), adopt=False)
    theirs = host(active=False, pool_record=None)
    errors = check_storage(desired(pool_spec()), view(theirs), adopt=False)
    assert errors and "not managed" in errors[0].message


def test_checks_name_unmanaged_volumes_missing_pools_and_backing_volumes() -> None:
    errors = check_storage(desired(volume_spec()), view(host(live_volume())), adopt=False)
    assert ["not managed" in e.message for e in errors] == [True]
    orphan = VolumeSpec(pool="nowhere", name="x", xml="<volume><name>x</name></volume>",
                        source=SRC)
    assert "neither declared nor on the host" in check_storage(
        desired(orphan), view(Storage()), adopt=False)[0].message
    overlay = volume_spec(backing="virtctl-volume:missing.qcow2")
    assert "backing volume 'missing.qcow2'" in check_storage(
        desired(overlay), view(host()), adopt=False)[0].message


def test_a_pool_record_is_written_only_when_it_changes() -> None:
    spec = pool_spec()
    first = storage_plan(desired(spec), Storage())
    record = next(a for a in first.actions if isinstance(a, RecordPool)).record
    same = storage_plan(desired(spec), host(pool_record=record))
    assert same.actions == ()
    assert not any(isinstance(a, BuildPool) for a in same.actions)


def test_an_overlay_is_created_after_the_volume_under_it_whatever_their_names() -> None:
    overlay = volume_spec("a-web.qcow2", backing="virtctl-volume:z-base.qcow2", capacity="")
    middle = volume_spec("m-mid.qcow2", backing="virtctl-volume:z-base.qcow2", capacity="")
    top = volume_spec("b-top.qcow2", backing="virtctl-volume:m-mid.qcow2", capacity="")
    p = storage_plan(desired(overlay, middle, top, volume_spec("z-base.qcow2")), host())
    assert [a.name for a in p.actions] == [
        "images/z-base.qcow2", "images/a-web.qcow2", "images/m-mid.qcow2", "images/b-top.qcow2"]


# Issue 20: what a pool not running yet holds; backing files; who owns what is adopted


def dormant_view(have: Storage, *files: LiveVolume, state: str | None = None) -> StorageView:
    """`have` with pool 'images' not running and its directory holding `files` (and a
    STATE_VOLUME of text `state`)."""
    pool = LivePool(name="images", uuid="", xml=POOL_XML, active=True, record=state)
    later = Storage(pools={"images": pool}, volumes={f.key.name: f for f in files})
    return replace(view(have), dormant={"images": view(later)})


def test_a_volume_in_the_directory_of_a_pool_not_running_is_refused_before_any_action() -> None:
    """Re-apply after `delete`: the pool is gone, its directory keeps the retained
    volume. Planning a create would fail mid-apply ("exists already"); the check
    refuses it first, naming the spec and --adopt."""
    spec = volume_spec("data.raw", fmt="raw", capacity="1")
    found = dormant_view(Storage(), live_volume("data.raw", gib=1, fmt="raw"))
    errors = check_storage(desired(pool_spec(), spec), found, adopt=False)
    assert len(errors) == 1 and errors[0].source == SRC
    assert "exists already" in errors[0].message and "--adopt" in errors[0].message
    assert not check_storage(desired(pool_spec(), spec), found, adopt=True)
    # Without --adopt the plan never creates over it either (replans skip the checks).
    p = plan(desired(pool_spec(), spec), Live(), storage=found)
    assert not any(isinstance(a, CreateVolume) for a in p.actions)


def test_adopt_takes_over_a_volume_of_a_pool_not_running_without_touching_its_data() -> None:
    spec = volume_spec("data.raw", fmt="raw", capacity="1",
                       content=VolumeContent(file="/img/a", checksum="sha256:" + "1" * 64))
    same = plan(desired(pool_spec(), spec), Live(), policy=Policy(adopt=True),
                storage=dormant_view(Storage(), live_volume("data.raw", gib=1, fmt="raw")))
    assert verbs(same)[-1] == "record images/data.raw"
    assert not any(isinstance(a, CreateVolume | DeleteVolume) for a in same.actions)
    small = replace(live_volume("data.raw", fmt="raw"), capacity=1 << 20)
    bigger = plan(desired(pool_spec(), spec), Live(), policy=Policy(adopt=True),
                  storage=dormant_view(Storage(), small))
    (resize,) = [a for a in bigger.actions if a.kind is Kind.VOLUME]
    assert isinstance(resize, ResizeVolume) and resize.capacity == 1 << 30
    assert resize.record is not None
    smaller = plan(desired(pool_spec(), spec), Live(), policy=Policy(adopt=True),
                   storage=dormant_view(Storage(), live_volume("data.raw", gib=2, fmt="raw")))
    assert "never shrunk" in " ".join(smaller.notes)
    assert verbs(smaller)[-1] == "record images/data.raw"
    # A format it does not have: never had by replacing it (it is not virtctl's).
    other = plan(desired(pool_spec(), spec), Live(), policy=Policy(adopt=True,
                 allow_recreate=True), storage=dormant_view(Storage(), live_volume("data.raw")))
    assert [a for a in other.actions if a.kind is Kind.VOLUME] == []
    assert "never deleted or overwritten" in " ".join(other.notes)


def test_a_backing_volume_in_the_directory_of_a_pool_not_running_counts() -> None:
    overlay = volume_spec(backing="virtctl-volume:base.qcow2", capacity="")
    found = dormant_view(Storage(), live_volume("base.qcow2"))
    assert not check_storage(desired(pool_spec(), overlay), found, adopt=False)


def test_a_missing_backing_file_is_refused_at_its_line() -> None:
    overlay = volume_spec(backing="/var/lib/images/gone.qcow2", capacity="")
    want = desired(pool_spec(), overlay)
    assert backing_paths(want, view(host())) == {"/var/lib/images/gone.qcow2"}
    missing = replace(view(host()), backing_files={"/var/lib/images/gone.qcow2": False})
    (error,) = check_storage(want, missing, adopt=False)
    assert "gone.qcow2 does not exist" in error.message
    assert error.source == Source(SRC.file, SRC.line, "backingStore.path")
    for answer in (True, None):  # there, or the host cannot tell (remote): libvirt judges
        known = replace(view(host()), backing_files={"/var/lib/images/gone.qcow2": answer})
        assert not check_storage(want, known, adopt=False)
    # A path naming a volume the host lists or the specs declare is never asked about.
    listed = volume_spec("top.qcow2", backing="/srv/images/web.qcow2", capacity="")
    assert backing_paths(desired(pool_spec(), listed), view(host(live_volume()))) == set()
    assert backing_paths(desired(pool_spec(), listed, volume_spec()), view(Storage())) == set()


def test_a_volume_needs_its_pool_running() -> None:
    spec = volume_spec()
    off = check_storage(desired(pool_spec(active=False), spec), view(Storage()), adopt=False)
    assert len(off) == 1 and "declared inactive" in off[0].message
    stopped = check_storage(desired(spec), view(host(active=False)), adopt=False)
    assert len(stopped) == 1 and "not running" in stopped[0].message


def test_an_adopted_volume_is_never_deleted_or_overwritten() -> None:
    """Someone else's volume named by a spec: --adopt takes it over as it is; a format,
    backing store or content it does not have is never had by replacing it, not even
    with --allow-recreate, not even content virtctl makes (a cloud-init seed)."""
    for spec in (volume_spec(fmt="raw"),
                 volume_spec(content=VolumeContent(data=b"seed"), capacity="", fmt="raw")):
        p = storage_plan(desired(spec), host(live_volume()), adopt=True, allow_recreate=True)
        assert not any(isinstance(a, DeleteVolume | CreateVolume) for a in p.actions), p
        assert "never deleted or overwritten" in " ".join(p.notes)
    # Its own (recorded) volumes are still replaced with --allow-recreate.
    mine = volume_spec(fmt="raw")
    assert "delete-volume images/web.qcow2" in verbs(storage_plan(
        desired(mine), host(live_volume(), records=recorded(mine)), allow_recreate=True))


def test_a_stopped_pools_own_volumes_are_planned_as_when_it_runs() -> None:
    """A declared pool someone stopped: its record (read from its directory) names its
    volumes, so they are neither refused nor created again; a bigger capacity grows
    them once it runs."""
    spec = volume_spec("data.raw", fmt="raw", capacity="2")
    state = record_text(PoolRecord(pool=SOME_POOL_RECORD, volumes=recorded(spec)))
    found = dormant_view(Storage(), live_volume("data.raw", gib=1, fmt="raw"), state=state)
    assert not check_storage(desired(pool_spec(), spec), found, adopt=False)
    p = plan(desired(pool_spec(), spec), Live(), storage=found)
    (resize,) = [a for a in p.actions if a.kind is Kind.VOLUME]
    assert isinstance(resize, ResizeVolume) and resize.capacity == 2 << 30


def test_a_foreign_state_file_in_a_pools_directory_is_refused_first() -> None:
    found = dormant_view(Storage(), state='{"kind": "Something"}')
    (error,) = check_storage(desired(pool_spec()), found, adopt=True)
    assert STATE_VOLUME in error.message and "never overwrites" in error.message


def test_an_overlay_named_by_path_on_a_declared_volume_is_created_after_it() -> None:
    """A backingStore.path into the pool's own directory names a volume of the run as
    surely as backingStore.volume does: it is created first, whatever the names."""
    top = volume_spec("a-top.qcow2", backing="/srv/images/z-base.qcow2", capacity="")
    p = storage_plan(desired(pool_spec(), top, volume_spec("z-base.qcow2")), Storage())
    creates = [a for a in p.actions if isinstance(a, CreateVolume)]
    assert [a.name for a in creates] == ["images/z-base.qcow2", "images/a-top.qcow2"]
    assert ObjectKey(Kind.VOLUME, "images/z-base.qcow2") in creates[1].needs


def test_a_pool_over_another_pools_directory_is_refused_first() -> None:
    """libvirt refuses a second dir pool on one directory; refused before any action
    when the other stays (not virtctl's, or declared too), not when a rename's prune
    may remove it."""
    theirs = LivePool(name="theirs", uuid="u", active=False,
                      xml=POOL_XML.replace("images</name>", "theirs</name>"))
    have = Storage(pools={"theirs": theirs})
    (error,) = check_storage(desired(pool_spec()), view(have), adopt=True)
    assert "/srv/images is pool 'theirs''s" in error.message and error.source == SRC
    mine = replace(theirs, uuid=derived_uuid("pool", "theirs"))  # virtctl's, inactive
    assert not check_storage(desired(pool_spec()), view(Storage(pools={"theirs": mine})),
                             adopt=False)
