"""`virtctl render -f PATH`: the specs as they will be planned, one YAML document per
object with its host: DomainSets expanded into their instances (derived MACs, uuids,
cloud-init metadata, overlay volumes), the sets' DHCP host entries in their networks,
labels. Pure: it reads only the loaded `Desired`.

Every document starts with a comment naming the host (the URI it will be applied to)
and where it was declared (`file:line`, and `DomainSet NAME[INSTANCE]` for an
instance), then the spec with `connect:` as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .. import metadata
from ..converters.yaml import yamlxml
from ..model import Desired, DomainSpec, NetworkSpec, PoolSpec, VolumeSpec
from ..xmlutil import parse

AnySpec = DomainSpec | NetworkSpec | PoolSpec | VolumeSpec
_HEAD = ("kind", "name", "pool", "type", "uuid")


def render_documents(groups: Mapping[str, Desired]) -> str:
    """`groups`: the specs per host URI (api.split_hosts), rendered host by host, then
    pools, volumes, networks, domains, each by name."""
    docs: list[str] = []
    for uri in sorted(groups):
        desired = groups[uri]
        specs: list[AnySpec] = [
            *sorted(desired.pools.values(), key=lambda s: s.name),
            *sorted(desired.volumes.values(), key=lambda s: s.key.name),
            *sorted(desired.networks.values(), key=lambda s: s.name),
            *sorted(desired.domains.values(), key=lambda s: s.name)]
        for spec in specs:
            docs.append(_document(spec, uri))
    return "".join(docs)


def _document(spec: AnySpec, uri: str) -> str:
    root = parse(spec.xml)
    runtime: dict[str, Any]
    if isinstance(spec, DomainSpec):
        body = yamlxml.domain_from_xml(root)
        runtime = {"state": str(spec.state), "autostart": spec.autostart}
        if spec.update_policy is not None:
            runtime["updatePolicy"] = str(spec.update_policy)
        from ..checkpoints import yaml_keys  # updatePolicy.checkpoint, health

        runtime.update(yaml_keys(spec.safety, runtime.get("updatePolicy")))
    elif isinstance(spec, NetworkSpec):
        body = yamlxml.network_from_xml(root)
        runtime = {"active": spec.active, "autostart": spec.autostart}
    elif isinstance(spec, PoolSpec):
        metadata.pop_runtime(root)
        body = yamlxml.pool_from_xml(root)
        runtime = {"active": spec.active, "autostart": spec.autostart, "build": spec.build}
    else:
        metadata.pop_runtime(root)
        body = yamlxml.volume_from_xml(root)
        runtime = {"pool": spec.pool, "deletePolicy": str(spec.delete_policy)}
    ordered: dict[str, Any] = {"kind": body.get("kind"), "apiVersion": "virtctl/v1"}
    ordered.update((k, body[k]) for k in _HEAD[1:] if k in body)
    ordered.update((k, runtime[k]) for k in _HEAD[1:] if k in runtime)
    if spec.connect is not None:
        ordered["connect"] = spec.connect
    if spec.labels:
        ordered["labels"] = dict(spec.labels)
    ordered.update((k, v) for k, v in runtime.items() if k not in ordered)
    ordered.update((k, v) for k, v in body.items() if k not in ordered)
    where = spec.source.file + (f":{spec.source.line}" if spec.source.line else "")
    what = f" ({spec.source.path})" if spec.source.path else ""
    head = f"---\n# host: {uri}\n# from: {where}{what}\n"
    return head + str(yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True))
