"""Rendering plans, reports and live objects for people (text) and programs (JSON).

Text reads like a plan: `+` create, `~` change (with the fields that differ), `-` delete,
then a one-line summary. JSON is one document, versioned by `apiVersion`; its shape is
documented in docs/output-format.md. Pure: returns strings and dicts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from .. import metadata
from ..errors import VirtctlError
from ..printable import printable
from ..model import Kind, Live, LiveDomain, LiveNetwork, ObjectKey
from ..reconciler.plan.actions import (
    Action,
    Define,
    DetachDevice,
    LiveAction,
    RecordPool,
    RecordVolume,
    ResizeVolume,
    SetAutostart,
    SetMemory,
    SetVcpus,
    Shutdown,
    Start,
    UpdateNetwork,
)
from ..reconciler.apply.report import ActionResult, Outcome, Report
from ..reconciler.plan.classify import network_restart_pending, restart_pending, worst
from ..reconciler.plan.diff import ChangeOp, FieldChange, Origin
from ..reconciler.plan.planned import Plan

API_VERSION = "virtctl/v1"
_SYMBOL = {ChangeOp.ADD: "+", ChangeOp.CHANGE: "~", ChangeOp.REMOVE: "-"}
_OBJECT_SYMBOL = {"create": "+", "update": "~", "delete": "-", "recreate": "-/+", "none": "!"}
_DEVICE = re.compile(r"^devices/(\w+)\[([^\]]+)\]$")
PENDING_HINT = ("the running instance keeps its old definition until it restarts "
                "(allow with --allow-restart or updatePolicy: restart)")


def object_action(plan: Plan, key: ObjectKey) -> str:
    if key in plan.creates:
        return "create"
    if key in plan.deletes:
        return "delete"
    if key in plan.recreates:
        return "recreate"
    if not any(a.key == key for a in plan.actions):
        return "none"
    return "update"


def _grouped(plan: Plan) -> dict[ObjectKey, list[Action]]:
    """Each object the plan acts on or reports, with its actions in plan order."""
    groups: dict[ObjectKey, list[Action]] = defaultdict(list)
    for action in plan.actions:
        groups[action.key].append(action)
    for key, _ in plan.changes:
        groups.setdefault(key, [])
    for pending in plan.pending:
        groups.setdefault(pending.key, [])
    for key, _ in plan.held:
        groups.setdefault(key, [])
    return groups


def _step_label(action: Action) -> str:
    if isinstance(action, SetAutostart):
        return f"autostart {'on' if action.enabled else 'off'}"
    if isinstance(action, Define):
        if action.new:
            return "define"
        # Without field changes, say why: a redefine never goes unexplained.
        return "redefine" if action.changes or not action.reason else \
            f"redefine: {action.reason}"
    if isinstance(action, SetMemory):
        return f"set memory {action.kib} KiB"
    if isinstance(action, LiveAction):
        return action.reason  # 'attach disk vdb', 'set vcpus 2 -> 4', 'add DHCP host ...'
    if isinstance(action, ResizeVolume) and action.domain is not None:
        return f"resize-volume live through {action.domain} {action.target}"
    if isinstance(action, RecordPool | RecordVolume) and action.reason.startswith("record: "):
        return action.reason  # 'record: move from set 'a' to set 'b''
    return action.verb


def _changes(plan: Plan, key: ObjectKey, actions: list[Action]) -> tuple[FieldChange, ...]:
    found = plan.changes_of(key)
    if found:
        return found
    return tuple(c for a in actions if isinstance(a, Define) and not a.new for c in a.changes)


def format_change(change: FieldChange) -> str:
    """`~ memory: 524288 KiB -> 1048576 KiB  [restart]`, `+ disk hdb  [restart]`,
    `- interface 52:54:00:12:34:56  [restart]`: one line per field change."""
    sym = _SYMBOL[change.op]
    device = _DEVICE.match(change.path)
    if change.op is ChangeOp.CHANGE:
        text = f"{sym} {change.path}: {change.old} -> {change.new}"
    elif device is not None:
        text = f"{sym} {device.group(1)} {device.group(2)}"
    else:
        value = change.new if change.op is ChangeOp.ADD else change.old
        text = f"{sym} {change.path}: {value}"
    tags = [str(t) for t in (change.change_class, change.operation, change.origin)
            if t is not None and t != Origin.SPEC]
    return f"{text}  [{', '.join(tags)}]" if tags else text


def _object_lines(plan: Plan, key: ObjectKey, actions: list[Action],
                  member: str | None = None) -> list[str]:
    action = object_action(plan, key)
    steps = f"  ({', '.join(_step_label(a) for a in actions)})" if actions else ""
    cls = worst(_changes(plan, key, actions))
    label = f"  {cls}" if cls is not None and action in ("update", "recreate") else ""
    of_set = f"  [DomainSet {member}]" if member else ""
    lines = [f"{_OBJECT_SYMBOL[action]} {key}{steps}{label}{of_set}"]
    if action in ("update", "recreate", "none"):
        lines += [f"    {format_change(c)}" for c in _changes(plan, key, actions)]
    pending = plan.pending_of(key)
    if pending is not None:
        fields = ", ".join(c.path for c in pending.changes)
        lines.append(f"    ! restart pending ({fields}): {PENDING_HINT}")
    held = plan.held_of(key)
    if held is not None:
        lines.append(f"    ! held back: {held}")
    return lines


def _summary(plan: Plan, counts: dict[str, int]) -> str:
    guests = sum(1 for k in plan.restarts if k.kind is Kind.DOMAIN)
    networks = len(plan.restarts) - guests
    text = (f"Plan: {counts['create']} to create, {counts['update']} to change, "
            f"{counts['delete']} to delete")
    if counts["recreate"]:
        text += f", {counts['recreate']} to recreate"
    stops = len(plan.stops)
    # Restarts are always said (none is news too), unless the plan only stops guests.
    said = [f"{guests} running guest{'' if guests == 1 else 's'} to restart"] if (
        guests or not stops) else []
    if stops:
        said.append(f"{stops} running guest{'' if stops == 1 else 's'} to stop")
    text += "; " + ", ".join(said)
    if networks:
        text += f", {networks} active network{'' if networks == 1 else 's'} to restart"
    return text + "."


def plan_text(plan: Plan, members: Mapping[ObjectKey, str] | None = None) -> str:
    """`members`: the DomainSet of each object that is a set's instance (named after it);
    the plan's own (`Plan.members`, removals included) when not given."""
    lines: list[str] = []
    counts = dict.fromkeys(_OBJECT_SYMBOL, 0)
    members = {**plan.member_map(), **(members or {})}
    for key, actions in _grouped(plan).items():
        counts[object_action(plan, key)] += 1
        lines += _object_lines(plan, key, actions, members.get(key))
    lines += [f"! {note}" for note in plan.notes]
    if plan.empty and plan.held:
        lines.append(f"No changes to make; {len(plan.held)} guest(s) held back after a "
                     "failed health gate.")
    elif plan.empty:
        lines.append("No changes: the host matches the specs.")
    else:
        lines.append(_summary(plan, counts))
    if plan.pending:
        lines.append(f"{len(plan.pending)} object(s) restart-pending.")
    if plan.held and not plan.empty:
        lines.append(f"{len(plan.held)} guest(s) held back after a failed health gate.")
    # Names, values and notes may come from the host: no control character gets through.
    return printable("\n".join(lines) + "\n")


