"""Issue 20 B7 and B8 on qemu:///system, where only a real QEMU shows them:

* a running guest made with virsh, exported and applied with --adopt, is not
  restart-pending: QEMU runs the `<cpu check='none'>` its definition holds as
  `check='full'`, and no restart would change that;
* a hot-plug the host refuses (a NIC whose bandwidth `floor` its network, having no
  inbound QoS, cannot give: libvirt takes the definition and refuses the port) fails
  saying the definition holds the NIC for the next boot, and later runs report it
  restart-pending without asking again.

Names are vctl-test-<random>, bridges vctlbr<random>; everything is removed afterwards,
however a test ends.
"""

from __future__ import annotations

import json
import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import PREFIX, libvirt_module, purge_libvirt, require_connection
from tests.integration.crashkit import virtctl
from tests.integration.test_live_updates_qemu import free_subnet

URI = "qemu:///system"


@pytest.fixture
def conn() -> Iterator[Any]:
    require_connection(URI)
    handle = libvirt_module().open(URI)
    try:
        yield handle
    finally:
        handle.close()


def test_export_then_adopt_of_a_running_virsh_guest_leaves_nothing_pending(
        conn: Any, tmp_path: Path) -> None:
    name = f"{PREFIX}{secrets.token_hex(3)}"
    specs, state = tmp_path / "specs", tmp_path / "state"
    try:
        conn.defineXML(f"""<domain type='qemu'><name>{name}</name>
          <memory unit='MiB'>32</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>
          <features><acpi/></features><devices/></domain>""")
        guest = conn.lookupByName(name)
        guest.create()
        assert "check='full'" in guest.XMLDesc(0)  # what QEMU runs ...
        assert "check='full'" not in guest.XMLDesc(2)  # ... is not what is defined
        exported = virtctl(state, "-c", URI, "export", "--to", str(specs))
        assert exported.returncode == 0, exported.stderr
        for other in specs.iterdir():
            if name not in other.name:
                other.unlink()
        adopted = virtctl(state, "-c", URI, "apply", "--adopt", "-f", str(specs))
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
        assert "restart pending" not in adopted.stdout, adopted.stdout
        for _ in range(2):
            again = virtctl(state, "-c", URI, "diff", "-f", str(specs))
            assert again.returncode == 0 and "restart pending" not in again.stdout, again.stdout
        listed = virtctl(state, "-c", URI, "get", "domains", "-o", "json")
        rows = [r for r in json.loads(listed.stdout) if r["name"] == name]
        assert [r["pending"] for r in rows] == [None], rows
        assert guest.ID() > 0  # still the same running instance
    finally:
        purge_libvirt(URI, [name])


def test_a_refused_live_attach_on_qemu_says_the_definition_holds_it(
        conn: Any, tmp_path: Path) -> None:
    name = f"{PREFIX}{secrets.token_hex(3)}"
    net, bridge = name + "-n", "vctlbr" + secrets.token_hex(3)
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    subnet = free_subnet(conn)
    (specs / "net.yaml").write_text(textwrap.dedent(f"""\
        kind: Network
        name: {net}
        bridge: {{name: {bridge}}}
        dns: {{enable: false}}
        ips:
          - {{address: 192.168.{subnet}.1, prefix: 24}}
        """))
    nic = ("<interface type='network'><mac address='52:54:00:5e:03:{n}'/>"
           f"<source network='{net}'/><model type='virtio'/>{{extra}}</interface>")
    floor = "<bandwidth><inbound average='1000' floor='100'/></bandwidth>"

    def guest(*nics: str) -> None:
        (specs / "guest.xml").write_text(
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>"
            f"<devices>{''.join(nics)}</devices></domain>")

    try:
        guest(nic.format(n="01", extra=""))
        first = virtctl(state, "-c", URI, "apply", "-f", str(specs))
        assert first.returncode == 0, first.stdout + first.stderr
        guest(nic.format(n="01", extra=""), nic.format(n="02", extra=floor))
        refused = virtctl(state, "-c", URI, "apply", "-f", str(specs), "-o", "json")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        doc = json.loads(refused.stdout)
        (attach,) = [r for r in doc["report"]["results"] if r["op"] == "attach-device"]
        assert attach["outcome"] == "failed"
        message = attach["error"]["message"]
        assert "floor" in message and "the definition already holds the change" in message
        assert "next boot" in message
        defined = conn.lookupByName(name).XMLDesc(2)
        assert "52:54:00:5e:03:02" in defined  # half-applied, and now said so
        for _ in range(2):  # later runs: pending, not asked again, exit 0
            again = virtctl(state, "-c", URI, "diff", "-f", str(specs))
            assert again.returncode == 0, again.stdout + again.stderr
            assert "restart pending (devices/interface[52:54:00:5e:03:02])" in again.stdout
        text = virtctl(state, "-c", URI, "apply", "-f", str(specs))
        assert text.returncode == 0 and "attach" not in text.stdout, text.stdout
    finally:
        purge_libvirt(URI, [name, net])
