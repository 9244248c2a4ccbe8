"""Pure converters between spec formats: YAML (yaml/), Xen xm/xl (xen/) and libvirt
XML, and the cloud-init seed (cloudinit/). convert.py is the `virtctl convert` dispatch;
sizes.py reads and writes sizes with units.

Pure. May import only the foundation modules (model, errors, xmlutil, metadata, limits);
never the reconciler, a driver or anything above.
"""

#: The formats of `virtctl convert` (convert.py): here, so the CLI's parser lists them
#: without importing a converter.
FORMATS = ("xm", "xl", "xml", "yaml")
