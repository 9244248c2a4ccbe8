"""Pure converters between spec formats: YAML, libvirt XML, Xen xm/xl."""
