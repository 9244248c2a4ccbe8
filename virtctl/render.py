"""Rendering plans, reports and live objects for people (text) and programs (JSON).

Text reads like a plan: `+` create, `~` change (with the fields that differ), `-` delete,
then a one-line summary. JSON is one document, versioned by `apiVersion`; its shape is
documented in docs/output-format.md. Pure: returns strings and dicts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .errors import VirtctlError
from .model import Live, LiveDomain, LiveNetwork, ObjectKey
from .reconciler.actions import Action, Define, SetAutostart
from .reconciler.apply import ActionResult, Outcome, Report
from .reconciler.diff import ChangeOp, FieldChange
from .reconciler.plan import Plan

API_VERSION = "virtctl/v1"
_SYMBOL = {ChangeOp.ADD: "+", ChangeOp.CHANGE: "~", ChangeOp.REMOVE: "-"}


def object_action(plan: Plan, key: ObjectKey) -> str:
    if key in plan.creates:
        return "create"
    if key in plan.deletes:
        return "delete"
    return "update"


def _grouped(plan: Plan) -> dict[ObjectKey, list[Action]]:
    groups: dict[ObjectKey, list[Action]] = defaultdict(list)
    for action in plan.actions:
        groups[action.key].append(action)
    return groups


def _step_label(action: Action) -> str:
    if isinstance(action, SetAutostart):
        return f"autostart {'on' if action.enabled else 'off'}"
    if isinstance(action, Define):
        return "define" if action.new else "redefine"
    return action.verb


def format_change(change: FieldChange) -> str:
    sym = _SYMBOL[change.op]
    if change.op is ChangeOp.CHANGE:
        return f"{sym} {change.path}: {change.old} -> {change.new}"
    value = change.new if change.op is ChangeOp.ADD else change.old
    return f"{sym} {change.path}: {value}"


def plan_text(plan: Plan) -> str:
    lines: list[str] = []
    counts = {"create": 0, "update": 0, "delete": 0}
    for key, actions in _grouped(plan).items():
        action = object_action(plan, key)
        counts[action] += 1
        sym = {"create": "+", "update": "~", "delete": "-"}[action]
        lines.append(f"{sym} {key}  ({', '.join(_step_label(a) for a in actions)})")
        for step in actions:
            if isinstance(step, Define) and not step.new:
                lines.extend(f"    {format_change(c)}" for c in step.changes)
            elif step.reason and action == "update":
                lines.append(f"    ~ {step.reason}")
    for note in plan.notes:
        lines.append(f"! {note}")
    if plan.empty:
        lines.append("No changes: the host matches the specs.")
    else:
        lines.append(
            f"Plan: {counts['create']} to create, {counts['update']} to change, "
            f"{counts['delete']} to delete."
        )
    return "\n".join(lines) + "\n"


def _action_dict(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"op": action.verb}
    if isinstance(action, SetAutostart):
        out["enabled"] = action.enabled
    if action.reason:
        out["reason"] = action.reason
    return out


def plan_json(plan: Plan) -> dict[str, Any]:
    objects: list[dict[str, Any]] = []
    for key, actions in _grouped(plan).items():
        changes = [c.to_dict() for a in actions if isinstance(a, Define) for c in a.changes]
        objects.append({
            "kind": str(key.kind),
            "name": key.name,
            "action": object_action(plan, key),
            "steps": [_action_dict(a) for a in actions],
            "changes": changes,
        })
    summary = {"create": 0, "update": 0, "delete": 0}
    for obj in objects:
        summary[obj["action"]] += 1
    return {
        "apiVersion": API_VERSION,
        "kind": "Plan",
        "inSync": plan.empty,
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
    return f"  done    {what}" + (f" ({result.detail})" if result.detail else "")


def report_text(report: Report, *, verbose: bool = False) -> str:
    lines = [
        _result_line(r) for r in report.results if verbose or r.outcome is not Outcome.DONE
    ]
    lines.append(
        f"Applied: {report.done} done, {report.failed} failed, {report.skipped} skipped."
    )
    return "\n".join(lines) + "\n"


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
        "failed": report.failed,
        "skipped": report.skipped,
    }


def error_json(error: VirtctlError) -> dict[str, Any]:
    errors = getattr(error, "errors", None) or (error,)
    return {
        "apiVersion": API_VERSION,
        "kind": "Error",
        "errors": [e.to_dict() for e in errors],
    }


def domain_row(dom: LiveDomain) -> dict[str, Any]:
    return {
        "name": dom.name,
        "uuid": dom.uuid,
        "state": str(dom.state),
        "id": dom.id,
        "autostart": dom.autostart,
        "persistent": dom.persistent,
        "managed": dom.managed,
        "source": dom.owner.source if dom.owner else None,
        "commit": dom.owner.commit if dom.owner else None,
    }


def network_row(net: LiveNetwork) -> dict[str, Any]:
    return {
        "name": net.name,
        "uuid": net.uuid,
        "state": "active" if net.active else "inactive",
        "autostart": net.autostart,
        "persistent": net.persistent,
        "managed": net.managed,
        "source": net.owner.source if net.owner else None,
        "commit": net.owner.commit if net.owner else None,
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

    grid = [[c.upper() for c in columns]] + [[cell(r[c]) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in grid) for i in range(len(columns))]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n" for row in grid
    )
