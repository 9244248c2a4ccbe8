"""A content-addressed cache of loaded spec files, so re-reading unchanged files is cheap.

Loading a YAML file (parse, JSON Schema validation, conversion to XML) costs far more
than reading the result back: a no-op re-apply of 1,000 domains spends most of its time
there. An entry is keyed by the file's bytes and by a fingerprint of the code that
loads them (virtctl's version, the schema, the loader and converter sources), so a
hit returns exactly what a fresh load would; only files that loaded without error are
stored. `VIRTCTL_CACHE=0` turns it off. Location: `$VIRTCTL_CACHE_DIR`, else
`$XDG_CACHE_HOME/virtctl`, else `~/.cache/virtctl`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import Source
from ..model import DomainSpec, DomainState, NetworkSpec, UpdatePolicy

Spec = DomainSpec | NetworkSpec


def cache_dir(env: Mapping[str, str]) -> Path | None:
    if env.get("VIRTCTL_CACHE", "1") == "0":
        return None
    if env.get("VIRTCTL_CACHE_DIR"):
        return Path(env["VIRTCTL_CACHE_DIR"])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "virtctl"
    return Path.home() / ".cache" / "virtctl"


@cache
def _code_fingerprint() -> str:
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(__version__.encode())
    sources = [package / "schemas" / "spec.schema.json", package / "metadata.py",
               package / "xmlutil.py", package / "model.py",
               *sorted((package / "reconciler").glob("load*.py")),
               *sorted((package / "converters").glob("*.py"))]
    for path in sources:
        with contextlib.suppress(OSError):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _key(text: str) -> str:
    return hashlib.sha256(_code_fingerprint().encode() + b"\0" + text.encode()).hexdigest()


def _encode(spec: Spec) -> dict[str, Any]:
    common = {"name": spec.name, "xml": spec.xml, "uuid": spec.uuid, "autostart": spec.autostart,
              "line": spec.source.line, "update_policy": spec.update_policy}
    if isinstance(spec, DomainSpec):
        return common | {"kind": "domain", "state": str(spec.state),
                         "networks": list(spec.networks), "macs": list(spec.macs),
                         "shutdown_timeout": spec.shutdown_timeout}
    return common | {"kind": "network", "active": spec.active, "bridge": spec.bridge}


def _decode(data: dict[str, Any], source: str) -> Spec:
    where = Source(source, data["line"])
    policy = UpdatePolicy(data["update_policy"]) if data["update_policy"] else None
    if data["kind"] == "domain":
        return DomainSpec(name=data["name"], xml=data["xml"], source=where,
                          state=DomainState(data["state"]), autostart=data["autostart"],
                          uuid=data["uuid"], networks=tuple(data["networks"]),
                          macs=tuple(data["macs"]), update_policy=policy,
                          shutdown_timeout=data["shutdown_timeout"])
    return NetworkSpec(name=data["name"], xml=data["xml"], source=where, active=data["active"],
                       autostart=data["autostart"], uuid=data["uuid"], bridge=data["bridge"],
                       update_policy=policy)


class SpecCache:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def get(self, text: str, source: str) -> tuple[list[Spec], list[str]] | None:
        if self.folder is None:
            return None
        try:
            data = json.loads((self.folder / _key(text)).read_bytes())
            return [_decode(d, source) for d in data["specs"]], list(data["warnings"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, text: str, specs: list[Spec], warnings: list[str]) -> None:
        if self.folder is None:
            return
        payload = json.dumps({"specs": [_encode(s) for s in specs], "warnings": warnings})
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
            os.replace(tmp, self.folder / _key(text))
