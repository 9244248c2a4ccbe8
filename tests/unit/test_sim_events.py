"""The sim's events reach many subscribers through one thread of the process (a fleet
member follows hundreds of sim hosts), in order, each from its own host's log; a rotated
log is read from its start; the thread ends with the last subscription."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.integration.test_sim_driver import domain_xml
from virtctl.drivers import connect
from virtctl.drivers.base import Event, EventType
from virtctl.model import Kind


def pump_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sim-events" and t.is_alive()]


def test_many_hosts_share_one_event_thread(tmp_path: Path) -> None:
    env = {"VIRTCTL_STATE_DIR": str(tmp_path)}
    hosts = [f"sim:///ev{i}" for i in range(20)]
    seen: dict[str, list[tuple[EventType, str | None]]] = {h: [] for h in hosts}
    arrived = threading.Condition()

    def listener(uri: str):  # noqa: ANN202 (a callback)
        def on_event(event: Event) -> None:
            with arrived:
                seen[uri].append((event.type, event.name))
                arrived.notify_all()
        return on_event

    stops = [connect(uri, env=env).subscribe(listener(uri)) for uri in hosts]
    try:
        assert len(pump_threads()) == 1
        for uri in hosts:
            other = connect(uri, env=env)  # as another process would
            other.define(Kind.DOMAIN, domain_xml(f"g-{uri[7:]}"))
            other.start(Kind.DOMAIN, f"g-{uri[7:]}")
        with arrived:
            assert arrived.wait_for(lambda: all(len(s) == 2 for s in seen.values()), 30), seen
        assert all(s == [(EventType.DEFINED, f"g-{u[7:]}"), (EventType.STARTED, f"g-{u[7:]}")]
                   for u, s in seen.items())

        # The log is rotated (the writer unlinks it past its size limit): the new file
        # is read from its start.
        (tmp_path / "sim" / "ev0" / "events.log").unlink()
        other = connect(hosts[0], env=env)
        other.destroy(Kind.DOMAIN, "g-ev0")
        with arrived:
            assert arrived.wait_for(lambda: len(seen[hosts[0]]) == 3, 30), seen[hosts[0]]
        other.start(Kind.DOMAIN, "g-ev0")
        with arrived:
            assert arrived.wait_for(lambda: len(seen[hosts[0]]) == 4, 30), seen[hosts[0]]
        assert [t for t, _ in seen[hosts[0]][2:]] == [EventType.STOPPED, EventType.STARTED]
    finally:
        for stop in stops:
            stop()
    for thread in pump_threads():
        thread.join(10)  # it leaves at its next look, finding no subscription
    assert not pump_threads()
