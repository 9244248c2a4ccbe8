"""What the planner decides for one object (`Step`), its options (`Policy`), and the
helpers domain and network planning share: the definition to send, field changes with
their origin, runtime changes, autostart.

Called by `virtctl.reconciler.plan.plan` and `virtctl.reconciler.plan.plan_network`; `Policy` and
`spec_hash` are re-exported by `plan`, where callers import them from. Pure: no driver
calls, no clock. It must not import `plan` or `plan_network` (they import it).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from ... import metadata
from ...model import (
    ChangeClass,
    DomainSpec,
    Labels,
    LastApplied,
    LiveDomain,
    NetworkSpec,
    ObjectKey,
    Ownership,
    PoolSpec,
    UpdatePolicy,
)
from ...xmlutil import parse, tostring
from virtctl.reconciler.trees import live_tree
from .actions import Action, SetAutostart
from .diff import ChangeOp, FieldChange, Origin, diff_xml, removed
from .essence import essence
from .identity import fill_domain_identity, fill_network_identity
from .policy import Policy


def set_in_scope(apply_set: str | None, policy: Policy) -> bool:
    """Whether --prune may delete an object recorded in `apply_set` (None: no
    virtctl mark or record, never): this run's own set, or one it names with
    --prune-set. Nothing else widens it: not --prune-all, not empty specs."""
    return apply_set is not None and apply_set in policy.pruned_sets


def labels_in_scope(labels: Labels, key: ObjectKey, policy: Policy) -> bool:
    """Under a selector (-l), whether --prune may reach an object with these recorded
    labels: they match, and no unselected spec declares it (`Policy.protected`)."""
    if str(key) in policy.protected:
        return False
    if not policy.selector:
        return True
    from ...selectors import parse_selector

    return parse_selector(policy.selector).matches(labels)


@dataclass(frozen=True, slots=True)
class Step:
    """What the planner decided for one object."""

    actions: tuple[Action, ...] = ()
    changes: tuple[FieldChange, ...] = ()
    pending: tuple[FieldChange, ...] = ()
    notes: tuple[str, ...] = ()
    restart: bool = False
    recreate: bool = False


def spec_hash(xml: str) -> str:
    return "sha256:" + hashlib.sha256(xml.encode()).hexdigest()


def may_restart(spec: DomainSpec | NetworkSpec | PoolSpec, policy: Policy) -> bool:
    if spec.update_policy is not None:
        return spec.update_policy.allows_restart
    return policy.allow_restart


def live_allowed(spec: DomainSpec | NetworkSpec, policy: Policy) -> bool:
    """Whether changes may reach this running object live (devices, vcpus, network
    entries): not with --no-live, nor for a spec whose updatePolicy is next-boot."""
    return policy.live and spec.update_policy is not UpdatePolicy.NEXT_BOOT


def as_live(
    changes: Iterable[FieldChange], covered: dict[str, str]
) -> tuple[FieldChange, ...]:
    """`changes` with those a live action applies classed live, naming the operation."""
    return tuple(
        dataclasses.replace(c, change_class=ChangeClass.LIVE, operation=op)
        if (op := live_operation(c.path, covered)) is not None else c for c in changes)


def same_field(path: str, other: str) -> bool:
    """Whether two change paths name one field: equal, or within one device one under
    the other. The definition and the running guest can differ at different depths (the
    definition gains a CD-ROM's `<source>` where the guest only changes its `@file`);
    elsewhere depth matters (`vcpu` is the maximum, `vcpu/@current` the running count)."""
    if path == other:
        return True
    return path.startswith("devices/") and (
        other.startswith(path + "/") or path.startswith(other + "/"))


def live_operation(path: str, covered: dict[str, str]) -> str | None:
    """The live operation that applies the field at `path`, if one does."""
    found = covered.get(path)
    if found is not None or not path.startswith("devices/"):
        return found
    return next((op for p, op in covered.items() if same_field(path, p)), None)


def define_xml(
    root: etree._Element, spec: DomainSpec | NetworkSpec, policy: Policy, *, last_use: bool = False
) -> str:
    """The definition to send: `root` carrying the ownership mark and the last-applied
    record of what was declared. `root` is left unchanged (the mark goes on a copy)
    unless this is its `last_use`: the caller will not look at it again."""
    if isinstance(spec, DomainSpec):
        record = LastApplied(metadata.encode_declared(spec.xml), state=str(spec.state),
                             autostart=spec.autostart)
    else:
        record = LastApplied(metadata.encode_declared(spec.xml), autostart=spec.autostart,
                             active=spec.active)
    out = root if last_use else copy.deepcopy(root)
    metadata.set_owner(out, Ownership(spec_hash=spec_hash(spec.xml), source=spec.source.file,
                                      commit=policy.commit, last_applied=record,
                                      apply_set=policy.apply_set, labels=spec.labels))
    # Compact: the hypervisor stores it in its own layout anyway.
    return tostring(out, pretty=False)


def moved_set(owner: Ownership | None, policy: Policy) -> bool:
    """Whether a managed object belongs to another apply set than this run's: defining
    it again moves it into this set (its mark only; the guest sees nothing)."""
    return owner is not None and bool(policy.apply_set) and owner.apply_set != policy.apply_set


def relabeled(owner: Ownership | None, spec: DomainSpec | NetworkSpec) -> bool:
    """Whether a managed object's recorded labels differ from its spec's: defining it
    again rewrites its mark only (labels are not part of the definition libvirt runs)."""
    return owner is not None and owner.labels != spec.labels


def define_reason(changes: tuple[FieldChange, ...], owner: Ownership | None, persistent: bool,
                  policy: Policy) -> str:
    if not persistent:
        return "make the transient object persistent"
    if owner is None:
        return "adopt: mark as managed by virtctl"
    if not changes and moved_set(owner, policy):
        was = f"set {owner.apply_set!r}" if owner.apply_set else "no set"
        return f"move from {was} to set {policy.apply_set!r}"
    if not changes:
        return "record the spec's labels"
    return f"{len(changes)} field(s) differ"


def _previous(
    spec: DomainSpec | NetworkSpec, owner: Ownership | None, live_root: etree._Element
) -> etree._Element | None:
    """The declaration virtctl last applied, identity filled in from the live object;
    None when there is none or it equals the current spec (nothing was changed)."""
    if owner is None or owner.last_applied is None or owner.spec_hash == spec_hash(spec.xml):
        return None
    text = metadata.declared_xml(owner.last_applied)
    if text is None:
        return None
    previous = parse(text)
    if isinstance(spec, DomainSpec):
        fill_domain_identity(previous, live_root)
    else:
        fill_network_identity(previous, live_root)
    return previous


def field_changes(
    spec: DomainSpec | NetworkSpec, owner: Ownership | None,
    root: etree._Element, live_root: etree._Element,
) -> list[FieldChange]:
    """Declared fields that differ, plus fields the spec no longer declares that the
    object still has; each tagged with its origin (spec change or drift)."""
    found = diff_xml(root, live_root)
    previous = _previous(spec, owner, live_root)
    if previous is None:
        origin = Origin.UNKNOWN if owner is None or owner.last_applied is None else Origin.DRIFT
        return [dataclasses.replace(c, origin=origin) for c in found]
    gone = removed(essence(previous), essence(root), live=essence(live_root))
    edited = {c.path for c in diff_xml(root, previous)} | {c.path for c in gone}
    return [dataclasses.replace(c, origin=Origin.SPEC if c.path in edited else Origin.DRIFT)
            for c in (*found, *gone)]


def removed_in(
    spec: DomainSpec | NetworkSpec, owner: Ownership | None, root: etree._Element,
    other_root: etree._Element,
) -> set[str]:
    """Paths of what the spec no longer declares that `other_root` (say, the running
    definition) still has."""
    previous = _previous(spec, owner, other_root)
    if previous is None:
        return set()
    return {c.path for c in removed(essence(previous), essence(root), live=essence(other_root))}


def runtime_change(
    path: str, old: str, new: str, *, recorded: str | None, origin_known: bool
) -> FieldChange:
    if not origin_known:
        origin = Origin.UNKNOWN
    else:
        origin = Origin.DRIFT if recorded == new else Origin.SPEC
    return FieldChange(ChangeOp.CHANGE, path, old, new, change_class=ChangeClass.LIVE,
                       origin=origin)


def yes_no(flag: bool | None) -> str | None:
    return None if flag is None else ("yes" if flag else "no")


def autostart_steps(
    spec: DomainSpec | NetworkSpec, have: bool, owner: Ownership | None
) -> tuple[list[Action], list[FieldChange]]:
    if spec.autostart == have:
        return [], []
    record = owner.last_applied if owner is not None else None
    change = runtime_change("autostart", yes_no(have) or "", yes_no(spec.autostart) or "",
                            recorded=yes_no(record.autostart) if record else None,
                            origin_known=record is not None)
    return [SetAutostart(kind=spec.key.kind, name=spec.name, enabled=spec.autostart)], [change]


def paths(changes: Iterable[FieldChange], cls: ChangeClass) -> str:
    return ", ".join(c.path for c in changes if c.change_class is cls)


def recreate_refused(spec: DomainSpec | NetworkSpec, changes: tuple[FieldChange, ...]) -> Step:
    """Identity changes the spec does not allow to recreate: say so, do nothing."""
    return Step(changes=changes, notes=(
        f"{spec.key}: {paths(changes, ChangeClass.RECREATE)} cannot change in place; "
        "set updatePolicy: recreate to undefine and define it again",))


def users_of(network: str, domains: Iterable[LiveDomain]) -> tuple[ObjectKey, ...]:
    users = []
    for dom in domains:
        root = live_tree(dom)  # once per guest, however many networks go
        if any(
            s.get("network") == network
            for s in root.iterfind("devices/interface[@type='network']/source")
        ):
            users.append(dom.key)
    return tuple(users)
