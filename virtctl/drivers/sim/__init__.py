"""The embedded hypervisor behind `sim:///` URIs (the `Driver` of drivers/base.py).

driver.py is `SimDriver` (semantics, events, snapshot); store.py the on-disk store
(one JSON record per object, flock, atomic writes); defaults.py what libvirt fills in;
caps.py its capabilities XML; storage.py pools and volumes with their data; live.py,
netlive.py (pure rules) and livecalls.py (applied to the records) the live changes.

May import virtctl.drivers.base, snapshot and storageshared, the converters and the
foundation modules; never virtctl.drivers.libvirt, the reconciler or anything above.
"""
