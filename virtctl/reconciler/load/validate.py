"""Checks run on every spec before the first action. Pure.

`check_specs` looks across the loaded files (duplicate names, uuids, MACs, bridges);
`check_host` looks at the specs against one host's snapshot and capabilities (networks
referenced that exist nowhere, objects virtctl does not own, identity clashes, bridges
another network uses, guests the host cannot run). Each returns every problem it
finds, each naming its spec's source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ...capabilities import (
    GuestRequest,
    HostCapabilities,
    check_guest,
    device_problems,
)
from ...errors import ErrorCode, Source, SpecError
from ...model import (
    Desired,
    DomainSpec,
    Live,
    LiveDomain,
    LiveNetwork,
    NetworkSpec,
    ObjectKey,
    UpdatePolicy,
)
from virtctl.reconciler.trees import guest_of, live_tree, spec_tree


def _dup(what: str, value: str, first: Source, again: Source, path: str) -> SpecError:
    return SpecError(
        f"duplicate {what} {value!r} (first declared at {first})",
        code=ErrorCode.DUPLICATE,
        source=Source(again.file, again.line, path),
    )


def check_specs(specs: Sequence[DomainSpec | NetworkSpec]) -> list[SpecError]:
    errors: list[SpecError] = []
    seen: dict[tuple[str, str, str, str | None], Source] = {}

    def claim(kind: str, what: str, value: str, spec_source: Source, path: str,
              host: str | None = None) -> None:
        # Names, uuids and bridges are unique per host (`connect:` as written here;
        # hosts.group_by_host compares resolved URIs); MACs across all hosts, since
        # hosts may share a network segment.
        key = (kind, what, value, host)
        if key in seen:
            errors.append(_dup(what, value, seen[key], spec_source, path))
        else:
            seen[key] = spec_source

    for spec in specs:
        kind = "domain" if isinstance(spec, DomainSpec) else "network"
        claim(kind, f"{kind} name", spec.name, spec.source, "name", spec.connect)
        if spec.uuid:
            claim(kind, f"{kind} uuid", spec.uuid, spec.source, "uuid", spec.connect)
        if isinstance(spec, DomainSpec):
            for mac in spec.macs:
                claim("mac", "MAC address", mac, spec.source, "devices/interface/mac")
        elif spec.bridge:
            claim("bridge", "bridge name", spec.bridge, spec.source, "bridge/@name",
                  spec.connect)
    return errors


def check_host(
    desired: Desired,
    live: Live,
    caps: HostCapabilities | None,
    *,
    adopt: bool = False,
    prune: bool = False,
    verified: frozenset[ObjectKey] = frozenset(),
    prune_sets: frozenset[str] | None = None,
    selector: str = "",
    protected: tuple[str, ...] = (),
) -> list[SpecError]:
    """Every problem of the specs against this host. Objects in `verified` passed the
    ownership and capability checks before with exactly these inputs (memo.py).
    `prune_sets`: the apply sets --prune reaches (None: every managed object)."""
    errors: list[SpecError] = []
    unverified = [s for s in desired if s.key not in verified]
    errors.extend(_ownership(unverified, live, adopt=adopt))
    errors.extend(_references(desired, live, prune=prune, sets=prune_sets,
                              selector=selector, protected=protected))
    errors.extend(_bridges(desired, live))
    if caps is not None:
        errors.extend(_capabilities((s for s in unverified if isinstance(s, DomainSpec)), caps))
    return errors


def _ownership(
    specs: Iterable[DomainSpec | NetworkSpec], live: Live, *, adopt: bool
) -> Iterable[SpecError]:
    everything: list[LiveDomain | LiveNetwork] = [*live.domains.values(),
                                                 *live.networks.values()]
    owners = {(o.key.kind, o.uuid.lower()): o for o in everything}
    for spec in specs:
        found = live.get(spec.key)
        if found is None:
            other = owners.get((spec.key.kind, spec.uuid)) if spec.uuid else None
            if other is not None:
                yield SpecError(
                    f"uuid {spec.uuid} already belongs to {other.key} on the host",
                    code=ErrorCode.DUPLICATE,
                    source=Source(spec.source.file, spec.source.line, "uuid"),
                )
            continue
        if not found.managed and not adopt:
            yield SpecError(
                f"{spec.key} exists on the host but is not managed by virtctl; "
                "use --adopt to take it over",
                code=ErrorCode.NOT_MANAGED,
                source=Source(spec.source.file, spec.source.line, "name"),
            )
        if spec.update_policy is UpdatePolicy.RECREATE:
            continue  # identity changes are planned as undefine + define
        if spec.uuid and spec.uuid != found.uuid.lower():
            yield SpecError(
                f"{spec.key} exists with uuid {found.uuid}, the spec says {spec.uuid}; "
                "a uuid cannot change in place (set updatePolicy: recreate, or delete "
                "the object first)",
                code=ErrorCode.INVALID_SPEC,
                source=Source(spec.source.file, spec.source.line, "uuid"),
            )
        if isinstance(spec, DomainSpec) and isinstance(found, LiveDomain):
            yield from _type_change(spec, found)


def _type_change(spec: DomainSpec, found: LiveDomain) -> Iterable[SpecError]:
    want, have = spec_tree(spec).get("type"), live_tree(found).get("type")
    if want and have and want != have:
        yield SpecError(
            f"{spec.key} exists with domain type {have}, the spec says {want}; the type "
            "cannot change in place (set updatePolicy: recreate, or delete the object first)",
            code=ErrorCode.INVALID_SPEC,
            source=Source(spec.source.file, spec.source.line, "type"),
        )


def check_devices(
    domains: Iterable[DomainSpec], domcaps_for: Callable[[GuestRequest], str | None],
) -> list[SpecError]:
    """Devices the host does not offer the guests that declare them (TPM models,
    backends, versions), from libvirt's domain capabilities; `domcaps_for` is asked only
    for guests that declare such a device, once per kind of guest."""
    errors: list[SpecError] = []
    asked: dict[GuestRequest, str | None] = {}
    for dom in domains:
        if "<tpm" not in dom.xml:
            continue
        root = spec_tree(dom)
        want = guest_of(dom)
        if want not in asked:
            asked[want] = domcaps_for(want)
        domcaps = asked[want]
        if domcaps is None:
            continue
        errors += [SpecError(why, code=ErrorCode.CONFIG_UNSUPPORTED,
                             source=Source(dom.source.file, dom.line_of("devices/tpm"), path))
                   for path, why in device_problems(root, domcaps)]
    return errors


def _bridges(desired: Desired, live: Live) -> Iterable[SpecError]:
    """A bridge a declared network names that another network on the host already uses:
    libvirt would refuse the define (or the start) part way through the run."""
    wanted = {s.bridge: s for s in desired.networks.values() if s.bridge}
    if not wanted:
        return
    for net in live.networks.values():
        if net.name in desired.networks:
            continue  # the declared network itself, redefined in place
        bridge = live_tree(net).find("bridge")
        spec = wanted.get(bridge.get("name") if bridge is not None else None)
        if spec is not None:
            yield SpecError(
                f"bridge {spec.bridge!r} is already used by network {net.name!r} on the host",
                code=ErrorCode.DUPLICATE,
                source=Source(spec.source.file, spec.source.line, "bridge/@name"),
            )


def _references(desired: Desired, live: Live, *, prune: bool,
                sets: frozenset[str] | None = None, selector: str = "",
                protected: tuple[str, ...] = ()) -> Iterable[SpecError]:
    # Under a selector (-l), --prune spares objects whose recorded labels it does not
    # match and those the unselected specs declare (plan.in_prune_scope, policy.protected).
    from ...selectors import parse_selector

    chosen = parse_selector(selector) if selector else None
    for dom in desired.domains.values():
        for net in dom.networks:
            if net in desired.networks:
                continue
            found = live.networks.get(net)
            if found is None:
                yield SpecError(
                    f"interface uses network {net!r}, which is neither declared in the "
                    "specs nor defined on the host",
                    code=ErrorCode.UNKNOWN_REFERENCE,
                    source=Source(dom.source.file, dom.line_of(f"network:{net}"),
                                  "devices/interface/source/@network"),
                )
            elif prune and found.owner is not None and (
                    sets is None or found.owner.apply_set in sets) and (  # another set's stays
                    chosen is None or chosen.matches(found.owner.labels)) and (
                    f"network/{net}" not in protected):
                yield SpecError(
                    f"interface uses network {net!r}, which --prune would delete "
                    "(it is managed by virtctl, of this run's apply set, and absent from "
                    "the specs): declare it too",
                    code=ErrorCode.UNKNOWN_REFERENCE,
                    source=Source(dom.source.file, dom.line_of(f"network:{net}"),
                                  "devices/interface/source/@network"),
                )


def _capabilities(domains: Iterable[DomainSpec], caps: HostCapabilities) -> Iterable[SpecError]:
    verdicts: dict[GuestRequest, str | None] = {}  # most guests ask the host the same
    for dom in domains:
        want = guest_of(dom)
        if want not in verdicts:
            verdicts[want] = check_guest(want, caps)
        reason = verdicts[want]
        if reason:
            yield SpecError(
                reason,
                code=ErrorCode.CONFIG_UNSUPPORTED,
                source=Source(dom.source.file, dom.line_of(_field_of(reason)),
                              _field_of(reason)),
            )


# The field each kind of capabilities refusal is about (check_guest's wording).
_FIELDS = (("vcpus are more than", "vcpu"), ("machine type", "os/type/@machine"),
           ("emulator", "devices/emulator"), ("on arch", "os/type/@arch"))


def _field_of(reason: str) -> str:
    return next((path for words, path in _FIELDS if words in reason), "type")
