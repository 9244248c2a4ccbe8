"""A domain spec's `cloudInit:` block: the NoCloud seed volume it makes and the CD-ROM
that attaches it (docs/storage.md, "cloud-init").

    cloudInit:
      pool: images                 # the pool the seed volume goes in (required)
      userData: {users: [...]}     # a mapping (#cloud-config) or text; or {file: PATH}
      metaData: {...}              # optional, as userData; instance-id derived if absent
      networkConfig: {...}         # optional
      vendorData: {...}            # optional
      hostname: web-1              # optional: meta-data local-hostname
      instanceId: iid-web-1        # optional: else derived from the content
      target: hdd                  # optional: the CD-ROM's target (default hdd on IDE,
      bus: ide                     #   sdz on SATA: q35 machines have no IDE)

The seed is volume `NAME-cidata.iso` (raw) in that pool, its content the rendered image
(converters/cloudinit.py), deleted with the domain (deletePolicy: delete: virtctl made
it, it holds nothing of the guest's). A changed seed is a new image: the volume is
replaced and the guest reads it when it next boots (cloud-init runs at boot), so it is
a next-boot change, not a recreate of anything the user owns. Files named by `file:`
are read relative to the spec file; loading reads them, nothing else does I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lxml import etree

from ...converters.cloudinit.seed import render_seed
from ...errors import ErrorCode, Source, SpecError
from ...fileio import NotRegularFile, open_regular
from ...model import DeletePolicy, VolumeContent, VolumeSpec
from ...limits import MAX_SPEC_BYTES

SEED_SUFFIX = "-cidata.iso"
_DOCUMENTS = {"userData": "user_data", "metaData": "meta_data",
              "networkConfig": "network_config", "vendorData": "vendor_data"}


def seed_name(domain: str) -> str:
    return domain + SEED_SUFFIX


def _document(value: Any, key: str, base: Path, source: Source) -> Any:
    if isinstance(value, Mapping) and set(value) == {"file"}:
        path = base / str(value["file"])
        try:  # a regular file only: a FIFO would block the run, a device never end
            with open_regular(path) as handle:
                data = handle.read(MAX_SPEC_BYTES + 1)
            if len(data) > MAX_SPEC_BYTES:
                raise SpecError(f"cloudInit.{key}: {path} is too large (at most "
                                f"{MAX_SPEC_BYTES // (1024 * 1024)} MiB)",
                                source=Source(source.file, source.line,
                                              f"cloudInit.{key}.file"))
            return data.decode("utf-8")
        except NotRegularFile as exc:
            raise SpecError(f"cloudInit.{key}: {path} is {exc.strerror}; refused",
                            source=Source(source.file, source.line,
                                          f"cloudInit.{key}.file")) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cloudInit.{key}: cannot read {path}: {exc}",
                            source=Source(source.file, source.line,
                                          f"cloudInit.{key}.file")) from None
    return value


def _check_target(doc: Mapping[str, Any], devices: etree._Element, target: str,
                  source: Source, *, given: bool) -> None:
    """The seed's CD-ROM needs a target no declared disk has: libvirt refuses two disks
    on one target, after the seed volume was made (and left behind)."""
    taken = [t.get("dev") for t in devices.iterfind("disk/target")]
    if target not in taken:
        return
    disks = [d.get("target") for d in doc.get("disks") or () if isinstance(d, Mapping)]
    which = f"disks[{disks.index(target)}]" if target in disks else "a disk in extraDevices"
    raise SpecError(
        f"the cloud-init seed's CD-ROM takes target {target!r}, which {which} has already"
        f"{'' if given else ' (the default for its bus)'}; set cloudInit.target to a free "
        "one, or give that disk another target",
        code=ErrorCode.DUPLICATE,
        source=Source(source.file, source.line, "cloudInit.target" if given else "cloudInit"))


def cloud_init_seed(doc: Mapping[str, Any], root: etree._Element, source: Source) -> VolumeSpec:
    """The seed volume for a Domain document's `cloudInit:`, and the CD-ROM for it
    appended to the domain's `root`."""
    block = doc["cloudInit"]
    name = str(doc["name"])
    base = Path(source.file).parent if source.file not in ("-", "<stdin>") else Path.cwd()
    kwargs = {arg: _document(block[key], key, base, source)
              for key, arg in _DOCUMENTS.items() if key in block}
    try:
        image = render_seed(**kwargs, hostname=block.get("hostname"),
                            instance_id=block.get("instanceId"))
    except (ValueError, TypeError) as exc:
        raise SpecError(f"cloudInit: {exc}",
                        source=Source(source.file, source.line, "cloudInit")) from None
    pool, volume = str(block["pool"]), seed_name(name)
    machine = str((doc.get("os") or {}).get("machine") or "")
    bus = block.get("bus") or ("sata" if machine.startswith("q35") else "ide")
    target = block.get("target") or ("hdd" if bus == "ide" else "sdz")
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    _check_target(doc, devices, str(target), source, given="target" in block)
    disk = etree.SubElement(devices, "disk", type="volume", device="cdrom")
    etree.SubElement(disk, "driver", name="qemu", type="raw")
    etree.SubElement(disk, "source", pool=pool, volume=volume)
    etree.SubElement(disk, "target", dev=str(target), bus=str(bus))
    etree.SubElement(disk, "readonly")
    xml = (f"<volume><name>{volume}</name><capacity unit='bytes'>{len(image)}</capacity>"
           "<target><format type='raw'/></target></volume>")
    return VolumeSpec(pool=pool, name=volume, xml=xml,
                      source=Source(source.file, source.line, "cloudInit"),
                      content=VolumeContent(data=image), delete_policy=DeletePolicy.DELETE,
                      connect=doc.get("connect"))
