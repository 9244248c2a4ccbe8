"""Phase 1, load: spec files -> `Desired` (and the checks that need no host).

load.py is the entry (`load_specs`, `expand`, `load_text`): formats, the JSON Schema
(schema.py, with the line of a key path), the runtime keys both formats share
(fields.py); loadset.py expands `kind: DomainSet` (domainset.py); loadstorage.py and
loadcloudinit.py make pool, volume and cloud-init seed specs; domcheck.py, netcheck.py
and yamlplace.py check what libvirt would refuse and name the key's line; validate.py
checks specs across files and against a host before the first action; gitinfo.py names
the specs' git commit and default apply set.

May import the converters, virtctl.reconciler.speccache and the foundation modules;
never the planner, the applier, a driver or anything above.
"""
