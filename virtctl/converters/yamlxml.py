"""YAML spec model <-> libvirt XML: the entry points.

The spec loader calls `domain_to_xml` / `network_to_xml` on schema-valid YAML
documents; `virtctl convert --to yaml` and `virtctl export` call `domain_from_xml` /
`network_from_xml`. The model itself lives in yaml_domain, yaml_devices and
yaml_network; sizes in sizes. See docs/spec-format.md. Pure: no I/O.
"""

from __future__ import annotations

from .sizes import format_size, parse_size
from .yaml_domain import domain_from_xml, domain_to_xml
from .yaml_network import network_from_xml, network_to_xml

__all__ = [
    "domain_from_xml",
    "domain_to_xml",
    "format_size",
    "network_from_xml",
    "network_to_xml",
    "parse_size",
]
