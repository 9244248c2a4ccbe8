"""Storage planning: the steps for declared pools and volumes against a host's storage,
pruning, deletion, and the checks that come first (docs/storage.md).

Data safety decides most of it. A volume holding data is deleted only when its spec
says `deletePolicy: delete` (by `delete` or `--prune`); otherwise virtctl forgets it and
leaves it be. It is never shrunk. A change that would replace its data (format, backing
store, new content) is `recreate` and happens only with `--allow-recreate`. A pool is
stopped and undefined, never deleted: its storage stays. Only objects virtctl's records
name are virtctl's (storage_record.py).

Pure: no driver calls. Called by `plan.plan` and `plan.plan_delete`.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from lxml import etree

from ...converters.sizes import unit_bytes
from ...errors import ErrorCode, Source, SpecError
from ...model import (
    STATE_VOLUME,
    DeletePolicy,
    Desired,
    Kind,
    Live,
    LivePool,
    LiveVolume,
    ObjectKey,
    PoolSpec,
    Storage,
    VolumeSpec,
)
from ... import metadata
from ...xmlutil import parse, tostring
from virtctl.reconciler.trees import running_tree
from .actions import (
    Action,
    BuildPool,
    CreateVolume,
    Define,
    DeleteVolume,
    Destroy,
    RecordPool,
    RecordVolume,
    ResizeVolume,
    SetAutostart,
    Start,
    Undefine,
)
from .diff import diff_xml
from .identity import derived_uuid, set_uuid
from .steps import (
    Policy,
    Step,
    labels_in_scope,
    may_restart,
    set_in_scope,
    spec_hash,
)
from ..storage_record import ObjectRecord, PoolRecord, RecordError, read_record

# A backing store named by volume, resolved against the pool's target path.
VOLUME_REF = "virtctl-volume:"


@dataclass(frozen=True, slots=True)
class StorageView:
    """The host's storage with virtctl's records read: which pools and volumes are
    virtctl's."""

    storage: Storage
    records: Mapping[str, PoolRecord] = field(default_factory=dict)
    unreadable: Mapping[str, str] = field(default_factory=dict)  # pool -> why
    # "POOL/NAME" -> (running guest, disk target) of volumes a running guest uses
    in_use: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # Declared pools not running (undefined, or inactive) -> what they will show once
    # they run (Reader.pool_files): the files their directory already holds, as
    # volumes, with the records of a STATE_VOLUME there. A volume among them without a
    # record is not virtctl's (retained by a `delete`, or someone else's).
    dormant: Mapping[str, StorageView] = field(default_factory=dict)
    # Backing store paths the specs name (not a declared or listed volume's) -> whether
    # the host has that file (None: it cannot tell).
    backing_files: Mapping[str, bool | None] = field(default_factory=dict)

    def pool_managed(self, pool: LivePool) -> bool:
        record = self.records.get(pool.name)
        if record is not None and record.pool is not None:
            return True
        # An inactive pool's record cannot be read: virtctl's own uuid says it is its.
        return not pool.active and pool.uuid == derived_uuid("pool", pool.name)

    def dormant_volume(self, pool: str,
                       name: str) -> tuple[LiveVolume, ObjectRecord | None] | None:
        """A volume of declared pool `pool`, not running, found in its directory, and
        virtctl's record of it (None: not virtctl's)."""
        sub = self.dormant.get(pool)
        vol = sub.storage.volumes.get(f"{pool}/{name}") if sub is not None else None
        return (vol, sub.volume_record(vol)) if sub is not None and vol is not None else None

    def volume_record(self, volume: LiveVolume) -> ObjectRecord | None:
        record = self.records.get(volume.pool)
        return record.volumes.get(volume.name) if record is not None else None


def storage_digest(storage: Storage) -> str:
    """A hash of everything storage planning reads: every pool (definition, state,
    record) and volume (definition, sizes)."""
    digest = hashlib.sha256()
    for name in sorted(storage.pools):
        pool = storage.pools[name]
        digest.update(repr((name, pool.uuid, pool.xml, pool.active, pool.autostart,
                            pool.persistent, pool.record)).encode())
    for name in sorted(storage.volumes):
        vol = storage.volumes[name]
        digest.update(repr((name, vol.xml, vol.capacity)).encode())
    return digest.hexdigest()


