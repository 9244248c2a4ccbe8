"""Fleet membership, ownership and status in etcd: `virtctl watch --fleet NAME`.

    /virtctl/fleet/NAME/members/MEMBER   a central member, under its lease (value: JSON
                                         pid, machine, interval, since)
    /virtctl/fleet/NAME/agents/HOSTID    an agent (`watch -c URI --fleet NAME` on the
                                         hypervisor), under its lease: central members
                                         leave that host alone while it lives
    /virtctl/fleet/NAME/status/HOSTID    the last round's StatusRecord (status.py), no
                                         lease: a dead writer's record turns stale
    /virtctl/locks/HOSTID                the host lock (backend.py), one per pass

`Membership` registers this process under a lease of its own (renewed by a
LeaseKeeper), reads the members and agents once, then follows them on two etcd watches
(no polling): every change calls `on_change()`. A central member owns the hosts whose
rendezvous owner (rendezvous.py) among the live members is itself. When its lease is
lost (etcd unreachable for a TTL, the process stopped), it registers again as soon as
etcd answers; meanwhile the host locks, not membership, keep two members from one host.
docs/fleet.md has the picture, the key layout and the failure modes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable

from .metrics import Counter, Gauge
from ..coord.etcd import EtcdClient, EtcdError, Event, LeaseKeeper, Watch, WatchCompacted
from ..coord.fleetkeys import (  # noqa: F401 (read_status, status_key: for callers too)
    FleetError,
    agents_prefix,
    check_name,
    fleet_prefix,
    member_of,
    members_prefix,
    read_status,
    status_key,
)
from ..coord.rendezvous import owner
from ..coord.status import StatusRecord

POLL = 0.2  # seconds between looks at each watch's queue (events arrive on threads)


def default_member() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:63].lstrip("._-")
    return name or "member"


class FleetMetrics:
    """The fleet's own series, served beside the watcher's (WatchMetrics.extra)."""

    def __init__(self) -> None:
        member = ("member",)
        self.owned = Gauge("virtctl_fleet_hosts_owned",
                           "Hosts this fleet member reconciles now.", member)
        self.members = Gauge("virtctl_fleet_members",
                             "Live central members this member sees (agents apart).", member)
        self.registered = Gauge("virtctl_fleet_lease_alive",
                                "1 while this member's etcd lease is known alive, else 0 "
                                "(etcd unreachable or without quorum: no host is locked, "
                                "nothing is done).", member)
        self.renew_failures = Counter("virtctl_fleet_lease_renew_failures_total",
                                      "Renewals of this member's lease that failed.", member)
        self.lease_lost = Counter("virtctl_fleet_lease_lost_total",
                                  "Times this member's lease ended under it.", member)
        self.takeovers = Counter("virtctl_fleet_takeovers_total",
                                 "Hosts this member took on after a membership change.",
                                 member)
        self.status_failures = Counter("virtctl_fleet_status_write_failures_total",
                                       "Status records that could not be written.", member)

    def all(self) -> tuple[Counter | Gauge, ...]:
        return (self.owned, self.members, self.registered, self.renew_failures,
                self.lease_lost, self.takeovers, self.status_failures)


class Membership:
    """This process in fleet `fleet` as central member `member`, or, with `agent_host`
    (a host identity), as that host's agent. `start()` blocks until registered (a
    previous incarnation's key of the same name is waited out, at most its TTL)."""

    def __init__(self, client: EtcdClient, fleet: str, member: str, *, ttl: int,
                 interval: float, agent_host: str | None = None,
                 on_change: Callable[[], None] | None = None,
                 on_agents: Callable[[], None] | None = None,
                 log: Callable[[str, str, str], None] | None = None,
                 metrics: FleetMetrics | None = None,
                 on_registered: Callable[[LeaseKeeper], None] | None = None) -> None:
        self.client = client
        self.fleet = check_name("fleet", fleet)
        self.member = check_name("member", member)
        self.ttl = ttl
        self.interval = interval
        self.agent_host = agent_host
        self.on_change = on_change
        self.on_agents = on_agents
        self.on_registered = on_registered  # each new lease (the host locks go under it)
        self._log = log or (lambda level, event, text: None)
        self.metrics = metrics or FleetMetrics()
        self._members: frozenset[str] = frozenset()
        self._agents: dict[str, str] = {}  # host id -> agent member name
        self._keeper: LeaseKeeper | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self._failures_seen = 0
        for counter in (self.metrics.renew_failures, self.metrics.lease_lost,
                        self.metrics.takeovers, self.metrics.status_failures):
            counter.inc(0, member=self.member)  # shown as 0 from the start
        self.metrics.registered.set(0, member=self.member)

    # -- the view ---------------------------------------------------------------------

    @property
    def members(self) -> frozenset[str]:
        with self._mutex:
            return self._members

    @property
    def agents(self) -> dict[str, str]:
        with self._mutex:
            return dict(self._agents)

    @property
    def registered(self) -> bool:
        keeper = self._keeper
        return keeper is not None and keeper.alive

    def owns(self, uri: str) -> bool:
        """Is `uri` this central member's by rendezvous over the live members?"""
        if self.agent_host is not None:
            return False
        members = self.members | {self.member}  # ourselves even while re-registering
        return owner(uri, members) == self.member

    def agent_of(self, host: str) -> str | None:
        """The live agent reconciling host identity `host`, if any."""
        with self._mutex:
            return self._agents.get(host)

    # -- life -------------------------------------------------------------------------

    def start(self, *, timeout: float | None = None) -> None:
        self._register(timeout=timeout if timeout is not None else self.ttl * 2 + 5)
        revision = self._read()  # before the first sync: owns() knows the others
        self._thread = threading.Thread(target=self._run, args=(revision,),
                                        name=f"fleet-{self.fleet}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Leave the fleet now: the lease is revoked, so the others take our hosts at
        once (not after the TTL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.stop(revoke=True)

    def _key(self) -> str:
        if self.agent_host is not None:
            return agents_prefix(self.fleet) + self.agent_host
        return members_prefix(self.fleet) + self.member

    def _register(self, *, timeout: float) -> None:
        """Grant a lease and create our key under it; wait out an older holder of the
        same key (a previous incarnation killed within the TTL)."""
        deadline = time.monotonic() + timeout
        value = json.dumps({"member": self.member, "pid": os.getpid(),
                            "machine": socket.gethostname(), "interval": self.interval,
                            "since": time.time(), "agent": self.agent_host is not None})
        lease = self.client.lease_grant(self.ttl)
        keeper = LeaseKeeper(self.client, lease, on_lost=self._lost)
        keeper.start()
        try:
            while True:
                created, holder, _ = self.client.create(self._key(), value, lease=lease.id)
                if created or (holder is not None and holder.lease == lease.id):
                    break
                if holder is not None and member_of(holder.value) != self.member:
                    raise FleetError(f"{self._key()} is held by another process "
                                     f"({member_of(holder.value) or 'unknown'}): "
                                     "is an agent already running for this host?")
                if time.monotonic() >= deadline:
                    raise FleetError(f"member {self.member} of fleet {self.fleet} is "
                                     "registered by another live process; give each "
                                     "member its own --member NAME")
                self._log("info", "member-wait", f"waiting for an earlier {self.member} "
                          "of this fleet to leave (its lease ends within the TTL)")
                time.sleep(min(1.0, max(deadline - time.monotonic(), 0.05)))
        except BaseException:
            keeper.stop(revoke=True)
            raise
        self._keeper = keeper
        if self.on_registered is not None:
            self.on_registered(keeper)
        self.metrics.registered.set(1, member=self.member)
        self._log("info", "member-registered",
                  f"registered in fleet {self.fleet} as "
                  f"{'agent of ' + self.agent_host if self.agent_host else self.member} "
                  f"(lease {lease.id:x}, TTL {lease.ttl} s)")

    def _lost(self, reason: str) -> None:
        self.metrics.registered.set(0, member=self.member)
        self.metrics.lease_lost.inc(member=self.member)
        self._log("error", "member-lease-lost",
                  f"lost this member's lease ({reason}); no host is locked until etcd "
                  "answers again, then it registers again")

    def _read(self) -> int:
        """Read members and agents at one revision; the revision."""
        got = self.client.range(fleet_prefix(self.fleet) + "agents/")
        members = self.client.range(members_prefix(self.fleet), revision=got.revision)
        with self._mutex:
            self._agents = {kv.key.rsplit("/", 1)[1]: member_of(kv.value) or "?"
                            for kv in got.kvs}
            self._members = frozenset(kv.key.rsplit("/", 1)[1] for kv in members.kvs)
        self.metrics.members.set(len(self._members), member=self.member)
        return got.revision

    def _run(self, revision: int) -> None:
        """Follow members and agents on etcd watches; register again after a loss."""
        watches: list[Watch] = []
        try:
            while not self._stop.is_set():
                try:
                    revision = revision or self._read()
                except EtcdError as exc:
                    self._log("warning", "member-read-failed", f"cannot read the fleet's "
                              f"members: {exc.message}; trying again")
                    self._stop.wait(1.0)
                    continue
                self._changed(members=True, agents=True)
                watches = [self.client.watch(prefix, prefix=True,
                                             start_revision=revision + 1)
                           for prefix in (members_prefix(self.fleet),
                                          agents_prefix(self.fleet))]
                try:
                    self._follow(watches)
                except WatchCompacted:
                    revision = 0  # read again, watch again
                finally:
                    for watch in watches:
                        watch.cancel()
        finally:
            for watch in watches:
                watch.cancel()

    def _follow(self, watches: list[Watch]) -> None:
        members_watch, agents_watch = watches
        while not self._stop.is_set():
            self._tend_lease()
            for watch, apply in ((members_watch, self._member_events),
                                 (agents_watch, self._agent_events)):
                events = watch.next_events(POLL / 2)
                if events:
                    apply(events)

    def _member_events(self, events: list[Event]) -> None:
        with self._mutex:
            members = set(self._members)
            for event in events:
                name = event.kv.key.rsplit("/", 1)[1]
                (members.add if event.type == "PUT" else members.discard)(name)
            changed = frozenset(members) != self._members
            self._members = frozenset(members)
        if changed:
            self.metrics.members.set(len(members), member=self.member)
            self._log("info", "members-changed", f"fleet {self.fleet} members: "
                      f"{', '.join(sorted(members)) or 'none'}")
            self._changed(members=True, agents=False)

    def _agent_events(self, events: list[Event]) -> None:
        with self._mutex:
            agents = dict(self._agents)
            for event in events:
                host = event.kv.key.rsplit("/", 1)[1]
                if event.type == "PUT":
                    agents[host] = member_of(event.kv.value) or "?"
                else:
                    agents.pop(host, None)
            changed = agents != self._agents
            self._agents = agents
        if changed:
            self._changed(members=False, agents=True)

    def _changed(self, *, members: bool, agents: bool) -> None:
        if members and self.on_change is not None:
            self.on_change()
        if agents and self.on_agents is not None:
            self.on_agents()

    def _tend_lease(self) -> None:
        keeper = self._keeper
        if keeper is None:
            return
        if keeper.renew_failures > self._failures_seen:
            self.metrics.renew_failures.inc(keeper.renew_failures - self._failures_seen,
                                            member=self.member)
            self._failures_seen = keeper.renew_failures
        if keeper.alive:
            return
        with contextlib.suppress(EtcdError):
            keeper.check()  # marks it lost, calling _lost once, if its thread has not yet
        with contextlib.suppress(EtcdError, FleetError):
            keeper.stop(revoke=False)
            self._keeper = None
            self._failures_seen = 0
            self._register(timeout=self.ttl * 2 + 5)
        if self._keeper is None:
            self._keeper = keeper  # still lost: try again on the next turn
            self._stop.wait(1.0)

    # -- status -----------------------------------------------------------------------

    def read_status(self, host: str) -> StatusRecord | None:
        """Host identity `host`'s last record (one request; None if there is none or it
        is not one). Raises EtcdError when etcd does not answer."""
        found = self.client.get(status_key(self.fleet, host))
        return StatusRecord.from_json(found.value) if found is not None else None

    def write_status(self, record: StatusRecord) -> bool:
        """Put one host's record (one request); False, said in the log and metrics, if
        etcd did not take it."""
        try:
            self.client.put(status_key(self.fleet, record.host), record.to_json())
        except EtcdError as exc:
            self.metrics.status_failures.inc(member=self.member)
            self._log("warning", "status-unwritten",
                      f"the status of {record.uri} was not written: {exc.message}")
            return False
        return True
