"""Reading storage on qemu:///system while someone else changes it (issue 20 F: `get
pools`, `get volumes` and `export` read every pool on the host, and other tools work on
it meanwhile). A pool stopped between being listed and having its volumes listed made
libvirt say "storage pool is not active" and the whole read fail; now the pool is read
again and shows as it is then (inactive, no volumes). Stopped through a second connection,
at the moment the driver lists the volumes, so the race is hit every time."""

from __future__ import annotations

import contextlib
from typing import Any

from tests.contract.support import PREFIX, libvirt_module, require_connection, shared_dir
from virtctl.drivers import connect

URI = "qemu:///system"


class StoppedWhileRead:
    """One pool of the listing; someone stops it just as its volumes are listed."""

    def __init__(self, pool: Any, other: Any) -> None:
        self._pool, self._other, self.stopped = pool, other, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def listAllVolumes(self, flags: int) -> Any:  # noqa: N802 (libvirt's name)
        if not self.stopped:
            self._other.storagePoolLookupByName(self._pool.name()).destroy()
            self.stopped = True
        return self._pool.listAllVolumes(flags)


def test_a_pool_stopped_while_it_is_read_reads_as_stopped() -> None:
    import secrets

    require_connection(URI)
    libvirt = libvirt_module()
    other = libvirt.open(URI)
    name = f"{PREFIX}{secrets.token_hex(4)}"
    driver = connect(URI)
    try:
        with shared_dir() as root:
            pool = other.storagePoolDefineXML(
                f"<pool type='dir'><name>{name}</name><target><path>{root}</path></target>"
                "</pool>", 0)
            pool.create(0)
            pool.createXML("<volume><name>a.img</name><capacity>1024</capacity></volume>", 0)
            conn = driver._conn  # noqa: SLF001 (the driver's own connection, wrapped)
            listed = conn.listAllStoragePools
            wrapped: list[StoppedWhileRead] = []

            def listing(flags: int) -> list[Any]:
                out = []
                for found in listed(flags):
                    if found.name() == name:
                        wrapped.append(StoppedWhileRead(found, other))
                        out.append(wrapped[-1])
                    else:
                        out.append(found)
                return out

            conn.listAllStoragePools = listing
            try:
                storage = driver.storage()
            finally:
                del conn.listAllStoragePools
            assert wrapped and wrapped[0].stopped
            assert not storage.pools[name].active
            assert not any(k.startswith(f"{name}/") for k in storage.volumes)
            pool.create(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()
    finally:
        driver.close()
        with contextlib.suppress(libvirt.libvirtError):
            other.storagePoolLookupByName(name).undefine()
        other.close()