def view(storage: Storage, live: Live | None = None) -> StorageView:
    """The storage with virtctl's records read, and (given the host's `live` guests)
    which volumes running guests use, by pool and volume or by path."""
    records: dict[str, PoolRecord] = {}
    unreadable: dict[str, str] = {}
    for name, pool in storage.pools.items():
        try:
            records[name] = read_record(pool.record)
        except RecordError as exc:
            unreadable[name] = str(exc)
    return StorageView(storage, records, unreadable,
                       _in_use(storage, live) if live is not None else {})


def _in_use(storage: Storage, live: Live) -> dict[str, tuple[str, str]]:
    paths = {}
    for key, vol in storage.volumes.items():
        path = (parse(vol.xml).findtext("target/path") or "").strip()
        if path:
            paths[path] = key
    out: dict[str, tuple[str, str]] = {}
    for dom in live.domains.values():
        running = running_tree(dom) if dom.state.active and dom.running_xml else None
        if running is None:
            continue
        for disk in running.iterfind("devices/disk"):
            source, target = disk.find("source"), disk.find("target")
            if source is None or target is None or not target.get("dev"):
                continue
            if disk.get("type") == "volume":
                key = f"{source.get('pool')}/{source.get('volume')}"
            else:
                key = paths.get(source.get("file") or source.get("dev") or "", "")
            if key in storage.volumes:
                out.setdefault(key, (dom.name, target.get("dev", "")))
    return out


# -- checks -----------------------------------------------------------------------------


def dormant_pools(desired: Desired, found: StorageView) -> dict[str, str]:
    """Declared pools that are not running on the host, with the XML they will run
    with: what the host must be asked for the files already in their directory."""
    out = {}
    for spec in desired.pools.values():
        live = found.storage.pools.get(spec.name)
        if live is None or not live.active:
            out[spec.name] = spec.xml
    return out


def backing_paths(desired: Desired, found: StorageView) -> set[str]:
    """Backing store paths the specs give that name no volume the host lists or the
    specs declare: what the host must be asked whether it has."""
    known = {(parse(v.xml).findtext("target/path") or "").strip()
             for v in found.storage.volumes.values()}
    for spec in desired.volumes.values():
        base = pool_path(_pool_xml(spec, desired, found) or "<pool/>")
        if base:
            known.add(posixpath.join(base, spec.name))
    out = set()
    for spec in desired.volumes.values():
        path = backing_path(parse(spec.xml))
        if path and not path.startswith(VOLUME_REF) and posixpath.normpath(path) not in {
                posixpath.normpath(k) for k in known if k}:
            out.add(path)
    return out


def _at(spec: VolumeSpec, yaml_path: str, xml_path: str) -> Source:
    """The spec's line, with the field as its format spells it."""
    xml = spec.source.file.lower().endswith(".xml")
    return Source(spec.source.file, spec.source.line, xml_path if xml else yaml_path)


