"""The planner: `plan(desired, live, *, policy) -> Plan`, and `plan_delete` for `delete`.

Pure: no driver calls, no clock. Definition, power state, autostart and deletion are
separate axes with separate actions; ordering comes from one phase table (actions.py),
then kind and name, so the same inputs always give the same plan. Input is assumed to
have passed `validate.check` (ownership, references, capabilities).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from .. import metadata
from ..capabilities import HostCapabilities
from ..model import (
    Desired,
    DomainSpec,
    DomainState,
    Kind,
    Live,
    LiveDomain,
    LiveNetwork,
    NetworkSpec,
    ObjectKey,
    Ownership,
)
from ..xmlutil import parse, tostring
from .actions import (
    Action,
    Define,
    Destroy,
    Resume,
    SetAutostart,
    Shutdown,
    Start,
    Suspend,
    Undefine,
    phase_of,
)
from .diff import FieldChange, diff_xml
from .identity import fill_domain_identity, fill_network_identity, keep_host_machine


@dataclass(frozen=True, slots=True)
class Policy:
    prune: bool = False
    adopt: bool = False
    shutdown_timeout: float = 60.0
    force_stop: bool = False  # destroy a guest that ignores shutdown when its state says shutoff
    commit: str = ""  # git commit the specs come from, recorded in the ownership mark


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()
    creates: frozenset[ObjectKey] = field(default_factory=frozenset)
    deletes: frozenset[ObjectKey] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not self.actions

    def keys(self) -> list[ObjectKey]:
        """Objects the plan touches, in plan order."""
        seen: dict[ObjectKey, None] = {}
        for action in self.actions:
            seen.setdefault(action.key, None)
        return list(seen)


def spec_hash(xml: str) -> str:
    return "sha256:" + hashlib.sha256(xml.encode()).hexdigest()


def _ordered(actions: Iterable[Action]) -> tuple[Action, ...]:
    # Stable sort: within one object, actions keep the order the planner emitted them.
    return tuple(sorted(actions, key=lambda a: (phase_of(a), a.kind, a.name)))


def plan(
    desired: Desired,
    live: Live,
    *,
    policy: Policy = Policy(),
    caps: HostCapabilities | None = None,
) -> Plan:
    """The actions that make `live` match `desired`. `caps` (the host's capabilities)
    lets declared machine aliases match the versioned machines the host stores."""
    actions: list[Action] = []
    creates: set[ObjectKey] = set()
    deletes: set[ObjectKey] = set()
    for net in desired.networks.values():
        current = live.networks.get(net.name)
        if current is None:
            creates.add(net.key)
        actions.extend(_network_actions(net, current, policy))
    for dom in desired.domains.values():
        current_dom = live.domains.get(dom.name)
        if current_dom is None:
            creates.add(dom.key)
        actions.extend(_domain_actions(dom, current_dom, policy, caps))
    if policy.prune:
        doomed_domains = [
            d for d in live.domains.values() if d.managed and d.name not in desired.domains
        ]
        doomed_networks = [
            n for n in live.networks.values() if n.managed and n.name not in desired.networks
        ]
        for d in doomed_domains:
            deletes.add(d.key)
            actions.extend(_delete_domain(d, policy, reason="pruned: absent from the specs"))
        for n in doomed_networks:
            deletes.add(n.key)
            users = _users_of(n.name, doomed_domains)
            actions.extend(_delete_network(n, users, reason="pruned: absent from the specs"))
    return Plan(actions=_ordered(actions), creates=frozenset(creates), deletes=frozenset(deletes))


def plan_delete(desired: Desired, live: Live, *, policy: Policy = Policy()) -> Plan:
    """Stop and undefine every managed object the specs name; leave the rest alone."""
    actions: list[Action] = []
    notes: list[str] = []
    deletes: set[ObjectKey] = set()
    doomed: list[LiveDomain] = []
    for spec in desired.domains.values():
        found = live.domains.get(spec.name)
        if found is None:
            continue
        if not found.managed:
            notes.append(f"domain/{spec.name} is not managed by virtctl; left alone")
            continue
        doomed.append(found)
        deletes.add(found.key)
        actions.extend(_delete_domain(found, policy, reason="deleted"))
    for net in desired.networks.values():
        found_net = live.networks.get(net.name)
        if found_net is None:
            continue
        if not found_net.managed:
            notes.append(f"network/{net.name} is not managed by virtctl; left alone")
            continue
        deletes.add(found_net.key)
        actions.extend(_delete_network(found_net, _users_of(net.name, doomed), reason="deleted"))
    return Plan(actions=_ordered(actions), notes=tuple(notes), deletes=frozenset(deletes))


# -- domains --------------------------------------------------------------------------


def _define_xml(
    root: etree._Element, spec: DomainSpec | NetworkSpec, policy: Policy
) -> str:
    metadata.set_owner(
        root,
        Ownership(spec_hash=spec_hash(spec.xml), source=spec.source.file, commit=policy.commit),
    )
    return tostring(root)


def _domain_actions(
    spec: DomainSpec, live: LiveDomain | None, policy: Policy, caps: HostCapabilities | None
) -> list[Action]:
    kind, name = Kind.DOMAIN, spec.name
    nets = tuple(ObjectKey(Kind.NETWORK, n) for n in spec.networks)
    root = parse(spec.xml)
    live_root = parse(live.xml) if live is not None else None
    fill_domain_identity(root, live_root)
    keep_host_machine(root, live_root, caps)
    actions: list[Action] = []
    if live is None or live_root is None:
        actions.append(Define(kind=kind, name=name, xml=_define_xml(root, spec, policy), new=True))
        if spec.autostart:
            actions.append(SetAutostart(kind=kind, name=name, enabled=True))
        if spec.state is not DomainState.SHUTOFF:
            actions.append(Start(kind=kind, name=name, needs=nets))
        if spec.state is DomainState.PAUSED:
            actions.append(Suspend(kind=kind, name=name))
        return actions
    changes = tuple(diff_xml(root, live_root))
    if changes or not live.managed or not live.persistent:
        reason = _define_reason(changes, live.managed, live.persistent)
        actions.append(
            Define(kind=kind, name=name, xml=_define_xml(root, spec, policy), new=False,
                   changes=changes, reason=reason)
        )
    if spec.autostart != live.autostart:
        actions.append(SetAutostart(kind=kind, name=name, enabled=spec.autostart))
    actions.extend(_power_actions(spec, live, nets, policy))
    return actions


def _define_reason(changes: tuple[FieldChange, ...], managed: bool, persistent: bool) -> str:
    if not persistent:
        return "make the transient object persistent"
    if not managed:
        return "adopt: mark as managed by virtctl"
    return f"{len(changes)} field(s) differ"


def _power_actions(
    spec: DomainSpec, live: LiveDomain, nets: tuple[ObjectKey, ...], policy: Policy
) -> list[Action]:
    kind, name, have, want = Kind.DOMAIN, spec.name, live.state, spec.state
    why = f"state: {have} -> {want}"
    if want is DomainState.SHUTOFF:
        if have.active:
            return [Shutdown(kind=kind, name=name, reason=why,
                             timeout=policy.shutdown_timeout, force=policy.force_stop)]
        return []
    if not have.active:
        out: list[Action] = [Start(kind=kind, name=name, needs=nets, reason=why)]
        if want is DomainState.PAUSED:
            out.append(Suspend(kind=kind, name=name, reason=why))
        return out
    if want is DomainState.RUNNING and have is DomainState.PAUSED:
        return [Resume(kind=kind, name=name, reason=why)]
    if want is DomainState.PAUSED and have in (DomainState.RUNNING, DomainState.BLOCKED):
        return [Suspend(kind=kind, name=name, reason=why)]
    return []


def _delete_domain(live: LiveDomain, policy: Policy, *, reason: str) -> list[Action]:
    kind, name = Kind.DOMAIN, live.name
    actions: list[Action] = []
    if live.state.active:
        # The guest is going away: ask it to shut down, then power it off after the timeout.
        actions.append(Shutdown(kind=kind, name=name, reason=reason,
                                timeout=policy.shutdown_timeout, force=True))
    if live.persistent:
        actions.append(Undefine(kind=kind, name=name, reason=reason))
    return actions


def _users_of(network: str, domains: Iterable[LiveDomain]) -> tuple[ObjectKey, ...]:
    users = []
    for dom in domains:
        root = parse(dom.xml)
        if any(
            s.get("network") == network
            for s in root.iterfind("devices/interface[@type='network']/source")
        ):
            users.append(dom.key)
    return tuple(users)


# -- networks -------------------------------------------------------------------------


def _network_actions(spec: NetworkSpec, live: LiveNetwork | None, policy: Policy) -> list[Action]:
    kind, name = Kind.NETWORK, spec.name
    root = parse(spec.xml)
    live_root = parse(live.xml) if live is not None else None
    fill_network_identity(root, live_root)
    actions: list[Action] = []
    if live is None or live_root is None:
        actions.append(Define(kind=kind, name=name, xml=_define_xml(root, spec, policy), new=True))
        if spec.autostart:
            actions.append(SetAutostart(kind=kind, name=name, enabled=True))
        if spec.active:
            actions.append(Start(kind=kind, name=name))
        return actions
    changes = tuple(diff_xml(root, live_root))
    if changes or not live.managed or not live.persistent:
        actions.append(
            Define(kind=kind, name=name, xml=_define_xml(root, spec, policy), new=False,
                   changes=changes, reason=_define_reason(changes, live.managed, live.persistent))
        )
    if spec.autostart != live.autostart:
        actions.append(SetAutostart(kind=kind, name=name, enabled=spec.autostart))
    if spec.active and not live.active:
        actions.append(Start(kind=kind, name=name, reason="active: no -> yes"))
    elif not spec.active and live.active:
        actions.append(Destroy(kind=kind, name=name, reason="active: yes -> no"))
    return actions


def _delete_network(
    live: LiveNetwork, users: tuple[ObjectKey, ...], *, reason: str
) -> list[Action]:
    kind, name = Kind.NETWORK, live.name
    actions: list[Action] = []
    if live.active:
        actions.append(Destroy(kind=kind, name=name, needs=users, reason=reason))
    if live.persistent:
        actions.append(Undefine(kind=kind, name=name, needs=users, reason=reason))
    return actions
