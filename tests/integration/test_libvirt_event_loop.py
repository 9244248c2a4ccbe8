"""libvirt's event loop runs only once someone subscribes to events.

A running loop slows every call of a remote connection (docs/libvirt-driver.md,
"Events and reconnecting"), so reading and acting leave it off; the first `subscribe`
starts it and, for a connection through a socket, opens the connection again so its
events arrive (an in-process test:/// connection is kept: it needs no reopening, and a
second test:///FILE connection would be a fresh host). The loop is once per process
and never stops, so each case runs in a fresh interpreter. Domains are named
vctl-test-* and removed afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.contract.support import Factory, purge_libvirt, require_connection

ROOT = Path(__file__).resolve().parents[2]

# Reads and defines without the loop, then subscribes and defines another domain, through
# a second, plain connection ("other") or the driver itself ("driver": a second
# connection to a test:///FILE host is a host of its own): the driver must hear of it.
SCRIPT = textwrap.dedent("""
    import json, sys, threading
    import libvirt
    from virtctl.drivers.base import EventType
    from virtctl.drivers.libvirt.driver import LibvirtDriver
    from virtctl.model import Kind

    uri, before, after, via = sys.argv[1:5]
    xml = sys.stdin.read()

    def loop_running():
        return any(t.name == "libvirt-event-loop" for t in threading.enumerate())

    seen, arrived = [], threading.Event()

    def record(event):
        seen.append((event.type.value, event.name))
        if event.type is EventType.DEFINED and event.name == after:
            arrived.set()

    out = {}
    with LibvirtDriver(uri) as driver:
        driver.snapshot()
        driver.define(Kind.DOMAIN, xml.replace("@NAME@", before))
        out["loop_before"] = loop_running()
        other = libvirt.open(uri)  # held open: test:///default lives while one is
        unsubscribe = driver.subscribe(record)
        out["loop_after"] = loop_running()
        if via == "other":
            other.defineXML(xml.replace("@NAME@", after))
        else:
            driver.define(Kind.DOMAIN, xml.replace("@NAME@", after))
        out["heard"] = arrived.wait(30)
        out["names"] = sorted(driver.snapshot().domains)
        unsubscribe()
        other.close()
    out["seen"] = seen
    print(json.dumps(out))
""")


def run(uri: str, before: str, after: str, via: str) -> dict[str, object]:
    xml = Factory().domain_xml("@NAME@")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, uri, before, after, via], input=xml, capture_output=True,
        text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(("uri", "via"), [
    pytest.param("test:///default", "other", marks=pytest.mark.libvirt),
    # In this process; opened again, it would start from the file: the driver keeps it.
    pytest.param("test:///@DIR@/host.xml", "driver", marks=pytest.mark.libvirt),
    pytest.param("qemu:///system", "other", marks=pytest.mark.qemu),  # through a socket
])
def test_loop_starts_with_the_first_subscription(uri: str, via: str, tmp_path: Path) -> None:
    (tmp_path / "host.xml").write_text("<node/>\n")
    uri = uri.replace("/@DIR@", str(tmp_path))
    require_connection(uri)
    before, after = Factory().name(), Factory().name()
    try:
        out = run(uri, before, after, via)
    finally:
        if uri.startswith("qemu:"):  # the test driver's hosts end with the process
            purge_libvirt(uri, [before, after])
    assert out["loop_before"] is False
    assert out["loop_after"] is True
    assert out["heard"] is True, out["seen"]
    # After subscribing, the driver still sees what it defined before.
    assert before in out["names"] and after in out["names"]