def check_storage(desired: Desired, found: StorageView, *, adopt: bool) -> list[SpecError]:
    """Before the first action: pools and volumes virtctl does not own (without
    --adopt), also files already in the directory of a pool not running yet (a volume
    `delete` retained, or someone else's), volumes whose pool is neither declared nor on
    the host or will not be running, backing volumes and files that do not exist."""
    errors: list[SpecError] = []
    for spec in desired.pools.values():
        live = found.storage.pools.get(spec.name)
        if live is not None and not adopt and not found.pool_managed(live):
            why = found.unreadable.get(spec.name)
            errors.append(SpecError(
                f"pool '{spec.name}' exists and is not managed by virtctl"
                + (f" (its record is unreadable: {why})" if why else "")
                + "; use --adopt to take it over", code=ErrorCode.NOT_MANAGED,
                source=spec.source))
        errors += _target_taken(spec, desired, found)
    for name, sub in found.dormant.items():
        if name in sub.unreadable and name in desired.pools:
            errors.append(SpecError(
                f"pool '{name}': its directory holds a {STATE_VOLUME} that is not virtctl's "
                f"record ({sub.unreadable[name]}); virtctl keeps its records there and "
                "never overwrites it: move it away", code=ErrorCode.NOT_MANAGED,
                source=desired.pools[name].source))
    for spec in desired.volumes.values():
        pool = found.storage.pools.get(spec.pool)
        if spec.pool not in desired.pools and pool is None:
            errors.append(SpecError(f"volume '{spec.name}': pool '{spec.pool}' is neither "
                                    "declared nor on the host", source=spec.source))
            continue
        declared_pool = desired.pools.get(spec.pool)
        if (declared_pool is not None and not declared_pool.active) or (
                declared_pool is None and pool is not None and not pool.active):
            how = ("is declared inactive (active: false)" if declared_pool is not None
                   else "is not running, and no spec declares it to start it")
            errors.append(SpecError(f"volume '{spec.pool}/{spec.name}': pool '{spec.pool}' "
                                    f"{how}; a volume needs its pool running",
                                    source=spec.source))
            continue
        live = found.storage.volumes.get(f"{spec.pool}/{spec.name}")
        if live is not None and not adopt and found.volume_record(live) is None:
            errors.append(SpecError(
                f"volume '{spec.pool}/{spec.name}' exists and is not managed by virtctl; "
                "use --adopt to take it over", code=ErrorCode.NOT_MANAGED, source=spec.source))
        dormant = found.dormant_volume(spec.pool, spec.name) if live is None else None
        if dormant is not None and dormant[1] is None and not adopt:
            where = pool_path(_pool_xml(spec, desired, found) or "<pool/>") or "?"
            errors.append(SpecError(
                f"volume '{spec.pool}/{spec.name}' exists already in the directory of pool "
                f"'{spec.pool}' ({where}, listed once the pool runs) and is not managed by "
                "virtctl: retained by an earlier delete, or made by someone else; use "
                "--adopt to take it over with its data, or name the volume differently",
                code=ErrorCode.NOT_MANAGED, source=spec.source))
        root = parse(spec.xml)
        backing = backing_volume(root)
        if backing is not None and backing not in {
                n for k, n in _names(desired, found) if k == spec.pool}:
            errors.append(SpecError(f"volume '{spec.name}': backing volume '{backing}' is "
                                    f"neither declared nor in pool '{spec.pool}'",
                                    source=spec.source))
        path = backing_path(root)
        if path is not None and found.backing_files.get(path) is False:
            errors.append(SpecError(
                f"volume '{spec.pool}/{spec.name}': backing store {path} does not exist on "
                "the host (nor is it a volume the host lists or the specs declare)",
                source=_at(spec, "backingStore.path", "backingStore/path")))
    return errors


def _target_taken(spec: PoolSpec, desired: Desired, found: StorageView) -> list[SpecError]:
    """libvirt refuses a second dir pool on one directory ("Storage source conflict"):
    another pool on the host over the declared target, which this run keeps (one not
    virtctl's, or one the specs declare too), makes the define fail mid-apply."""
    root = parse(spec.xml)
    target = (root.findtext("target/path") or "").strip()
    if root.get("type") != "dir" or not target:
        return []
    for other in found.storage.pools.values():
        other_root = parse(other.xml)
        if (other.name == spec.name or other_root.get("type") != "dir"
                or posixpath.normpath((other_root.findtext("target/path") or "").strip()
                                      or ".") != posixpath.normpath(target)):
            continue
        if other.name in desired.pools or not found.pool_managed(other):
            return [SpecError(f"pool '{spec.name}': its target path {target} is pool "
                              f"'{other.name}''s on the host; libvirt refuses a second dir "
                              "pool on one directory", code=ErrorCode.DUPLICATE,
                              source=spec.source)]
    return []


