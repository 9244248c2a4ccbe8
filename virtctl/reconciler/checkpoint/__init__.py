"""Checkpoints, the health gate and rollback (docs/checkpoints.md).

What lives here and what each module may import:

The typed rules a spec declares (`Safety`: checkpoint, retention, health) and a
checkpoint's own record live in `virtctl.checkpoints` (foundation: the drivers' snapshot
listing and the loader use them too); the drivers' snapshot and probe calls in
`virtctl.drivers.sim.snapshots` and `virtctl.drivers.libvirt.snapshots`; the
`checkpoints` and `rollback` verbs in `virtctl.cli.checkpoints`.

- `actions`: the plan actions `TakeCheckpoint`, `HealthGate`, `Rollback`,
  `DropCheckpoints` (frozen, like every action); pure.
- `planning`: the pure post-pass that guards a plan's disruptive steps with a checkpoint
  and a health gate, the refusals (raw disks, replaced volumes), `plan_rollback` and
  `plan_drop` for `virtctl rollback` and `delete`; pure.
- `health`: waiting for a guest to be running and healthy (driver probes, a clock).
- `journal`: the crash journal, one small JSON file per guest in the state directory.
- `execute`: performing the actions above with a driver (called by the applier).
- `recover`: what the next apply does with a journal a killed run left.

Nothing in virtctl.reconciler imports this package at module level: the planner's and
applier's hooks import it inside the function that needs it.
"""
