"""Phase 2, plan: `plan(desired, live, policy) -> Plan`, pure.

plan.py is the entry (domains, pruning, `plan_delete`), with plan_network.py and
plan_storage.py for networks and storage and steps.py for what they share; actions.py
holds the typed actions and the one phase table; essence.py, diff.py, classify.py and
identity.py compare definitions; liverules.py decides what a running object takes live;
guestagent.py what the guest agent adds; policy.py holds the run's options (`Policy`)
and planned.py the result (`Plan`), both light, so callers name them without importing
the planner. virtctl's storage records (reconciler/storage_record.py) are read here and
written by the applier.

Pure: no I/O, clock or driver calls (tests/unit/reconciler/plan/test_purity.py). May import
virtctl.reconciler.memo and the foundation modules and converters; never the loader,
the applier, a driver (but the Protocol types) or anything above.
"""