def _names(desired: Desired, found: StorageView) -> Iterable[tuple[str, str]]:
    for spec in desired.volumes.values():
        yield spec.pool, spec.name
    for vol in found.storage.volumes.values():
        yield vol.pool, vol.name
    for sub in found.dormant.values():
        for vol in sub.storage.volumes.values():
            yield vol.pool, vol.name


# -- volume XML -------------------------------------------------------------------------


def capacity_bytes(root: etree._Element) -> int | None:
    elem = root.find("capacity")
    if elem is None or not (elem.text or "").strip():
        return None
    factor = unit_bytes(elem.get("unit") or "bytes")
    return int((elem.text or "0").strip()) * (factor or 1)


def volume_format(root: etree._Element) -> str | None:
    elem = root.find("target/format")
    return elem.get("type") if elem is not None else None


def backing_path(root: etree._Element) -> str | None:
    return (root.findtext("backingStore/path") or "").strip() or None


def backing_volume(root: etree._Element) -> str | None:
    path = backing_path(root)
    return path[len(VOLUME_REF):] if path and path.startswith(VOLUME_REF) else None


def pool_path(pool_xml: str) -> str | None:
    return (parse(pool_xml).findtext("target/path") or "").strip() or None


def resolved(spec: VolumeSpec, pool_xml: str | None) -> etree._Element:
    """The volume's XML with a backing volume named by name turned into its path."""
    root = parse(spec.xml)
    name = backing_volume(root)
    if name is not None:
        base = pool_path(pool_xml) if pool_xml else None
        elem = root.find("backingStore/path")
        assert elem is not None
        elem.text = f"{base.rstrip('/')}/{name}" if base else name
    return root


# -- records ----------------------------------------------------------------------------


def _record(spec: PoolSpec | VolumeSpec, policy: Policy) -> ObjectRecord:
    common = {"spec_hash": spec_hash(spec.xml), "source": spec.source.file,
              "commit": policy.commit, "declared": metadata.encode_declared(spec.xml),
              "apply_set": policy.apply_set, "labels": spec.labels}
    if isinstance(spec, PoolSpec):
        return ObjectRecord(**common, active=spec.active, autostart=spec.autostart)
    content = spec.content.checksum if spec.content is not None else None
    return ObjectRecord(**common, delete_policy=spec.delete_policy, content=content)


def _stale_record(have: ObjectRecord | None, want: ObjectRecord) -> bool:
    """Whether the record must be written again; a changed commit alone does not. A
    record of another apply set (or of none: written before sets) moves to this run's
    set, as a domain's mark does."""
    if have is None:
        return True
    return (have.spec_hash, have.active, have.autostart, have.delete_policy, have.content,
            have.apply_set, have.labels) != (want.spec_hash, want.active, want.autostart,
                                             want.delete_policy, want.content,
                                             want.apply_set, want.labels)


def _record_reason(have: ObjectRecord | None, want: ObjectRecord) -> str:
    if have is not None and have.apply_set != want.apply_set and (
            have.spec_hash, have.delete_policy, have.content) == (
            want.spec_hash, want.delete_policy, want.content):
        was = f"set {have.apply_set!r}" if have.apply_set else "no set"
        return f"record: move from {was} to set {want.apply_set!r}"
    if have is not None and have.labels != want.labels and (
            have.spec_hash, have.delete_policy, have.content) == (
            want.spec_hash, want.delete_policy, want.content):
        return "record the spec's labels"
    return "record"


# -- pools ------------------------------------------------------------------------------


