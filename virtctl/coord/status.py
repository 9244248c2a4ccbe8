"""Fleet status records: their model, the state a reader classifies, and the table.

Pure (no etcd, no libvirt). After each reconcile round a fleet member writes one small
record per host (`StatusRecord`, JSON, a few hundred bytes) at
`/virtctl/fleet/NAME/status/HOSTID` (membership.py). `virtctl status` reads them with
the live members and classifies each host (`classify`):

    in-sync   the last round left the host as the specs declare
    pending   it still differs (restart-pending changes, not converged yet)
    failed    the round failed (a driver error, no lock, a refused prune...)
    stale     the record is older than 3 of its writer's intervals, or its writer's
              lease is gone (killed, stopped, partitioned): nobody vouches for it now

`exit_status` is diff's: 0 all in sync, 2 some pending, 1 any failed or stale (or none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from ..printable import printable

OUTCOMES = ("in-sync", "pending", "failed")
STATES = ("in-sync", "pending", "failed", "stale")
STALE_INTERVALS = 3
EXIT_OK, EXIT_ERROR, EXIT_PENDING = 0, 1, 2


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """What a member writes about one host after a round."""

    host: str  # the host's identity (hostid.py)
    uri: str
    outcome: str  # one of OUTCOMES
    member: str
    time: float  # Unix time the round ended (the writer's clock)
    interval: float  # the writer's --interval: a record older than 3 of them is stale
    duration: float = 0.0  # seconds the round took
    restart_pending: int = 0
    apply_set: str = ""
    commit: str = ""
    error: str = ""  # why a failed round failed, in short
    # An in-sync round's run key (watch/loop.py `run_key`: the host's share of the
    # specs, the snapshot's fingerprint, the policy, capabilities and code): a member
    # taking the host over finds the same key and records it in sync without a pass.
    key: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> StatusRecord | None:
        """A record read back; None for anything that is not one (a reader trusts no
        writer: wrong types or a mangled value make the host 'stale', not a crash)."""
        try:
            doc = json.loads(text)
            record = cls(
                host=str(doc["host"]), uri=str(doc.get("uri", "")),
                outcome=str(doc["outcome"]), member=str(doc.get("member", "")),
                time=float(doc["time"]), interval=float(doc["interval"]),
                duration=float(doc.get("duration", 0.0)),
                restart_pending=int(doc.get("restart_pending", 0)),
                apply_set=str(doc.get("apply_set", "")), commit=str(doc.get("commit", "")),
                error=str(doc.get("error", "")), key=str(doc.get("key", "")))
        except (ValueError, TypeError, KeyError, RecursionError, AttributeError):
            return None
        return record


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One row of `virtctl status`."""

    host: str
    state: str
    uri: str = ""
    fleet: str = ""
    member: str = ""
    commit: str = ""
    apply_set: str = ""
    age: float | None = None  # seconds since the record was written (None: unreadable)
    duration: float = 0.0
    restart_pending: int = 0
    outcome: str = ""
    error: str = ""
    why_stale: str = ""


def classify(record: StatusRecord, *, now: float, live: Collection[str]) -> tuple[str, str]:
    """(state, why stale) of a host from its record and the live members' names."""
    age = now - record.time
    if record.outcome not in OUTCOMES:
        return "stale", f"unknown outcome {record.outcome!r}"
    if record.member not in live:
        return "stale", f"member {record.member} is gone (its lease ended)"
    if age > STALE_INTERVALS * max(record.interval, 0.0):
        return "stale", f"no round for {age:.0f} s (over {STALE_INTERVALS} intervals)"
    return record.outcome, ""


def host_status(fleet: str, host: str, raw: bytes, *, now: float,
                live: Collection[str]) -> HostStatus:
    record = StatusRecord.from_json(raw)
    if record is None:
        return HostStatus(host=host, fleet=fleet, state="stale",
                          why_stale="unreadable status record")
    state, why = classify(record, now=now, live=live)
    return HostStatus(host=host, state=state, uri=record.uri, fleet=fleet,
                      member=record.member, commit=record.commit, apply_set=record.apply_set,
                      age=max(now - record.time, 0.0), duration=record.duration,
                      restart_pending=record.restart_pending, outcome=record.outcome,
                      error=record.error, why_stale=why)


def totals(rows: Sequence[HostStatus]) -> dict[str, int]:
    counts = {state: 0 for state in STATES}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return {"hosts": len(rows), **counts}


def exit_status(rows: Sequence[HostStatus]) -> int:
    if not rows or any(r.state in ("failed", "stale") for r in rows):
        return EXIT_ERROR
    if any(r.state == "pending" for r in rows):
        return EXIT_PENDING
    return EXIT_OK


def to_json(rows: Sequence[HostStatus]) -> str:
    hosts = []
    for row in rows:
        doc = asdict(row)
        doc["age"] = None if row.age is None else round(row.age, 1)
        doc["duration"] = round(row.duration, 3)
        hosts.append(doc)
    return json.dumps({"hosts": hosts, "totals": totals(rows)}, indent=2) + "\n"


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def to_table(rows: Sequence[HostStatus], *, show_fleet: bool = False) -> str:
    """Hosts (by URI, else identity), state, commit, age, member; then the totals.
    Every field came from etcd, written by some member: escaped (printable)."""
    head = (["FLEET"] if show_fleet else []) + ["HOST", "STATE", "COMMIT", "AGE", "MEMBER"]
    lines: list[list[str]] = [head]
    for row in rows:
        state = row.state + (f" ({row.restart_pending} restart-pending)"
                             if row.state == "pending" and row.restart_pending else "")
        cells = ([row.fleet] if show_fleet else []) + [
            row.uri or row.host, state, row.commit[:12] or "-", age_text(row.age),
            row.member or "-"]
        lines.append([printable(c, keep_newlines=False) for c in cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    count = totals(rows)
    text.append(f"{count['hosts']} host(s): " + ", ".join(
        f"{count[s]} {s}" for s in STATES))
    return "\n".join(text) + "\n"


def rows_from(fleet_kvs: Iterable[tuple[str, str, bytes]],
              live: Mapping[str, Collection[str]], *,
              now: float | None = None) -> list[HostStatus]:
    """Rows from (fleet, host id, record bytes) and each fleet's live member names,
    sorted by fleet then URI/host."""
    when = time.time() if now is None else now
    rows = [host_status(fleet, host, raw, now=when, live=live.get(fleet, ()))
            for fleet, host, raw in fleet_kvs]
    return sorted(rows, key=lambda r: (r.fleet, r.uri or r.host, r.host))
