"""The libvirt driver (libvirt-python, imported only when a non-sim URI is opened).

driver.py is `LibvirtDriver` (reads, writes, snapshot over up to four threads);
deadline.py bounds every operation by the call timeout; errors.py translates libvirt's
errors; events.py runs libvirt's event loop; live.py the live calls and which a host
supports; storage.py pools, volumes and stream uploads/downloads (docs/libvirt-driver.md).

May import virtctl.drivers.base, snapshot and storageshared and the foundation modules;
never virtctl.drivers.sim, the reconciler or anything above.
"""
