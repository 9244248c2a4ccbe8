"""Adopting changes nothing the guest can see (qemu:///system): a guest defined by hand
with its devices at chosen PCI slots, a `<resource>` partition and libvirt's default
`<seclabel>`, exported and then applied with --adopt, plans no field change (one
redefine, saying it adopts) and keeps every address, the partition and the label; a
later apply of the same specs changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.contract.support import PREFIX, libvirt_module, purge_libvirt, require_connection
from tests.integration.crashkit import virtctl

URI = "qemu:///system"


@pytest.fixture
def conn() -> Iterator[Any]:
    require_connection(URI)
    libvirt = libvirt_module()
    handle = libvirt.open(URI)
    try:
        yield handle
    finally:
        handle.close()


def guest_xml(name: str) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <resource><partition>/machine</partition></resource>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/tmp/{name}.img'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1a' function='0x0'/>
    </disk>
    <interface type='user'>
      <mac address='52:54:00:{secrets.token_hex(1)}:{secrets.token_hex(1)}:01'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1b' function='0x0'/>
    </interface>
    <interface type='user'>
      <mac address='52:54:00:{secrets.token_hex(1)}:{secrets.token_hex(1)}:02'/>
      <model type='e1000'/>
    </interface>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'/>
</domain>"""


def visible(xml: str) -> str:
    """The definition without virtctl's metadata: what the guest is made from."""
    root = etree.fromstring(xml.encode())
    for meta in root.findall("metadata"):
        root.remove(meta)
    return etree.tostring(root, encoding="unicode")


def test_export_then_adopt_changes_nothing_the_guest_sees(conn: Any, tmp_path: Path) -> None:
    name = f"{PREFIX}{secrets.token_hex(3)}"
    image = Path(f"/var/tmp/{name}.img")
    image.write_bytes(b"\0" * 1024 * 1024)
    specs, state = tmp_path / "specs", tmp_path / "state"
    try:
        conn.defineXML(guest_xml(name))
        before = conn.lookupByName(name).XMLDesc(0)
        assert "slot='0x1a'" in before and "<seclabel" in before
        exported = virtctl(state, "-c", URI, "export", "--to", str(specs))
        assert exported.returncode == 0, exported.stderr
        for other in specs.iterdir():  # only this guest: the host holds other objects
            if name not in other.name:
                other.unlink()
        plan = virtctl(state, "-c", URI, "diff", "--adopt", "-f", str(specs))
        assert plan.returncode == 2, plan.stdout + plan.stderr
        lines = [ln for ln in plan.stdout.splitlines() if ln.strip()]
        assert lines[0] == f"~ domain/{name}  (redefine: adopt: mark as managed by virtctl)"
        assert lines[1].startswith("Plan: 0 to create, 1 to change")  # no field lines
        done = virtctl(state, "-c", URI, "apply", "--adopt", "-f", str(specs))
        assert done.returncode == 0, done.stdout + done.stderr
        after = conn.lookupByName(name).XMLDesc(0)
        assert visible(after) == visible(before)
        again = virtctl(state, "-c", URI, "diff", "-f", str(specs))
        assert again.returncode == 0, again.stdout
    finally:
        purge_libvirt(URI, [name])
        image.unlink(missing_ok=True)