def pool_step(spec: PoolSpec, found: StorageView, policy: Policy) -> Step:
    kind, name, key = Kind.POOL, spec.name, spec.key
    root = parse(spec.xml)
    live = found.storage.pools.get(name)
    record = _record(spec, policy)
    if not (root.findtext("uuid") or "").strip():
        set_uuid(root, live.uuid if live is not None else derived_uuid("pool", name))
    xml = tostring(root, pretty=False)
    if live is None:
        actions: list[Action] = [Define(kind=kind, name=name, xml=xml, new=True)]
        if spec.build:
            actions.append(BuildPool(kind=kind, name=name))
        if spec.autostart:
            actions.append(SetAutostart(kind=kind, name=name, enabled=True))
        if spec.active:
            actions += [Start(kind=kind, name=name),
                        RecordPool(kind=kind, name=name, record=record, needs=(key,))]
        return Step(actions=tuple(actions))
    changes = tuple(diff_xml(root, parse(live.xml)))
    actions = []
    notes: list[str] = []
    if changes:
        actions.append(Define(kind=kind, name=name, xml=xml, new=False, changes=changes,
                              reason=f"{len(changes)} field(s) differ"))
    if spec.autostart != live.autostart:
        actions.append(SetAutostart(kind=kind, name=name, enabled=spec.autostart))
    restart = bool(changes) and live.active and spec.active and may_restart(spec, policy)
    pending = changes if changes and live.active and spec.active and not restart else ()
    if restart:
        why = "restart to apply " + ", ".join(c.path for c in changes)
        actions += [Destroy(kind=kind, name=name, reason=why),
                    Start(kind=kind, name=name, reason=why)]
    elif spec.active and not live.active:
        actions.append(Start(kind=kind, name=name, reason="active: no -> yes"))
    elif not spec.active and live.active:
        actions.append(Destroy(kind=kind, name=name, reason="active: yes -> no"))
    have = found.records.get(name, PoolRecord()).pool
    if spec.active and (_stale_record(have, record) or actions):
        actions.append(RecordPool(kind=kind, name=name, record=record, needs=(key,),
                                  reason=_record_reason(have, record)))
    if not spec.active and found.unreadable.get(name):
        notes.append(f"{key}: its record is unreadable ({found.unreadable[name]})")
    return Step(actions=tuple(actions), changes=changes, pending=pending, restart=restart,
                notes=tuple(notes))


# -- volumes ----------------------------------------------------------------------------


def _pool_xml(spec: VolumeSpec, desired: Desired, found: StorageView) -> str | None:
    live = found.storage.pools.get(spec.pool)
    if live is not None:
        return live.xml
    declared = desired.pools.get(spec.pool)
    return declared.xml if declared is not None else None


