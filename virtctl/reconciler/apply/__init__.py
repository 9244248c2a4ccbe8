"""Phase 3, apply: `apply(plan, driver) -> Report`, the side effects.

apply.py is the entry (one `match` over the actions, dependency skipping); clock.py the
injectable clock; applystop.py the stop ladder for a batch of guests; applylive.py the
live calls and their read-back; applystorage.py builds, uploads, resizes and deletes
storage; seedmedia.py swaps a running guest's cloud-init medium; contentcheck.py
hashes local content files before the first action; storageprobe.py asks the host for
the files the storage plan needs.

May import the planner (virtctl.reconciler.plan), virtctl.reconciler.speccache,
virtctl.drivers.base and the foundation modules; never the loader or anything above.
"""