def _action_dict(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"op": action.verb}
    if isinstance(action, SetAutostart):
        out["enabled"] = action.enabled
    if isinstance(action, SetMemory):
        out["kib"] = action.kib
    if isinstance(action, LiveAction) and not isinstance(action, (SetVcpus, UpdateNetwork)):
        out["device"] = action.device
    if isinstance(action, DetachDevice):
        out["timeout"] = action.timeout
    if isinstance(action, SetVcpus):
        out["count"] = action.count
    if isinstance(action, UpdateNetwork):
        out.update(command=str(action.command), section=str(action.section),
                   entry=action.entry)
    if action.reason:
        out["reason"] = action.reason
    return out


def _stops(actions: list[Action]) -> bool:
    """One object's actions stop it and do not start it again (as Plan.stops)."""
    return (any(isinstance(a, Shutdown) for a in actions)
            and not any(isinstance(a, Start) for a in actions))


def _object_json(plan: Plan, key: ObjectKey, actions: list[Action]) -> dict[str, Any]:
    changes = _changes(plan, key, actions)
    cls = worst(changes)
    pending = plan.pending_of(key)
    return {
        "kind": str(key.kind),
        "name": key.name,
        "action": object_action(plan, key),
        "changeClass": None if cls is None else str(cls),
        "restart": key in plan.restarts,
        "stop": key.kind is Kind.DOMAIN and _stops(actions),
        "restartPending": [c.to_dict() for c in pending.changes] if pending else [],
        "steps": [_action_dict(a) for a in actions],
        "changes": [c.to_dict() for c in changes],
    } | ({"held": plan.held_of(key)} if plan.held_of(key) is not None else {})


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as one JSON document; its schema is docs/output-format.md."""
    members = plan.member_map()
    objects = [_object_json(plan, k, a) | ({"domainSet": members[k]} if k in members else {})
               for k, a in _grouped(plan).items()]
    summary = dict.fromkeys(("create", "update", "delete", "recreate", "none"), 0)
    for obj in objects:
        summary[obj["action"]] += 1
    summary["restart"] = sum(1 for k in plan.restarts if k.kind is Kind.DOMAIN)
    summary["stop"] = len(plan.stops)
    summary["restartNetworks"] = len(plan.restarts) - summary["restart"]
    summary["restartPending"] = len(plan.pending)
    summary["held"] = len(plan.held)
    return {
        "apiVersion": API_VERSION,
        "kind": "Plan",
        "inSync": plan.empty and not plan.held,
        "objects": objects,
        "notes": list(plan.notes),
        "summary": summary,
    }


def _result_line(result: ActionResult) -> str:
    what = f"{_step_label(result.action)} {result.action.key}"
    if result.outcome is Outcome.FAILED:
        return f"  failed  {what}: {result.error}"
    if result.outcome is Outcome.SKIPPED:
        return f"  skipped {what}: {result.detail}"
    if result.outcome is Outcome.PENDING:
        return f"  pending {what}: {result.detail}"
    if result.outcome is Outcome.UNCERTAIN:
        return f"  uncertain {what}: {result.detail}: {result.error}"
    return f"  done    {what}" + (f" ({result.detail})" if result.detail else "")


def report_text(report: Report, *, verbose: bool = False) -> str:
    lines = [
        _result_line(r) for r in report.results if verbose or r.outcome is not Outcome.DONE
    ]
    pending = f", {report.pending} pending (restart pending)" if report.pending else ""
    uncertain = f", {report.uncertain} uncertain" if report.uncertain else ""
    lines.append(f"Applied: {report.done} done{pending}, {report.failed} failed, "
                 f"{report.skipped} skipped{uncertain}.")
    if report.lost_host:
        lines.append(f"Stopped: {report.lost_host}; run again once it answers (the next "
                     "run plans from what the host then shows).")
    if report.lost_lock:
        lines.append(f"Stopped: {report.lost_lock}; nothing after it ran (run again once "
                     "etcd answers: it waits for the lock and plans from what the host "
                     "then shows).")
    return printable("\n".join(lines) + "\n")


def report_json(report: Report) -> dict[str, Any]:
    results = []
    for r in report.results:
        item: dict[str, Any] = {
            "kind": str(r.action.kind),
            "name": r.action.name,
            **_action_dict(r.action),
            "outcome": str(r.outcome),
        }
        if r.error is not None:
            item["error"] = r.error.to_dict()
        if r.detail:
            item["detail"] = r.detail
        results.append(item)
    return {
        "results": results,
        "done": report.done,
        "pending": report.pending,
        "failed": report.failed,
        "skipped": report.skipped,
        "uncertain": report.uncertain,
    } | ({"stopped": report.lost_host or report.lost_lock}
         if report.lost_host or report.lost_lock else {})


def error_json(error: VirtctlError) -> dict[str, Any]:
    errors = getattr(error, "errors", None) or (error,)
    return {
        "apiVersion": API_VERSION,
        "kind": "Error",
        "errors": [e.to_dict() for e in errors],
    }


def pending_of(dom: LiveDomain) -> str | None:
    """'restart' when a running managed guest lacks what virtctl last applied to it."""
    record = dom.owner.last_applied if dom.owner is not None else None
    if record is None or not dom.state.active:
        return None
    return "restart" if restart_pending(dom, metadata.declared_xml(record)) else None


def domain_row(dom: LiveDomain) -> dict[str, Any]:
    return {
        "name": dom.name,
        "uuid": dom.uuid,
        "state": str(dom.state),
        "id": dom.id,
        "autostart": dom.autostart,
        "persistent": dom.persistent,
        "managed": dom.managed,
        "set": dom.owner.apply_set if dom.owner else None,
        "source": dom.owner.source if dom.owner else None,
        "commit": dom.owner.commit if dom.owner else None,
        "pending": pending_of(dom),
    }


def network_pending_of(net: LiveNetwork) -> str | None:
    """'restart' when an active managed network runs less than virtctl last applied."""
    record = net.owner.last_applied if net.owner is not None else None
    if record is None:
        return None
    found = network_restart_pending(net, metadata.declared_xml(record))
    return "restart" if found else None


def network_row(net: LiveNetwork) -> dict[str, Any]:
    return {
        "name": net.name,
        "uuid": net.uuid,
        "state": "active" if net.active else "inactive",
        "autostart": net.autostart,
        "persistent": net.persistent,
        "managed": net.managed,
        "set": net.owner.apply_set if net.owner else None,
        "source": net.owner.source if net.owner else None,
        "commit": net.owner.commit if net.owner else None,
        "pending": network_pending_of(net),
    }


def rows(live: Live, what: str) -> list[dict[str, Any]]:
    if what == "domains":
        return [domain_row(d) for _, d in sorted(live.domains.items())]
    return [network_row(n) for _, n in sorted(live.networks.items())]


def table(records: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return "-" if value is None else str(value)

    # A camelCase key heads its column with a hyphen: deletePolicy -> DELETE-POLICY.
    grid = [[re.sub(r"(?<=[a-z])(?=[A-Z])", "-", c).upper() for c in columns]] + [
        [printable(cell(r[c]), keep_newlines=False) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in grid) for i in range(len(columns))]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in grid
    )
