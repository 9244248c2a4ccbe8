"""Rendering: plans read like plans (+ ~ -), JSON is one versioned document, tables align."""

from __future__ import annotations

import json

from virtctl.errors import DriverError, ErrorCode, Source, SpecError, SpecErrors
from virtctl.model import DomainState, Kind, Live, LiveDomain, LiveNetwork, ObjectKey, Ownership
from virtctl.reconciler.plan.actions import Define, SetAutostart, Shutdown, Start, Undefine
from virtctl.reconciler.apply.apply import ActionResult, Outcome, Report
from virtctl.reconciler.plan.diff import ChangeOp, FieldChange
from virtctl.reconciler.plan.plan import Plan
from virtctl.render.report import (
    error_json,
    plan_json,
    plan_text,
    report_json,
    report_text,
    rows,
    table,
)

D, N = Kind.DOMAIN, Kind.NETWORK
MEM = FieldChange(ChangeOp.CHANGE, "memory", "524288 KiB", "1048576 KiB")
DISK = FieldChange(ChangeOp.ADD, "devices/disk[vdb]", None, "disk type=file target=vdb")

PLAN = Plan(
    actions=(
        Shutdown(kind=D, name="old", reason="pruned"),
        Undefine(kind=D, name="old", reason="pruned"),
        Define(kind=N, name="lan", xml="<network/>", new=True),
        Start(kind=N, name="lan"),
        Define(kind=D, name="web", xml="<domain/>", new=False, changes=(MEM, DISK),
               reason="2 field(s) differ"),
        SetAutostart(kind=D, name="web", enabled=True),
    ),
    creates=frozenset({ObjectKey(N, "lan")}),
    deletes=frozenset({ObjectKey(D, "old")}),
)


def test_plan_text_reads_like_a_plan() -> None:
    assert plan_text(PLAN) == (
        "- domain/old  (shutdown, undefine)\n"
        "+ network/lan  (define, start)\n"
        "~ domain/web  (redefine, autostart on)\n"
        "    ~ memory: 524288 KiB -> 1048576 KiB\n"
        "    + disk vdb\n"
        "Plan: 1 to create, 1 to change, 1 to delete; 1 running guest to stop.\n"
    )


def test_empty_plan_says_in_sync_and_shows_notes() -> None:
    text = plan_text(Plan(notes=("domain/x is not managed by virtctl; left alone",)))
    assert text == ("! domain/x is not managed by virtctl; left alone\n"
                    "No changes: the host matches the specs.\n")


def test_plan_json_is_one_versioned_document() -> None:
    doc = plan_json(PLAN)
    json.dumps(doc)  # serialisable as is
    assert doc["apiVersion"] == "virtctl/v1" and doc["kind"] == "Plan"
    assert doc["inSync"] is False
    assert doc["summary"] == {"create": 1, "update": 1, "delete": 1, "recreate": 0, "none": 0,
                              "restart": 0, "stop": 1, "restartNetworks": 0,
                              "restartPending": 0, "held": 0}
    web = next(o for o in doc["objects"] if o["name"] == "web")
    assert web["action"] == "update" and web["kind"] == "domain"
    assert [s["op"] for s in web["steps"]] == ["define", "setautostart"]
    assert web["steps"][1]["enabled"] is True
    assert web["changes"][0] == {"op": "change", "path": "memory", "old": "524288 KiB",
                                 "new": "1048576 KiB"}
    assert plan_json(Plan())["inSync"] is True


def test_report_text_lists_failures_and_skips_then_a_summary() -> None:
    failed = DriverError("boom", code=ErrorCode.OPERATION_FAILED)
    report = Report(results=(
        ActionResult(Start(kind=N, name="lan"), Outcome.FAILED, error=failed),
        ActionResult(Start(kind=D, name="web"), Outcome.SKIPPED, detail="network/lan failed"),
        ActionResult(Start(kind=D, name="db"), Outcome.DONE),
    ))
    assert report_text(report) == (
        "  failed  start network/lan: boom\n"
        "  skipped start domain/web: network/lan failed\n"
        "Applied: 1 done, 1 failed, 1 skipped.\n"
    )
    doc = report_json(report)
    assert (doc["done"], doc["failed"], doc["skipped"]) == (1, 1, 1)
    assert doc["results"][0]["error"]["code"] == "operation-failed"
    assert doc["results"][1]["outcome"] == "skipped"


def test_error_json_lists_every_error_with_its_source() -> None:
    errors = SpecErrors([
        SpecError("bad", source=Source("a.yaml", 3, "memory")),
        SpecError("worse", source=Source("b.xml", 1)),
    ])
    doc = error_json(errors)
    assert doc["kind"] == "Error"
    assert [e["source"] for e in doc["errors"]] == [
        {"file": "a.yaml", "line": 3, "path": "memory"},
        {"file": "b.xml", "line": 1, "path": None},
    ]


def test_rows_have_the_documented_fields_sorted_by_name() -> None:
    live = Live(
        domains={
            "b": LiveDomain(name="b", uuid="u-b", xml="", state=DomainState.PAUSED, id=3,
                            autostart=True, owner=Ownership(source="b.yaml")),
            "a": LiveDomain(name="a", uuid="u-a", xml="", state=DomainState.SHUTOFF),
        },
        networks={"n": LiveNetwork(name="n", uuid="u-n", xml="", active=False)},
    )
    doms = rows(live, "domains")
    assert [d["name"] for d in doms] == ["a", "b"]
    assert {
        k: doms[1][k] for k in ("name", "uuid", "state", "autostart", "managed", "id", "source")
    } == {"name": "b", "uuid": "u-b", "state": "paused", "autostart": True, "managed": True,
          "id": 3, "source": "b.yaml"}
    assert doms[0]["managed"] is False
    (n,) = rows(live, "networks")
    assert (n["state"], n["managed"]) == ("inactive", False)


def test_table_aligns_columns_and_spells_booleans() -> None:
    text = table([{"name": "web", "id": None, "managed": True},
                  {"name": "database", "id": 12, "managed": False}], ["name", "id", "managed"])
    assert text == ("NAME      ID  MANAGED\n"
                    "web       -   yes\n"
                    "database  12  no\n")
