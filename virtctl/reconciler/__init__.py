"""Loading, planning and applying: the three phases, one package each.

load/ turns spec files into `Desired`, plan/ turns `Desired` and a snapshot into a `Plan`
(pure), apply/ performs a plan through a driver. memo.py and speccache.py sit beside
them: the "nothing to do" memo is checked before the planner is imported.

Phases import downwards only: apply -> plan -> (memo); load -> speccache. The whole
package may import virtctl.drivers (the applier), the converters and the foundation
modules; never virtctl.api, virtctl.cli, virtctl.render or virtctl.watch.
"""