def volume_step(spec: VolumeSpec, desired: Desired, found: StorageView,
                policy: Policy, *, live_media: bool = True) -> Step:
    key = spec.key
    pool_key = ObjectKey(Kind.POOL, spec.pool)
    root = resolved(spec, _pool_xml(spec, desired, found))
    record = _record(spec, policy)
    needs = [pool_key]
    backing = _backing_name(spec, desired, found)
    if backing is not None:
        needs.append(ObjectKey(Kind.VOLUME, f"{spec.pool}/{backing}"))
    live = found.storage.volumes.get(f"{spec.pool}/{spec.name}")
    dormant = found.dormant_volume(spec.pool, spec.name) if live is None else None
    if dormant is not None and dormant[1] is None and not policy.adopt:
        # In the directory already, so listed once the pool runs: never created over
        # (check_storage refuses this before the first action; replans skip checks).
        return Step(notes=(f"{key}: exists already in its pool's directory and is not "
                           "managed by virtctl; use --adopt to take it over",))
    create = CreateVolume(kind=Kind.VOLUME, name=key.name, xml=tostring(root, pretty=False),
                          content=spec.content, record=record, needs=tuple(needs),
                          depth=_depth(spec, desired, found))
    if live is None and dormant is None:
        return Step(actions=(create,))
    if live is None:  # planned as of its pool running (not virtctl's: --adopt)
        assert dormant is not None
        live, have = dormant
    else:
        have = found.volume_record(live)
    if spec.content is None and have is not None and have.content is not None:
        # A spec silent about content (an export: no host says where data came from)
        # keeps the checksum of what virtctl wrote, so declaring it again is no change.
        record = replace(record, content=have.content)
    live_root = parse(live.xml)
    why = _replaced(spec, root, live_root, have)
    if why and have is None:
        # Not virtctl's (this is --adopt taking it over): it never deletes or overwrites
        # a volume it did not make, --allow-recreate or not.
        return Step(notes=(f"{key}: {', '.join(why)} would replace the data of a volume "
                           "virtctl did not make; it is never deleted or overwritten: "
                           "declare what it is to adopt it, or give the spec another name",))
    if why and spec.content is not None and spec.content.data is not None:
        # Content virtctl made (a cloud-init seed) holds nothing of anyone's: replace it.
        # The guest reads the new one when it next boots.
        return _replace_seed(key, create, found.in_use.get(key.name), live_media)
    if why:
        if not policy.allow_recreate:
            return Step(notes=(f"{key}: {', '.join(why)} would replace its data; "
                               "apply with --allow-recreate to delete and create it again",))
        reason = "recreate: " + ", ".join(why)
        return Step(actions=(DeleteVolume(kind=Kind.VOLUME, name=key.name, reason=reason),
                             create), recreate=True)
    actions: list[Action] = []
    notes: list[str] = []
    want = capacity_bytes(root)
    if want is not None and want > live.capacity:
        user = found.in_use.get(key.name)
        where = f" (live, through {user[0]} {user[1]})" if user else ""
        actions.append(ResizeVolume(kind=Kind.VOLUME, name=key.name, capacity=want,
                                    record=record, needs=(pool_key,),
                                    domain=user[0] if user else None,
                                    target=user[1] if user else None,
                                    reason=f"capacity: {live.capacity} -> {want} bytes{where}"))
    elif want is not None and want < live.capacity:
        notes.append(f"{key}: capacity {want} bytes is less than its {live.capacity}: "
                     "volumes are never shrunk (it keeps its size)")
    if not actions and _stale_record(have, record):
        actions.append(RecordVolume(kind=Kind.VOLUME, name=key.name, record=record,
                                    needs=(pool_key,), reason=_record_reason(have, record)))
    return Step(actions=tuple(actions), notes=tuple(notes))


def _replace_seed(key: ObjectKey, create: CreateVolume, user: tuple[str, str] | None,
                  live_media: bool) -> Step:
    """A seed with new content. Under a running guest the CD-ROM's medium is swapped
    live (eject, delete, create, insert), so a reboot from inside reads the new seed:
    QEMU would keep reading a deleted file it holds open. A host that cannot change
    media live leaves the seed alone while the guest runs (restart pending): the next
    apply after the guest stops replaces it."""
    if user is None:
        return Step(actions=(
            DeleteVolume(kind=Kind.VOLUME, name=key.name, reason="next-boot: new content"),
            create), recreate=False)
    domain, target = user
    if not live_media:
        return Step(notes=(
            f"{key}: new cloud-init content, but the running guest {domain} holds it in "
            f"CD-ROM {target} and its medium is not changed live (--no-live, or a host "
            f"that cannot): kept until {domain} stops (restart pending; apply again "
            "then)",))
    where = f"{domain}'s CD-ROM {target}"
    return Step(actions=(
        DeleteVolume(kind=Kind.VOLUME, name=key.name, eject=user,
                     reason=f"new content: ejected from {where} first"),
        replace(create, insert=user,
                reason=f"new content: inserted live in {where} (read at the guest's next "
                       "boot, a reboot from inside included)")), recreate=False)


def _backing_name(spec: VolumeSpec, desired: Desired, found: StorageView) -> str | None:
    """The volume of the spec's own pool under it: named by volume, or by a path in the
    pool's target directory (an overlay on a volume made in the same run is created
    after it, whichever way it names it)."""
    root = parse(spec.xml)
    name = backing_volume(root)
    if name is not None:
        return name
    path, base = backing_path(root), pool_path(_pool_xml(spec, desired, found) or "<pool/>")
    if path and base and posixpath.dirname(posixpath.normpath(path)) == posixpath.normpath(
            base):
        return posixpath.basename(posixpath.normpath(path))
    return None


