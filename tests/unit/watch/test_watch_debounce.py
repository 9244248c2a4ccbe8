"""The watcher's debounce, its record of self-caused events, and which file changes count."""

from __future__ import annotations

import threading
import time

import pytest

from virtctl.drivers.base import Event, EventType
from virtctl.model import Kind
from virtctl.reconciler.plan.actions import Define, SetAutostart, Shutdown, Start
from virtctl.watch.sources import Debouncer, Expectations, Inbox, Trigger, is_relevant


@pytest.mark.parametrize(
    ("pokes", "now", "fires"),
    [
        pytest.param([], 10.0, False, id="nothing-poked"),
        pytest.param([0.0], 0.05, False, id="inside-quiet-period"),
        pytest.param([0.0], 0.1, True, id="quiet-period-over"),
        pytest.param([0.0, 0.08], 0.15, False, id="second-poke-restarts-the-wait"),
        pytest.param([0.0, 0.08], 0.18, True, id="quiet-after-second-poke"),
        pytest.param([i * 0.05 for i in range(30)], 1.0, True, id="cap-bounds-a-busy-writer"),
        pytest.param([i * 0.05 for i in range(30)], 0.99, False, id="just-before-cap"),
    ],
)
def test_debouncer_fires_after_quiet_period_or_cap(
    pokes: list[float], now: float, fires: bool
) -> None:
    debounce = Debouncer(delay=0.1, cap=1.0)
    for at in pokes:
        debounce.poke(at)
    assert debounce.take(now) is fires


def test_debouncer_resets_after_firing() -> None:
    debounce = Debouncer(delay=0.1, cap=1.0)
    debounce.poke(0.0)
    assert debounce.take(0.2)
    assert debounce.deadline() is None
    assert not debounce.take(5.0)


def _event(kind: EventType, name: str = "web") -> Event:
    return Event(kind, Kind.DOMAIN, name)


@pytest.mark.parametrize(
    ("action", "event", "absorbed"),
    [
        pytest.param(Start(kind=Kind.DOMAIN, name="web"), _event(EventType.STARTED), True,
                     id="start-absorbs-started"),
        pytest.param(Start(kind=Kind.DOMAIN, name="web"), _event(EventType.STOPPED), False,
                     id="start-does-not-absorb-stopped"),
        pytest.param(Start(kind=Kind.DOMAIN, name="web"), _event(EventType.STARTED, "db"), False,
                     id="other-object"),
        pytest.param(Define(kind=Kind.DOMAIN, name="web", xml="", new=False),
                     _event(EventType.CHANGED), True, id="redefine-absorbs-changed"),
        pytest.param(Shutdown(kind=Kind.DOMAIN, name="web"), _event(EventType.STOPPED), True,
                     id="shutdown-absorbs-stopped"),
        pytest.param(SetAutostart(kind=Kind.DOMAIN, name="web"), _event(EventType.CHANGED),
                     False, id="autostart-causes-nothing"),
        pytest.param(Start(kind=Kind.NETWORK, name="web"), _event(EventType.STARTED), False,
                     id="other-kind"),
    ],
)
def test_expectations_absorb_only_the_events_an_action_causes(
    action: Start, event: Event, absorbed: bool
) -> None:
    expectations = Expectations(ttl=10.0)
    expectations.expect(action, now=0.0)
    assert expectations.absorb(event, now=1.0) is absorbed


def test_an_expectation_absorbs_one_event_only() -> None:
    expectations = Expectations()
    expectations.expect(Start(kind=Kind.DOMAIN, name="web"), now=0.0)
    assert expectations.absorb(_event(EventType.STARTED), now=0.1)
    assert not expectations.absorb(_event(EventType.STARTED), now=0.2)


def test_expectations_lapse_and_can_be_forgotten() -> None:
    expectations = Expectations(ttl=5.0)
    start = Start(kind=Kind.DOMAIN, name="web")
    expectations.expect(start, now=0.0)
    assert not expectations.absorb(_event(EventType.STARTED), now=6.0)
    expectations.expect(start, now=10.0)
    expectations.forget(start)
    assert not expectations.absorb(_event(EventType.STARTED), now=10.1)


def test_inbox_wakes_on_spec_change_only_after_the_debounce() -> None:
    inbox = Inbox(debounce=Debouncer(delay=0.05, cap=1.0), expectations=Expectations())
    started = time.monotonic()
    inbox.spec_changed()
    wake = inbox.wait(until=started + 2.0)
    waited = time.monotonic() - started
    assert wake.triggers == {Trigger.SPEC}
    assert 0.04 <= waited < 1.0


def test_inbox_delivers_foreign_events_and_drops_expected_ones() -> None:
    inbox = Inbox(debounce=Debouncer(), expectations=Expectations())
    inbox.expect(Start(kind=Kind.DOMAIN, name="web"))
    inbox.driver_event(_event(EventType.STARTED))
    assert inbox.wait(until=time.monotonic() + 0.05).triggers == frozenset()
    inbox.driver_event(_event(EventType.STOPPED))
    wake = inbox.wait(until=time.monotonic() + 1.0)
    assert wake.triggers == {Trigger.EVENT}
    assert wake.events == (_event(EventType.STOPPED),)


def test_inbox_stop_wakes_a_waiting_loop() -> None:
    inbox = Inbox(debounce=Debouncer(), expectations=Expectations())
    threading.Timer(0.05, inbox.stop).start()
    started = time.monotonic()
    inbox.wait(until=started + 5.0)
    assert inbox.stopping
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("path", "is_directory", "relevant"),
    [
        pytest.param("/s/web.xml", False, True, id="xml"),
        pytest.param("/s/web.YAML", False, True, id="yaml-any-case"),
        pytest.param("/s/guest.cfg", False, True, id="xen-cfg"),
        pytest.param("/s/.web.xml.swp", False, False, id="vim-swap"),
        pytest.param("/s/.#web.xml", False, False, id="emacs-lock"),
        pytest.param("/s/web.xml~", False, False, id="backup"),
        pytest.param("/s/4913", False, False, id="vim-probe-file"),
        pytest.param("/s/README.md", False, False, id="not-a-spec"),
        pytest.param("/s/hosts", True, True, id="directory"),
        pytest.param("/s/.git", True, False, id="hidden-directory"),
    ],
)
def test_which_file_changes_wake_the_watcher(path: str, is_directory: bool, relevant: bool) -> None:
    assert is_relevant(path, is_directory=is_directory) is relevant


def test_a_start_absorbs_qemus_resumed_echo_too() -> None:
    # Starting a QEMU guest reports STARTED and then RESUMED ("unpaused"); neither may wake
    # the loop, while a stop behind our back still does.
    expectations = Expectations()
    expectations.expect(Start(kind=Kind.DOMAIN, name="web"), now=0.0)
    assert expectations.absorb(_event(EventType.STARTED), now=0.1)
    assert expectations.absorb(_event(EventType.RESUMED), now=0.2)
    assert not expectations.absorb(_event(EventType.STOPPED), now=0.3)
    assert not expectations.absorb(_event(EventType.RESUMED), now=0.4)


def test_forgetting_a_start_forgets_both_of_its_echoes() -> None:
    expectations = Expectations()
    start = Start(kind=Kind.DOMAIN, name="web")
    expectations.expect(start, now=0.0)
    expectations.forget(start)
    assert not expectations.absorb(_event(EventType.STARTED), now=0.1)
    assert not expectations.absorb(_event(EventType.RESUMED), now=0.1)
