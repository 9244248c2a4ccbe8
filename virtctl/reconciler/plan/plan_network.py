"""Network planning: the step for one declared network (create, update, restart, recreate,
start or stop) and the actions that delete a live one.

Called only by `virtctl.reconciler.plan.plan` (`plan` for `network_step`, `plan`'s pruning and
`plan_delete` for `delete_network`). Pure: no driver calls, no clock. Input is assumed to
have passed `validate.check`. It must not import `plan` (which imports it).
"""

from __future__ import annotations

from lxml import etree

from ...model import (
    ChangeClass,
    Kind,
    Live,
    LiveNetwork,
    LiveOp,
    NetworkSpec,
    ObjectKey,
    UpdatePolicy,
)
from virtctl.reconciler.trees import live_tree, private, running_tree, spec_tree
from .actions import Action, Define, Destroy, SetAutostart, Start, Undefine
from .classify import classified, stale_network_fields, worst
from .diff import FieldChange
from .identity import fill_network_identity
from .liverules import LivePlan, network_live
from .steps import (
    Policy,
    Step,
    as_live,
    autostart_steps,
    define_reason,
    moved_set,
    relabeled,
    define_xml,
    field_changes,
    live_allowed,
    may_restart,
    paths,
    recreate_refused,
    runtime_change,
    users_of,
    yes_no,
)


def network_step(
    spec: NetworkSpec, live: LiveNetwork | None, policy: Policy, host: Live,
    live_ops: frozenset[LiveOp] = frozenset(LiveOp),
) -> Step:
    kind, name = Kind.NETWORK, spec.name
    root = private(spec_tree(spec))  # edited below: identity, bridge
    live_root = live_tree(live) if live is not None else None  # shared: read only
    fill_network_identity(root, live_root)
    if live is None or live_root is None:
        return Step(actions=tuple(_create_network(spec, root, policy)))
    changes = classified(field_changes(spec, live.owner, root, live_root), network=True,
                         active=live.active)
    if worst(changes) is ChangeClass.RECREATE:
        return _recreate_network(spec, live, root, changes, policy)
    actions: list[Action] = []
    if (changes or not live.managed or not live.persistent
            or moved_set(live.owner, policy) or relabeled(live.owner, spec)):
        actions.append(
            Define(kind=kind, name=name, xml=define_xml(root, spec, policy), new=False,
                   changes=changes,
                   reason=define_reason(changes, live.owner, live.persistent, policy))
        )
    autostart, runtime = autostart_steps(spec, live.autostart, live.owner)
    actions += autostart
    stale = _stale(changes, root, live)
    hot = LivePlan()
    if stale and spec.active and live.active and live_allowed(spec, policy):
        # Where the host keeps one definition per network (libvirt's test driver), the
        # one it shows is the one the network runs.
        apart = running_tree(live)
        running = apart if apart is not None else live_root
        hot = network_live(stale, root, running, name=name, support=live_ops)
    rest = tuple(c for c in stale if c.path not in hot.covered)
    if rest and spec.active and may_restart(spec, policy):
        restart, note = _restart_network(spec, rest, host)
        return Step(actions=tuple(actions + restart), changes=(*changes, *runtime),
                    restart=True, notes=(note,))
    power, state_changes = _network_power(spec, live)
    changes = as_live(changes, hot.covered)
    return Step(actions=tuple(actions + list(hot.actions) + power),
                changes=(*changes, *runtime, *state_changes),
                pending=rest if spec.active else ())


def _stale(
    changes: tuple[FieldChange, ...], root: etree._Element, live: LiveNetwork
) -> tuple[FieldChange, ...]:
    """Restart-class differences between what was declared and what the network runs:
    this run's changes, and those an earlier redefinition left waiting for a restart
    (the running definition still lacks them, or still has what the definition
    dropped: a removal stays pending until the network restarts; where the host keeps
    no running definition apart, only this run's are known)."""
    found = {c.path: c for c in changes if c.change_class is ChangeClass.RESTART}
    running = running_tree(live) if live.active else None
    if running is not None:
        for change in stale_network_fields(root, running, live_tree(live)):
            found.setdefault(change.path, change)
    return tuple(found.values())


def _restart_network(
    spec: NetworkSpec, stale: tuple[FieldChange, ...], host: Live
) -> tuple[list[Action], str]:
    """Destroy and start again, and a note naming the running guests that lose their link."""
    kind, name = Kind.NETWORK, spec.name
    why = "restart to apply " + ", ".join(c.path for c in stale)
    users = users_of(name, (d for d in host.domains.values() if d.state.active))
    note = (f"{spec.key} restarts: running guests on it ({', '.join(map(str, users))}) "
            "lose their connection until their interfaces are reattached"
            if users else f"{spec.key} restarts: no running guest uses it")
    actions: list[Action] = [Destroy(kind=kind, name=name, reason=why),
                             Start(kind=kind, name=name, reason=why)]
    return actions, note


def _network_power(spec: NetworkSpec, live: LiveNetwork) -> tuple[list[Action], list[FieldChange]]:
    kind, name = Kind.NETWORK, spec.name
    if spec.active == live.active:
        return [], []
    record = live.owner.last_applied if live.owner is not None else None
    change = runtime_change("active", yes_no(live.active) or "", yes_no(spec.active) or "",
                            recorded=yes_no(record.active) if record else None,
                            origin_known=record is not None)
    if spec.active:
        return [Start(kind=kind, name=name, reason="active: no -> yes")], [change]
    return [Destroy(kind=kind, name=name, reason="active: yes -> no")], [change]


def _create_network(spec: NetworkSpec, root: etree._Element, policy: Policy) -> list[Action]:
    kind, name = Kind.NETWORK, spec.name
    actions: list[Action] = [
        Define(kind=kind, name=name, xml=define_xml(root, spec, policy, last_use=True),
               new=True)]
    if spec.autostart:
        actions.append(SetAutostart(kind=kind, name=name, enabled=True))
    if spec.active:
        actions.append(Start(kind=kind, name=name))
    return actions


def _recreate_network(
    spec: NetworkSpec, live: LiveNetwork, root: etree._Element,
    changes: tuple[FieldChange, ...], policy: Policy,
) -> Step:
    if spec.update_policy is not UpdatePolicy.RECREATE:
        return recreate_refused(spec, changes)
    why = "recreate: " + paths(changes, ChangeClass.RECREATE)
    actions: list[Action] = []
    if live.active:
        actions.append(Destroy(kind=Kind.NETWORK, name=spec.name, reason=why))
    if live.persistent:
        actions.append(Undefine(kind=Kind.NETWORK, name=spec.name, reason=why))
    actions += _create_network(spec, root, policy)
    # Active again afterwards only when the spec wants it active.
    return Step(actions=tuple(actions), changes=changes, recreate=True,
                restart=live.active and spec.active)


def delete_network(
    live: LiveNetwork, users: tuple[ObjectKey, ...], *, reason: str
) -> list[Action]:
    kind, name = Kind.NETWORK, live.name
    actions: list[Action] = []
    if live.active:
        actions.append(Destroy(kind=kind, name=name, needs=users, reason=reason))
    if live.persistent:
        actions.append(Undefine(kind=kind, name=name, needs=users, reason=reason))
    return actions
