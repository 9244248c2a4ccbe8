"""A fleet member's part in `virtctl watch --fleet NAME` (docs/fleet.md).

`FleetMember` ties the watcher to etcd (coord/membership.py):

- which hosts this process reconciles (`owns`): a central member, the hosts the specs
  target whose rendezvous owner among the live members is itself; an agent
  (`watch -c URI --fleet NAME` on the hypervisor), its own URI only;
- `skip`: a central member leaves a host alone while that host's agent lives (the agent
  registered the host's identity under its lease), and takes it back when it goes;
- `passed`: a sim host records each pass (member, start, end) in its state directory
  (the tests prove passes on one host never overlap);
- `round_done`: one status record per host after each round (status.py), with the
  round's run key when it ended in sync;
- `previous`: the host's last record, whoever wrote it: a member taking a host over
  (or starting again) that finds the same run key records it in sync without a pass
  (loop.py `Watcher._taken_over`). `prefetch` reads every record in one range when the
  fleet gains hosts, so taking 170 hosts over is 1 request, not 170.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..coord.etcd import EtcdError

from ..coord.hostid import host_identity, identify
from .membership import Membership
from ..coord.fleetkeys import read_status
from ..coord.status import StatusRecord
from ..drivers.base import Driver
from .loop import PassResult


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """What `watch --fleet` was given."""

    name: str
    member: str
    agent: bool  # -c URI given: reconcile that host only, as its agent


class FleetMember:
    def __init__(self, membership: Membership, *, interval: float, apply_set: str,
                 agent_uri: str | None = None) -> None:
        self.membership = membership
        self.member = membership.member
        self.interval = interval
        self.apply_set = apply_set
        self.agent_uri = agent_uri
        # Every host's record as `prefetch` read it, and when (monotonic; None: never).
        # A record's claim, "a pass with this run key plans nothing", holds whenever it
        # was read; a prefetch only goes out of date for hosts it found no record for.
        self._records: dict[str, StatusRecord] = {}
        self._read_at: float | None = None
        self._records_lock = threading.Lock()

    def owns(self, uri: str) -> bool:
        if self.agent_uri is not None:
            return uri == self.agent_uri
        return self.membership.owns(uri)

    def skip(self, uri: str, driver: Driver) -> str:
        if self.agent_uri is not None:
            return ""
        agent = self.membership.agent_of(host_identity(driver).key)
        if agent is None:
            return ""
        return f"{uri} is reconciled by its agent {agent}; leaving it alone while the " \
               "agent's lease lives"

    def passed(self, driver: Driver, started: float, ended: float) -> None:
        record = getattr(driver, "record_pass", None)
        if record is not None:
            record(self.member, started, ended)

    def prefetch(self) -> None:
        """Read every host's record now, in one range (the fleet is about to start
        rounds on hosts it gained); on an etcd error each host asks for its own."""
        try:
            found, _ = read_status(self.membership.client, self.membership.fleet)
        except EtcdError:
            return
        records = {host: record for _, host, raw in found
                   if (record := StatusRecord.from_json(raw)) is not None}
        with self._records_lock:
            self._records, self._read_at = records, time.monotonic()

    def previous(self, driver: Driver) -> StatusRecord | None:
        host = host_identity(driver).key
        with self._records_lock:
            record = self._records.pop(host, None)
            recent = (self._read_at is not None
                      and time.monotonic() - self._read_at < self.membership.ttl)
        if record is not None or recent:
            return record  # none a moment ago: a full pass, as for a new host
        return self.membership.read_status(host)

    def round_done(self, uri: str, driver: Driver | None, result: PassResult, *,
                   duration: float, commit: str, restart_pending: int,
                   key: str = "") -> None:
        if driver is not None:
            host = host_identity(driver).key
        else:  # never connected: named from its URI alone (hostid.py, third choice)
            host = identify(uri, "").key
        if result.failed:
            outcome = "failed"
        elif result.in_sync and not restart_pending:
            outcome = "in-sync"
        else:
            outcome = "pending"
        self.membership.write_status(StatusRecord(
            host=host, uri=uri, outcome=outcome, member=self.member, time=time.time(),
            interval=self.interval, duration=round(duration, 3),
            restart_pending=restart_pending, apply_set=self.apply_set, commit=commit,
            error=result.error[:200], key=key if outcome == "in-sync" else ""))
