"""YAML spec model <-> libvirt XML: the entry points.

The spec loader calls `domain_to_xml` / `network_to_xml` / `pool_to_xml` /
`volume_to_xml` on schema-valid YAML documents; `virtctl convert --to yaml` and
`virtctl export` call the `*_from_xml` functions. The model itself lives in yaml_domain,
yaml_devices, yaml_network, yaml_storage and yaml_volume; sizes in sizes. See docs/spec-format.md.
Pure: no I/O.
"""

from __future__ import annotations

from ..sizes import format_size, parse_size
from .yaml_domain import domain_from_xml, domain_to_xml
from .yaml_network import network_from_xml, network_to_xml
from .yaml_storage import pool_from_xml, pool_to_xml
from .yaml_volume import volume_from_xml, volume_to_xml

__all__ = [
    "domain_from_xml",
    "domain_to_xml",
    "format_size",
    "network_from_xml",
    "network_to_xml",
    "parse_size",
    "pool_from_xml",
    "pool_to_xml",
    "volume_from_xml",
    "volume_to_xml",
]
