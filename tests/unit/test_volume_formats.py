"""Volume disks without a driver type get their volume's declared format (what
`load_specs` and the watcher's `desired_of` both do); with no volume declaring a format,
no domain definition is parsed at all (the watcher asks this several times a pass)."""

from __future__ import annotations

import pytest

from virtctl import xmlutil
from virtctl.model import DomainSpec, VolumeSpec
from virtctl.reconciler.load import loadstorage
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.load.loadstorage import with_volume_formats

DOMAIN = """kind: Domain
name: web
type: kvm
memory: 512MiB
os: {type: hvm, arch: x86_64}
disks:
  - {type: volume, source: {pool: images, volume: web.qcow2}, target: vda, bus: virtio}
"""


def loaded(volume: str) -> tuple[list[DomainSpec], dict[str, VolumeSpec]]:
    specs = load_text(DOMAIN + "---\n" + volume, source="/specs/web.yaml")
    volumes = {s.key.name: s for s in specs if isinstance(s, VolumeSpec)}
    return [s for s in specs if isinstance(s, DomainSpec)], volumes


def test_a_declared_format_reaches_the_disk() -> None:
    domains, volumes = loaded("kind: Volume\nname: web.qcow2\npool: images\n"
                              "capacity: 1GiB\nformat: qcow2\n")
    (web,) = with_volume_formats(domains, volumes)
    disk = xmlutil.parse(web.xml).find("devices/disk[@type='volume']/driver")
    assert disk is not None and disk.get("type") == "qcow2"


def test_no_declared_format_parses_no_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    domains, volumes = loaded("kind: Volume\nname: web.qcow2\npool: images\n"
                              "capacity: 1GiB\n")
    assert volumes and all(loadstorage._declared_format(v) is None
                           for v in volumes.values())
    parsed: list[str] = []
    real = xmlutil.parse

    def counted(text: str | bytes, **kwargs: str) -> object:
        parsed.append(str(text)[:20])
        return real(text, **kwargs)

    monkeypatch.setattr(xmlutil, "parse", counted)
    out = with_volume_formats(domains, volumes)
    assert [s is d for s, d in zip(out, domains, strict=True)] == [True]
    assert [p for p in parsed if p.startswith("<domain")] == []
    assert with_volume_formats(domains, {}) == domains
