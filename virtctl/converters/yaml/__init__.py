"""YAML specs <-> libvirt XML (docs/spec-format.md).

yamlxml.py is the entry (`domain_to_xml`, `network_from_xml`, ...); yaml_domain.py,
yaml_devices.py, yaml_network.py, yaml_storage.py and yaml_volume.py map each kind;
xmlmap.py is the small mapping engine they share; yamlstrict.py is the YAML loader every
spec and `convert` read through (a key given twice is refused).

Pure. May import virtctl.converters.sizes and the foundation modules.
"""
