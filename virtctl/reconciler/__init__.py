"""Loading, planning and applying: the three phases, one package each.

load/ turns spec files into `Desired`, plan/ turns `Desired` and a snapshot into a `Plan`
(pure), apply/ performs a plan through a driver. Beside them: memo.py (the "nothing to
do" memo, checked before the planner is imported), speccache.py (the spec cache and the
memo's store) and storage_record.py (virtctl's records of pools and volumes, read by the
planner and written by the applier).

Phases import downwards only: apply -> plan -> (memo); load -> speccache. The whole
package may import virtctl.drivers (the applier), the converters and the foundation
modules; never virtctl.api, virtctl.cli, virtctl.render or virtctl.watch.
"""