def _depth(spec: VolumeSpec, desired: Desired, found: StorageView) -> int:
    """How many declared volumes lie under this one in its backing chain."""
    depth, seen = 0, {spec.name}
    backing = _backing_name(spec, desired, found)
    while backing is not None and backing not in seen:
        under = desired.volumes.get(f"{spec.pool}/{backing}")
        if under is None:
            break
        depth, seen = depth + 1, seen | {backing}
        backing = _backing_name(under, desired, found)
    return depth


def _replaced(spec: VolumeSpec, root: etree._Element, live_root: etree._Element,
              have: ObjectRecord | None) -> list[str]:
    """What differs that only a new volume can change (its data would be lost)."""
    why = []
    want_format, live_format = volume_format(root), volume_format(live_root)
    # libvirt reads a raw file holding an ISO 9660 image (a cloud-init seed) as 'iso'.
    if want_format not in (None, live_format) and {want_format, live_format} != {"raw", "iso"}:
        why.append(f"format {live_format} -> {want_format}")
    want_backing = backing_path(root)
    if want_backing != backing_path(live_root) and (want_backing or backing_path(live_root)):
        why.append(f"backing store {backing_path(live_root)} -> {want_backing}")
    if (spec.content is not None and have is not None
            and have.content != spec.content.checksum):
        why.append(f"content {have.content} -> {spec.content.checksum}")
    return why


# -- prune and delete -------------------------------------------------------------------


def _retire_volume(volume: LiveVolume, record: ObjectRecord, reason: str) -> Step:
    key = volume.key
    if record.delete_policy is DeletePolicy.DELETE:
        return Step(actions=(DeleteVolume(kind=Kind.VOLUME, name=key.name, reason=reason,
                                          needs=(ObjectKey(Kind.POOL, volume.pool),)),))
    return Step(actions=(RecordVolume(kind=Kind.VOLUME, name=key.name, record=None,
                                      reason=f"{reason}: retained (deletePolicy: retain)"),),
                notes=(f"{key}: retained with its data (deletePolicy: retain); virtctl no "
                       "longer manages it",))


def _retire_pool(pool: LivePool, reason: str, users: tuple[ObjectKey, ...]) -> Step:
    actions: list[Action] = []
    if pool.active:
        # Its directory outlives it, with the state volume: a pool defined over it later
        # (by anyone) must not inherit virtctl's claim. The volumes' records stay.
        actions.append(RecordPool(kind=Kind.POOL, name=pool.name, record=None, needs=users,
                                  reason=f"{reason}: forget the pool's record"))
        actions.append(Destroy(kind=Kind.POOL, name=pool.name, reason=reason, needs=users))
    if pool.persistent:
        actions.append(Undefine(kind=Kind.POOL, name=pool.name, reason=reason, needs=users))
    return Step(actions=tuple(actions), notes=(
        f"{pool.key}: stopped and undefined; its storage and the volumes left in it stay",))


def prune_storage(desired: Desired, found: StorageView, policy: Policy,
                  leaving: frozenset[str] = frozenset()) -> dict[ObjectKey, Step]:
    """Managed pools and volumes absent from the specs, of this run's apply set (or a set
    it names with --prune-set) only: a record of another set, or of none, is never
    reached. `leaving`: the guests this plan prunes. Kept, with a note: a volume to be
    deleted that a running guest staying on the host uses, a pool that still holds
    volumes virtctl manages and this plan keeps, and an inactive pool, whose set cannot
    be read (docs/storage.md, "Apply sets")."""
    reason = "pruned: absent from the specs"
    out: dict[ObjectKey, Step] = {}
    for volume in found.storage.volumes.values():
        record = found.volume_record(volume)
        if (record is None or volume.key.name in desired.volumes
                or not set_in_scope(record.apply_set, policy)
                or not labels_in_scope(record.labels, volume.key, policy)):
            continue
        user = found.in_use.get(volume.key.name)
        if (user is not None and user[0] not in leaving
                and record.delete_policy is DeletePolicy.DELETE):
            out[volume.key] = Step(notes=(
                f"{volume.key}: not pruned: running guest {user[0]} uses it ({user[1]})",))
            continue
        out[volume.key] = _retire_volume(volume, record, reason)
    for pool in found.storage.pools.values():
        if pool.name in desired.pools or not found.pool_managed(pool):
            continue
        have = found.records.get(pool.name)
        if have is None or have.pool is None:
            # Recognised by its derived uuid while inactive: its record, and so its set,
            # cannot be read. Another set's pool would look the same: leave it.
            out[pool.key] = Step(notes=(
                f"{pool.key}: not pruned: it is inactive, so the apply set in its record "
                "cannot be read (start it to let --prune judge it, or delete it with "
                "`virtctl delete -f` and its spec)",))
            continue
        if not set_in_scope(have.pool.apply_set, policy) or not labels_in_scope(
                have.pool.labels, pool.key, policy):
            continue
        kept = sorted({*(str(v.key) for v in found.storage.volumes.values()
                         if v.pool == pool.name and found.volume_record(v) is not None
                         and not out.get(v.key, Step()).actions),
                       *(str(v.key) for v in desired.volumes.values() if v.pool == pool.name)})
        if kept:
            out[pool.key] = Step(notes=(
                f"{pool.key}: not pruned: it holds volumes virtctl keeps managing "
                f"({', '.join(kept[:5])}{', ...' if len(kept) > 5 else ''})",))
            continue
        out[pool.key] = _retire_pool(pool, reason, _volumes_in(out, pool.name))
    return out


def delete_storage(desired: Desired, found: StorageView,
                   leaving: frozenset[str] = frozenset()) -> tuple[dict[ObjectKey, Step],
                                                                   list[str]]:
    """`delete`: the managed pools and volumes the specs name (volumes first). Named,
    so of any apply set; but a volume a running guest staying on the host uses
    (`leaving`: the guests this delete removes) is not deleted under it."""
    out: dict[ObjectKey, Step] = {}
    notes: list[str] = []
    for spec in desired.volumes.values():
        volume = found.storage.volumes.get(spec.key.name)
        if volume is None:
            continue
        record = found.volume_record(volume)
        if record is None:
            notes.append(f"{spec.key} is not managed by virtctl; left alone")
            continue
        user = found.in_use.get(volume.key.name)
        if (user is not None and user[0] not in leaving
                and record.delete_policy is DeletePolicy.DELETE):
            notes.append(f"{spec.key}: not deleted: running guest {user[0]} uses it "
                         f"({user[1]}); delete or stop that guest first")
            continue
        out[volume.key] = _retire_volume(volume, record, "deleted")
    for pool_spec in desired.pools.values():
        pool = found.storage.pools.get(pool_spec.name)
        if pool is None:
            continue
        if not found.pool_managed(pool):
            notes.append(f"{pool.key} is not managed by virtctl; left alone")
            continue
        out[pool.key] = _retire_pool(pool, "deleted", _volumes_in(out, pool.name))
    return out, notes


def _volumes_in(steps: Mapping[ObjectKey, Step], pool: str) -> tuple[ObjectKey, ...]:
    return tuple(k for k in steps if k.kind is Kind.VOLUME and k.name.startswith(pool + "/"))


def plan_storage(desired: Desired, found: StorageView, policy: Policy,
                 leaving: frozenset[str] = frozenset(), *,
                 live_media: bool = True) -> dict[ObjectKey, Step]:
    """Steps for the declared pools and volumes, and with --prune those of the run's
    sets absent from the specs; `leaving`: the guests the plan prunes; `live_media`:
    whether the host changes a running guest's CD-ROM medium (LiveOp.UPDATE)."""
    steps: dict[ObjectKey, Step] = {}
    for pool in desired.pools.values():
        steps[pool.key] = pool_step(pool, found, policy)
    for volume in desired.volumes.values():
        steps[volume.key] = volume_step(volume, desired, found, policy,
                                        live_media=live_media)
    if policy.prune:
        steps.update(prune_storage(desired, found, policy, leaving))
    return steps
